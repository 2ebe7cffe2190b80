"""Frozen-prefix activation cache (train/activation_cache.py): a run fed from the cache computes the
same losses, weights and logits as the same run without it whose frozen prefix runs in eval mode;
frozen weights stay bit for bit; ineligible configurations say why the cache is off."""

import copy

import pytest
import torch

from tunelab.resolve import build_config
from tunelab.methods import get_method
from tunelab.methods.base import PrepareContext
from tunelab.models import load_backbone
from tunelab.runner import subsample
from tunelab.tasks import get_task
from tunelab.tasks.base import FitContext
from tunelab.train.activation_cache import plan
from tunelab.train.loop import seed_everything


def _setup(data_dir, tmp_path, method, **opts):
    torch.set_num_threads(1)
    cfg = build_config({"task": "sst2", "method": method, "model": "minilm", "data_dir": data_dir, "epochs": 2,
                        "batch_size": 16, "eval_batch_size": 32, "seed": 0, "output_dir": str(tmp_path), **opts})
    task = copy.copy(get_task("sst2").configure(cfg))
    train = subsample(task.load("train", data_dir).examples, 48, 0)
    dev = task.load("validation", data_dir)
    dev.examples = subsample(dev.examples, 32, 0)
    m = get_method(method)()
    seed_everything(0)
    model, tok, layout, _ = load_backbone("minilm", task.head, task.num_labels)
    model = m.prepare(model, PrepareContext(cfg=cfg, layout=layout, peft_task_type="SEQ_CLS", model_type="bert"))
    ctx = FitContext(model=model, processor=tok, method=m, cfg=cfg, device=torch.device("cpu"), train_examples=train,
                     eval_splits=[dev], model_source="minilm", out_dir=str(tmp_path), layout=layout,
                     head_names=tuple(n for n, _ in model.named_parameters() if layout.classify(n) == "head"))
    return task, ctx


def _fit(task, ctx, prefix_eval_below=None):
    """task.fit recording every training loss; optionally the prefix (embeddings + layers below k)
    forced into eval mode on every call, as the cache computes it."""
    losses, model, base_loss = [], ctx.model, task.loss

    def loss(m, batch):
        out = base_loss(m, batch)
        losses.append(out.item())
        return out

    task.loss = loss
    handles = []
    if prefix_eval_below is not None:
        mods = [mod for n, mod in model.named_modules() if n.endswith("bert.embeddings")]
        layers = next(mod for n, mod in model.named_modules() if n.endswith("encoder.layer"))
        mods += list(layers)[:prefix_eval_below]
        handles = [mod.register_forward_pre_hook(lambda mod, args: mod.train(False) and None) for mod in mods]
    summary = task.fit(ctx)
    for h in handles:
        h.remove()
    return losses, summary


def _dev_logits(task, ctx):
    rows = task.encode(ctx.eval_splits[0].examples, ctx.processor, ctx.cfg)
    batch = task.collator(ctx.processor)(rows)
    batch.pop("labels")
    ctx.model.eval()
    with torch.no_grad():
        return ctx.model(**batch).logits


@pytest.mark.parametrize("method,opts", [("selective", {"layers": "top:2"}), ("lora", {"layers": "top:2"})])
def test_cached_run_equals_uncached_run_with_the_prefix_in_eval_mode(glue_data_dir, tmp_path, method, opts):
    task, ctx = _setup(glue_data_dir, tmp_path / "cached", method, **opts)
    frozen = {n: p.detach().clone() for n, p in ctx.model.named_parameters() if not p.requires_grad}
    losses, summary = _fit(task, ctx)
    rec = summary.record["activation_cache"]
    assert ctx.cfg.group_by_length  # the default: length-grouped batches, rows carry their index
    assert rec["on"] and rec["k"] == 4 and rec["storage"] == "ram" and rec["self_check"]["passed"]
    assert "dropout" in rec["prefix_mode"]
    # independent size: one float32 vector of 384 per real token of the 48 train + 32 dev examples
    tokens = sum(len(r["input_ids"]) for r in task.encode(ctx.train_examples, ctx.processor, ctx.cfg))
    tokens += sum(len(r["input_ids"]) for r in task.encode(ctx.eval_splits[0].examples, ctx.processor, ctx.cfg))
    assert rec["mb"] == round(tokens * 384 * 4 / 2**20, 1)
    for n, p in ctx.model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n  # frozen weights unchanged bit for bit
    logits = _dev_logits(task, ctx)

    ref_task, ref_ctx = _setup(glue_data_dir, tmp_path / "plain", method, activation_cache=False, **opts)
    ref_losses, ref_summary = _fit(ref_task, ref_ctx, prefix_eval_below=4)
    assert ref_summary.record["activation_cache"] == {"on": False, "why": "--no-activation-cache", "k": None}
    assert len(losses) == len(ref_losses) == 6  # 3 steps x 2 epochs
    assert losses == pytest.approx(ref_losses, rel=1e-4, abs=1e-5)
    torch.testing.assert_close(logits, _dev_logits(ref_task, ref_ctx), rtol=1e-4, atol=1e-5)
    assert summary.final_metrics == ref_summary.final_metrics
    assert summary.final_predictions["validation"].predictions == ref_summary.final_predictions["validation"].predictions
    # and the predictions are the argmax of those logits (evaluation ran through the cache)
    assert summary.final_predictions["validation"].predictions == logits.argmax(-1).tolist()


def test_memory_mapped_store_when_over_the_ram_limit(glue_data_dir, tmp_path):
    """Also plain shuffled batches (the test above uses the default length-grouped ones)."""
    task, ctx = _setup(glue_data_dir, tmp_path, "selective", layers="top:1", activation_cache_mb=0, epochs=1,
                       group_by_length=False)
    assert ctx.cfg.group_by_length is False
    _, summary = _fit(task, ctx)
    rec = summary.record["activation_cache"]
    assert rec["on"] and rec["storage"] == "memmap" and rec["k"] == 5
    assert not (tmp_path / "activation_cache.f32").exists()  # deleted when the run ends
    assert summary.final_predictions["validation"].predictions == _dev_logits(task, ctx).argmax(-1).tolist()


def test_head_only_caches_every_layer(glue_data_dir, tmp_path):
    task, ctx = _setup(glue_data_dir, tmp_path, "selective", layers="top:1", epochs=1)
    for n, p in ctx.model.named_parameters():
        if isinstance(ctx.layout.classify(n), tuple):
            p.requires_grad_(False)
    _, summary = _fit(task, ctx)
    rec = summary.record["activation_cache"]
    assert rec["on"] and rec["k"] == 6 and rec["self_check"]["passed"]
    assert summary.final_predictions["validation"].predictions == _dev_logits(task, ctx).argmax(-1).tolist()


@pytest.mark.parametrize("method,opts,why", [
    ("full", {}, "(embeddings: bert.embeddings.word_embeddings.weight)"),
    ("lora", {}, "layer 0 may train"),
    ("alf", {}, "layer 0 may train (now, or at a later step for a dynamic method)"),
    ("prompt", {}, "(prompt: prompt_encoder"),
    ("selective", {"layers": "top:2", "train_embeddings": True}, "(embeddings:"),
    ("selective", {"layers": "top:2", "activation_cache": False}, "--no-activation-cache"),
])
def test_ineligible_configurations_are_off_with_the_reason(glue_data_dir, tmp_path, method, opts, why):
    task, ctx = _setup(glue_data_dir, tmp_path, method, **opts)
    p = plan(ctx.model, ctx.method, ctx.layout, ctx.cfg, task.caches_activations)
    assert not p.on and why in p.why


def test_a_family_that_does_not_declare_replayable_batches_is_off(glue_data_dir, tmp_path):
    task, ctx = _setup(glue_data_dir, tmp_path, "selective", layers="top:2")
    p = plan(ctx.model, ctx.method, ctx.layout, ctx.cfg, replayable=False)
    assert not p.on and "caches_activations" in p.why


def test_autofreeze_caches_the_prefix_it_froze(glue_data_dir, tmp_path):
    """A dynamic method that promises a frozen-for-good prefix (AutoFreeze, budget 0.25 = top 3 of 6
    layers) runs from the cache from its first batch; the prefix stays bit for bit; evaluation
    through the cache predicts what the model itself predicts."""
    task, ctx = _setup(glue_data_dir, tmp_path, "autofreeze", layer_budget=0.25, autofreeze_interval=2)
    prefix = {n: p.detach().clone() for n, p in ctx.model.named_parameters()
              if ctx.layout.classify(n) == "embeddings" or ctx.layout.classify(n) in {("layer", i) for i in range(3)}}
    p = plan(ctx.model, ctx.method, ctx.layout, ctx.cfg, task.caches_activations)
    assert p.on and p.follows_method and p.k is None  # k is known once training starts
    _, summary = _fit(task, ctx)
    rec = summary.record["activation_cache"]
    assert rec["on"] and rec["self_check"]["passed"] and rec["k_changes"][0] == {
        "k": 3, "from": None, "at_train_batch": 0, "seconds": rec["k_changes"][0]["seconds"]}
    assert rec["k"] == rec["k_changes"][-1]["k"] == ctx.method.frozen_for_good()
    assert len(prefix) > 0 and all(torch.equal(p, prefix[n]) for n, p in ctx.model.named_parameters() if n in prefix)
    assert summary.final_predictions["validation"].predictions == _dev_logits(task, ctx).argmax(-1).tolist()
    off = _setup(glue_data_dir, tmp_path / "off", "autofreeze", layer_budget=0.25, activation_cache=False)
    assert not plan(off[1].model, off[1].method, off[1].layout, off[1].cfg, True).on


def test_growing_k_carries_the_states_up_and_a_lower_k_rebuilds(glue_data_dir, tmp_path):
    """States carried from k=2 up to k=4 equal states built at k=4 from the embeddings; k moving down
    rebuilds them; a changed weight inside the cached prefix is an error, not stale states."""
    from tunelab.train.activation_cache import ActivationCache, Plan

    task, ctx = _setup(glue_data_dir, tmp_path, "selective", layers="top:1")
    rows = task.encode(ctx.eval_splits[0].examples, ctx.processor, ctx.cfg)

    def cache_at(*ks):
        c = ActivationCache(ctx.model, ctx.layout, Plan(True, "test", None, True), ctx.cfg, ctx.device, str(tmp_path))
        k = [None]
        c.follow(lambda: k[0])
        c.add_split("dev", rows, task.collator(ctx.processor), [len(r["input_ids"]) for r in rows], 8)
        for k[0] in ks:
            c.sync()
            c.build("dev")
        return c

    grown, direct = cache_at(2, 4), cache_at(4)
    assert [(x["from"], x["k"]) for x in grown.k_changes] == [(None, 2), (2, 4)] and grown.k == 4
    torch.testing.assert_close(grown.data, direct.data, rtol=1e-5, atol=1e-5)
    assert not torch.equal(grown.data, cache_at(2).data)  # the carry changed the states
    down = cache_at(4, 3)
    torch.testing.assert_close(down.data, cache_at(3).data, rtol=0, atol=0)
    for c in (grown, direct, down):
        c.close()
    c = cache_at(2)
    with torch.no_grad():
        ctx.model.bert.encoder.layer[1].output.dense.weight[0, 0] += 1.0
    with pytest.raises(RuntimeError, match="changed although the method declared them frozen for good"):
        c.verify()
    c.close()
