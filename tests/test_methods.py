"""Every method: which parameters get gradients, frozen weights stay bit-identical, counts exact."""

import pytest
import torch

from tunelab.resolve import build_config
from tunelab.errors import UserError
from tunelab.methods import get_method
from tunelab.methods.base import PrepareContext, count_params
from tunelab.models import load_backbone
from tunelab.train.loop import build_optimizer, seed_everything

H = 384  # all-MiniLM-L6-v2 hidden size
HEAD = (H * 2 + 2) + (H * H + H)  # classifier + pooler dense (the head trains in every method)


def prepared(method: str, **opts):
    cfg = build_config({"task": "sst2", "method": method, **opts})  # declared ranges checked here
    m = get_method(method)()
    m.validate(cfg)
    seed_everything(0)
    model, tok, layout, _ = load_backbone("minilm", "classification", 2)
    model = m.prepare(model, PrepareContext(cfg=cfg, layout=layout, peft_task_type="SEQ_CLS"))
    return model, tok, layout, m


def one_step(model, tok, method):
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    batch = tok(["a great film", "dull and slow , a bore"], padding=True, return_tensors="pt")
    batch["labels"] = torch.tensor([1, 0])
    opt = build_optimizer(method.optimizer_params(model), 1e-2, 0.01)
    model.train()
    model(**batch).loss.backward()
    grads = {n for n, p in model.named_parameters() if p.grad is not None}
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    return grads, changed


def layer_output_requires_grad(model, tok, layout):
    """For each encoder layer: does its output carry autograd history (= gets backward compute)?"""
    mods = dict(model.named_modules())
    layer_list = next(m for n, m in mods.items() if n.endswith(layout.layers_path))
    flags = {}
    hooks = [layer.register_forward_hook(lambda mod, inp, out, i=i: flags.__setitem__(
        i, (out[0] if isinstance(out, tuple) else out).requires_grad)) for i, layer in enumerate(layer_list)]
    model.train()
    model(**tok(["some text here"], return_tensors="pt"))
    for h in hooks:
        h.remove()
    return flags


@pytest.mark.parametrize("method,opts", [
    ("full", {}), ("selective", {"layers": "1,3"}), ("selective", {"layers": "top:2", "train_embeddings": True}),
    ("lora", {}), ("lora", {"layers": "top:2"}), ("prompt", {}), ("prefix", {}),
])
def test_gradients_only_where_trainable_and_frozen_unchanged(method, opts):
    model, tok, layout, m = prepared(method, **opts)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    grads, changed = one_step(model, tok, m)
    assert grads == trainable
    assert changed <= trainable  # every frozen tensor bit-for-bit unchanged
    assert len(changed) > 0.9 * len(trainable)  # and the trainable ones did move
    heads = {n for n in trainable if layout.classify(n) == "head"}
    assert any("classifier" in n for n in heads) and any("pooler" in n for n in heads)


def test_full_counts():
    model, _, layout, _ = prepared("full")
    p = count_params(model, layout)
    total = sum(t.numel() for t in model.parameters())
    assert p["trainable"] == p["total"] == total
    assert p["trainable_without_head"] == total - HEAD
    assert p["trainable_layers"] == list(range(6))


def test_selective_counts_and_layers():
    model, _, layout, _ = prepared("selective", layers="1,3")
    p = count_params(model, layout)
    layers = model.bert.encoder.layer
    expect = sum(t.numel() for i in (1, 3) for t in layers[i].parameters())
    assert p["trainable_without_head"] == expect
    assert p["trainable"] == expect + HEAD
    assert p["trainable_layers"] == [1, 3]
    assert p["trainable_pct"] == pytest.approx(100 * p["trainable"] / p["total"], abs=1e-4)


def test_lora_counts_match_peft_and_formula():
    model, _, layout, _ = prepared("lora", layers="top:2", lora_r=4)
    p = count_params(model, layout)
    assert p["trainable"] == model.get_nb_trainable_parameters()[0]
    assert p["trainable_without_head"] == 2 * 2 * 4 * (H + H)  # 2 layers x (query, value) x r(in+out)
    assert p["trainable"] == p["trainable_without_head"] + HEAD
    assert p["trainable_layers"] == [4, 5]


@pytest.mark.parametrize("method,expect", [("prompt", 20 * H), ("prefix", 20 * 6 * 2 * H)])
def test_prompt_prefix_counts(method, expect):
    model, _, layout, _ = prepared(method)
    p = count_params(model, layout)
    assert p["trainable"] == model.get_nb_trainable_parameters()[0]
    assert p["trainable_without_head"] == expect
    assert p["trainable_layers"] == []


@pytest.mark.parametrize("method,opts,no_backward_below", [
    ("selective", {"layers": "top:2"}, 4), ("selective", {"layers": "1,3"}, 1), ("lora", {"layers": "top:2"}, 4),
])
def test_no_backward_below_lowest_trainable_layer(method, opts, no_backward_below):
    model, tok, layout, _ = prepared(method, **opts)
    flags = layer_output_requires_grad(model, tok, layout)
    assert [i for i, g in sorted(flags.items()) if not g] == list(range(no_backward_below))


@pytest.mark.parametrize("method,opts,needle", [
    ("lora", {"lora_r": 0}, "--lora-r 0"),
    ("selective", {"layers": "7"}, "--layers 7: layer(s) [7] out of range; the model has 6 layers"),
    ("selective", {"layers": "top:9"}, "the model has 6 layers"),
    ("selective", {"layers": "x-y"}, "not a layer index"),
    ("selective", {}, "needs --layers"),
    ("prompt", {"num_virtual_tokens": 0}, "--num-virtual-tokens 0"),
])
def test_invalid_method_options(method, opts, needle):
    with pytest.raises(UserError) as e:
        prepared(method, **opts)
    assert needle in str(e.value)
