"""The frozen reward model that judges generations (win rate) and, by default, rewards RLHF.

``--judge auto`` trains it once per (base model, train pairs, recipe) with TRL's RewardTrainer and
LoRA, merges the adapter and caches the result under ``$TUNELAB_CACHE/judges/<key>/`` (atomic);
every later run with the same key loads it. ``--judge PATH`` uses a given reward model: a HF
folder with a one-output sequence-classification model, a PEFT adapter folder, or the output
folder of a ``tunelab run --task reward`` run. Its identity and held-out accuracy go in run.json.

Caveat recorded with the result: when the RLHF policy was optimised against the same reward model
that judges it, its win rate is optimistic (the policy may exploit the judge).
"""

import hashlib
import json
import os
import time
from types import SimpleNamespace

from ...cache import atomic_dir, cache_dir, model_fingerprint
from ...errors import UserError
from .data import ids, special_prefix
from .scoring import reward_scores

# Fixed so that every run sharing base model and train pairs shares the judge.
JUDGE_RECIPE = {"adapter": "lora", "r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "lr": 5e-4, "epochs": 1,
                "batch_size": 2, "grad_accum": 4, "warmup_ratio": 0.06, "weight_decay": 0.0, "seed": 0}


class Judge:
    def __init__(self, model, tok, info: dict, max_response: int, batch_size: int, device):
        self.model, self.tok, self.info = model.eval(), tok, info
        self.max_response, self.batch_size, self.device = max_response, batch_size, device
        for p in self.model.parameters():
            p.requires_grad_(False)

    def encode(self, prompt: str, response: str) -> list:
        r = ids(self.tok, response)[:self.max_response]
        return special_prefix(self.tok) + ids(self.tok, prompt) + r + [self.tok.eos_token_id]

    def score(self, prompts, responses) -> list:
        seqs = [self.encode(p, r) for p, r in zip(prompts, responses)]
        return reward_scores(self.model, seqs, self.tok.pad_token_id, self.batch_size, self.device)

    def pair_accuracy(self, pairs) -> float:
        c = self.score([p.prompt for p in pairs], [p.chosen for p in pairs])
        r = self.score([p.prompt for p in pairs], [p.rejected for p in pairs])
        return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(c, r)) / len(pairs)




def pairs_digest(pairs) -> str:
    h = hashlib.sha256()
    for p in pairs:
        h.update(json.dumps([p.prompt_ids, p.chosen_ids, p.rejected_ids]).encode())
    return h.hexdigest()


def _quiet():
    import transformers

    transformers.logging.set_verbosity_error()


def load_reward_model(path: str, fallback_tok, option: str = "--judge"):
    """-> (model, tokenizer) from a HF folder, a PEFT adapter folder or a reward run's folder."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    _quiet()
    if not os.path.isdir(path):
        raise UserError(f"{option} {path}: no such folder (give auto, none, or a reward model folder)")
    run_json = os.path.join(path, "run.json")
    if os.path.isfile(run_json):
        with open(run_json, encoding="utf-8") as f:
            rec = json.load(f)
        if rec.get("task") != "reward" or rec.get("status") != "completed":
            raise UserError(f"{option} {path}: run.json is a {rec.get('status')} '{rec.get('task')}' run, "
                            "not a completed 'reward' run")
    try:
        if os.path.isfile(os.path.join(path, "adapter_config.json")):
            from peft import AutoPeftModelForSequenceClassification

            model = AutoPeftModelForSequenceClassification.from_pretrained(path, num_labels=1).merge_and_unload()
        elif os.path.isfile(os.path.join(path, "config.json")):
            model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
        else:
            raise UserError(f"{option} {path}: neither config.json nor adapter_config.json (not a model folder)")
    except (OSError, ValueError) as e:
        raise UserError(f"{option} {path}: cannot load a reward model ({str(e).splitlines()[0]})") from e
    tok = AutoTokenizer.from_pretrained(path) if os.path.isfile(os.path.join(path, "tokenizer_config.json")) else fallback_tok
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model.config.pad_token_id = tok.pad_token_id
    return model, tok


def get_judge(spec: str, source: str, tok, train_pairs, eval_pairs, cfg, device, option="--judge"):
    """``auto`` | PATH -> Judge (``none`` is handled by the caller)."""
    bs = cfg.eval_batch_size
    if spec != "auto":
        model, jtok = load_reward_model(spec, tok, option)
        judge = Judge(model.to(device), jtok, {"source": os.path.abspath(spec), "kind": "given"},
                      cfg.max_response_length, bs, device)
        judge.info["heldout_accuracy"] = round(judge.pair_accuracy(eval_pairs), 4)
        judge.info["heldout_pairs"] = len(eval_pairs)
        return judge
    key_src = {"v": 1, "model": model_fingerprint(source), "recipe": JUDGE_RECIPE, "pairs": pairs_digest(train_pairs)}
    key = hashlib.sha256(json.dumps(key_src, sort_keys=True).encode()).hexdigest()[:20]
    folder = cache_dir("judges", key)
    cached = os.path.isfile(os.path.join(folder, "judge.json"))
    if not cached:
        _train_judge(folder, source, tok, train_pairs, eval_pairs, cfg, device)
    with open(os.path.join(folder, "judge.json"), encoding="utf-8") as f:
        info = json.load(f)
    model, jtok = load_reward_model(folder, tok)
    info.update({"source": folder, "kind": "auto", "cached": cached})
    judge = Judge(model.to(device), jtok, info, cfg.max_response_length, bs, device)
    if info.get("heldout_pairs_sha256") != pairs_digest(eval_pairs):  # measured on other pairs: measure on ours
        info.update(heldout_accuracy=round(judge.pair_accuracy(eval_pairs), 4), heldout_pairs=len(eval_pairs),
                    heldout_pairs_sha256=pairs_digest(eval_pairs))
    return judge


class _TrainablesOnly:
    """Method stand-in for the judge: optimise what requires grad, no hooks."""

    def optimizer_params(self, model):
        return [(n, p) for n, p in model.named_parameters() if p.requires_grad]

    def on_train_start(self, state):
        pass

    on_step = on_optimizer_step = on_train_end = on_train_start


def _train_judge(folder, source, tok, train_pairs, eval_pairs, cfg, device):
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification

    from ...train.loop import seed_everything
    from .bridge import MethodBridge
    from .objectives import train_reward

    _quiet()
    r = JUDGE_RECIPE
    seed_everything(r["seed"])
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=1)
    model.config.pad_token_id = tok.pad_token_id
    model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, r=r["r"], lora_alpha=r["lora_alpha"],
                                             lora_dropout=r["lora_dropout"])).to(device)
    jcfg = SimpleNamespace(batch_size=r["batch_size"], eval_batch_size=cfg.eval_batch_size, grad_accum=r["grad_accum"],
                           epochs=r["epochs"], weight_decay=r["weight_decay"], warmup_ratio=r["warmup_ratio"],
                           max_grad_norm=1.0, seed=r["seed"], head_lr=None,
                           fused_adamw=False)  # as the cached judges were trained (the key holds the recipe only)
    method = _TrainablesOnly()
    bridge = MethodBridge(method, None, "pref_accuracy", n_train=len(train_pairs), desc="judge (reward model, once)")
    t0 = time.perf_counter()
    with atomic_dir(folder) as tmp:
        summary = train_reward(model, tok, train_pairs, method, r["lr"], jcfg, device, os.path.join(tmp, "trainer"), bridge)
        merged = model.merge_and_unload()
        merged.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        judge = Judge(merged, tok, {}, cfg.max_response_length, cfg.eval_batch_size, device)
        info = {"recipe": r, "base_model": source, "train_pairs": len(train_pairs),
                "train_pairs_sha256": pairs_digest(train_pairs), "train_seconds": round(time.perf_counter() - t0, 1),
                "train_steps": summary["state"].step,
                "heldout_accuracy": round(judge.pair_accuracy(eval_pairs), 4), "heldout_pairs": len(eval_pairs),
                "heldout_pairs_sha256": pairs_digest(eval_pairs),
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        with open(os.path.join(tmp, "judge.json"), "w", encoding="utf-8") as f:
            json.dump(info, f, indent=2)
    del merged, model

