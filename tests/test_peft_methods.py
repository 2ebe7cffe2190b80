"""The PEFT methods (ia3, dora, adalora, loha, lokr, vera, oft, boft, fourierft, hra, ln-tuning,
p-tuning; bitfit is ours; ``--method peft --peft-config``): trainable counts equal PEFT's own and an
independent formula, a run's saved adapter reloads with ``PeftModel.from_pretrained`` and reproduces its
dev predictions exactly, AdaLoRA reallocates ranks through the loop's hook, clear errors."""

import csv
import json
from pathlib import Path

import pytest
import torch

from conftest import tiny_run_args
from tunelab.cli import main
from tunelab.errors import UserError
from tunelab.methods import get_method
from tunelab.methods.base import PrepareContext, count_params
from tunelab.models import load_backbone
from tunelab.resolve import build_config
from tunelab.train.loop import seed_everything

H, FF, L = 384, 1536, 6  # all-MiniLM-L6-v2: hidden, feed-forward width, layers
HEAD = (H * 2 + 2) + (H * H + H)  # classifier + pooler dense
QV = 2 * L  # query + value in every layer: PEFT's default targets on BERT

# method -> trainable parameters besides the head, by each tuner's formula at its defaults (None: PEFT's count only)
EXPECT = {
    "ia3": L * (H + H + H + FF),  # key, value vectors; attention.output.dense + output.dense scale their inputs
    "dora": QV * (8 * (H + H) + H),  # LoRA r 8 + DoRA's magnitude per output
    "adalora": QV * (12 * (H + H) + 12),  # init_r 12: A, B and the singular values E
    "loha": QV * 2 * 8 * (H + H),  # two rank-8 pairs per target
    "lokr": None,
    "vera": QV * (H + 256),  # lambda_d (out) + lambda_b (r 256); the shared random matrices are frozen
    "oft": None,
    "boft": None,
    "fourierft": QV * 1000,  # n_frequency coefficients per target
    "hra": QV * 8 * H,  # r 8 Householder vectors per target
    "ln-tuning": (2 * L + 1) * 2 * H,  # every LayerNorm's gain + bias (embeddings + 2 per layer)
    "p-tuning": 20 * H + (H * 128 + 128) + (128 * 128 + 128) + (128 * H + H),  # tokens + MLP encoder
    "bitfit": H + L * (4 * H + H + FF + H + H),  # biases: embeddings LN; q,k,v,attn-out, LN, intermediate, out, LN
}


def prepared(method: str, **opts):
    cfg = build_config({"task": "sst2", "method": method, **opts})
    m = get_method(method)()
    m.validate(cfg)
    seed_everything(0)
    model, tok, layout, _ = load_backbone("minilm", "classification", 2)
    model = m.prepare(model, PrepareContext(cfg=cfg, layout=layout, peft_task_type="SEQ_CLS", model_type="bert"))
    return model, tok, layout, m


@pytest.mark.parametrize("method", sorted(EXPECT))
def test_counts_equal_peft_and_formula(method):
    model, tok, layout, m = prepared(method)
    p = count_params(model, layout)
    assert p["trainable"] == p["trainable_without_head"] + HEAD
    if method == "bitfit":  # not PEFT: count the bias tensors ourselves
        assert not m.uses_peft
        assert p["trainable_without_head"] == sum(t.numel() for n, t in model.named_parameters()
                                                  if n.endswith(".bias") and "classifier" not in n and "pooler" not in n)
    else:
        assert m.uses_peft and p["trainable"] == model.get_nb_trainable_parameters()[0]
        details = m.describe()
        assert details["head_modules"] == list(layout.head_paths) and {"classifier", "pooler"} <= set(details["modules_to_save"])
    if EXPECT[method] is not None:
        assert p["trainable_without_head"] == EXPECT[method]
    # a backward pass reaches exactly the trainable tensors
    batch = tok(["a great film", "dull"], padding=True, return_tensors="pt")
    model(**batch, labels=torch.tensor([1, 0])).loss.backward()
    assert {n for n, t in model.named_parameters() if t.grad is not None} == \
           {n for n, t in model.named_parameters() if t.requires_grad}


@pytest.mark.parametrize("opts,expect", [
    ({"lora_init": "gaussian"}, "gaussian"), ({"lora_init": "pissa"}, "pissa"), ({"lora_init": "olora"}, "olora"),
    ({"use_rslora": True}, True),
])
def test_lora_variants_reach_peft(opts, expect):
    model, _, _, m = prepared("lora", **opts)
    c = model.peft_config["default"]
    assert (c.use_rslora if "use_rslora" in opts else c.init_lora_weights) == expect
    layer = model.base_model.model.bert.encoder.layer[0].attention.self.query
    scale = layer.scaling["default"]
    assert scale == pytest.approx(16 / 8 ** 0.5 if "use_rslora" in opts else 16 / 8)
    if expect == "gaussian":  # B starts at zero as in every LoRA init but PiSSA / OLoRA
        assert not layer.lora_B["default"].weight.any()
    if expect in ("pissa", "olora"):  # the adapter starts non-zero, the base weight holds the residual
        assert layer.lora_B["default"].weight.abs().sum() > 0


def dev_predictions_by_reload(run_dir: Path, glue_dir: str) -> tuple:
    """(predictions.tsv's predictions, the reloaded model's) on the run's dev examples: a fresh minilm,
    ``PeftModel.from_pretrained(base, run_dir)``, the run's saved tokenizer."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    from tunelab.tasks import get_task

    rows = list(csv.DictReader(open(run_dir / "predictions.tsv", encoding="utf-8"), delimiter="\t"))
    by_line = {e.line: e for e in get_task("sst2").load("validation", glue_dir).examples}
    texts = [by_line[int(r["line"])].texts[0] for r in rows]
    base, _, _, _ = load_backbone("minilm", "classification", 2)
    model = PeftModel.from_pretrained(base, str(run_dir)).eval()
    tok = AutoTokenizer.from_pretrained(str(run_dir))
    with torch.no_grad():
        batch = tok(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
        got = model(**batch).logits.argmax(-1).tolist()
    return [int(r["prediction"]) for r in rows], got


@pytest.mark.parametrize("method,extra", [("ia3", ()), ("dora", ()), ("adalora", ()), ("loha", ()), ("vera", ()),
                                          ("lora", ("--lora-init", "pissa"))])
def test_saved_adapter_reloads_and_reproduces_predictions(tmp_path, glue_data_dir, method, extra):
    out = tmp_path / method
    args = tiny_run_args("sst2", method, glue_data_dir, str(out), "--max-eval-samples", "32", "--threads", "1", *extra)
    assert main(args) == 0
    rec = json.loads((out / "run.json").read_text())
    assert rec["status"] == "completed" and rec["method_details"]["peft_type"] == method.upper().replace("DORA", "LORA")
    if extra:  # PiSSA saved as the plain LoRA it amounts to (rank 2r) on the unchanged base model
        assert json.loads((out / "adapter_config.json").read_text())["r"] == 16
    assert json.loads((out / "adapter_config.json").read_text())["peft_type"] == rec["method_details"]["peft_type"]
    saved, reloaded = dev_predictions_by_reload(out, glue_data_dir)
    assert len(saved) == 32 and saved == reloaded
    if method == "adalora":  # the loop's hook ran: ranks reallocated, total_step = the run's steps
        d = rec["method_details"]
        assert d["total_step"] == rec["time"]["steps"] == 4
        assert 0 < sum(d["ranks"].values()) < 12 * QV


def test_any_peft_config_file_runs_end_to_end(tmp_path, glue_data_dir):
    """A tuner without a method of its own (C3A), from YAML of its fields; the record names it."""
    cfg = tmp_path / "c3a.yaml"
    cfg.write_text("peft_type: C3A\nblock_size: 64\ntarget_modules: [query, value]\n")
    out = tmp_path / "c3a"
    assert main(tiny_run_args("sst2", "peft", glue_data_dir, str(out), "--peft-config", str(cfg),
                              "--max-eval-samples", "32", "--threads", "1", "--lr", "1e-2")) == 0
    rec = json.loads((out / "run.json").read_text())
    assert rec["status"] == "completed" and rec["method_details"]["peft_type"] == "C3A"
    saved = json.loads((out / "adapter_config.json").read_text())
    assert saved["peft_type"] == "C3A" and saved["block_size"] == 64
    assert rec["params"]["trainable_without_head"] == QV * (H // 64) ** 2 * 64  # a 64-kernel per (out, in) block
    saved_preds, reloaded = dev_predictions_by_reload(out, glue_data_dir)
    assert saved_preds == reloaded


def test_peft_config_as_adapter_config_json(tmp_path):
    """An adapter_config.json as PEFT writes it (with fields the run owns) gives the same counts as the method."""
    from peft import LoHaConfig

    LoHaConfig(r=4, alpha=4, target_modules=["query", "value"], task_type="SEQ_CLS").save_pretrained(str(tmp_path))
    model, _, layout, m = prepared("peft", peft_config=str(tmp_path / "adapter_config.json"))
    assert m.describe()["peft_type"] == "LOHA"
    assert count_params(model, layout)["trainable_without_head"] == QV * 2 * 4 * (H + H)


@pytest.mark.parametrize("method,opts,needle", [
    ("peft", {}, "--method peft needs --peft-config"),
    ("peft", {"peft_config": "/nonexistent.yaml"}, "--peft-config /nonexistent.yaml: no such file"),
    ("adalora", {"adalora_init_r": 4, "adalora_target_r": 8}, "--adalora-target-r 8 must not exceed"),
    ("boft", {"boft_block_size": 5}, "--method boft: PEFT cannot apply BOFT to model minilm (model type bert)"),
])
def test_bad_options_one_line(method, opts, needle):
    with pytest.raises(UserError) as e:
        prepared(method, **opts)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_bad_peft_config_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("peft_type: NOPE\n")
    with pytest.raises(UserError, match="peft_type 'NOPE' unknown to PEFT"):
        prepared("peft", peft_config=str(bad))
    bad.write_text("peft_type: LOHA\nno_such_field: 1\n")
    with pytest.raises(UserError, match=r"bad.yaml: LOHA: .*no_such_field"):
        prepared("peft", peft_config=str(bad))
    bad.write_text("peft_type: [LOHA\n")
    with pytest.raises(UserError, match=r"bad.yaml:\d+:\d+: not JSON/YAML"):
        prepared("peft", peft_config=str(bad))


def test_option_of_another_method_refused():
    with pytest.raises(UserError):
        build_config({"task": "sst2", "method": "ia3", "loha_r": 4})
    build_config({"task": "sst2", "method": "dora", "lora_r": 4, "lora_init": "pissa"})  # DoRA reads LoRA's


def test_peft_wide_preset_has_every_peft_method(tmp_path):
    from tunelab.compare.config import load_compare_config
    from tunelab.compare.grid import expand

    cells = expand(load_compare_config(preset="peft-wide"), str(tmp_path))
    named = {"full", "lora", "bitfit"} | {m for m in EXPECT if get_method(m).uses_peft}
    assert {c.label for c in cells} == named and len(named) == 15
    assert len(cells) == 15 * 3 * 3 and {c.seed for c in cells} == {0, 1, 2}
    assert {c.config.task for c in cells} == {"sst2", "mrpc", "cola"}
