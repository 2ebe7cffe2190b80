"""ALF, LISA, AutoFreeze, BAdam: scores as documented, budget, frozen weights, released optimizer
state, telemetry, and tiny end-to-end runs on minilm."""

import json
import os

import pytest
import torch

from conftest import tiny_run_args as _tiny_run_args
from tunelab.cli import main
from tunelab.methods import get_method
from tunelab.methods.alf import calibrated_scores, grad_norm_scores, select_layers
from tunelab.methods.dynamic import max_layers_for_budget, relative_change

def tiny_run_args(*a):
    # one thread: on a shared 2-core machine two OpenMP threads per process can be 10x slower
    return _tiny_run_args(*a) + ["--threads", "1"]


MINILM_LAYER = 1774464
MINILM_NON_HEAD = 22565376


# ---------------------------------------------------------------- hand-checkable scores
def test_change_rate_is_relative_frobenius_change_over_the_layer():
    before = [torch.tensor([3.0, 0.0]), torch.tensor([[0.0], [4.0]])]  # ||W|| = 5 over both tensors
    after = [torch.tensor([3.0, 1.0]), torch.tensor([[0.0], [4.0]])]  # ||dW|| = 1
    assert relative_change(before, after) == pytest.approx(0.2)
    after2 = [torch.tensor([0.0, 0.0]), torch.tensor([[0.0], [0.0]])]  # ||dW|| = 5
    assert relative_change(before, after2) == pytest.approx(1.0)
    assert relative_change(before, before) == 0.0


def test_change_score_calibrates_frozen_layers_with_the_median_ratio():
    change = [0.2, None, 0.1, None]  # layers 0 and 2 trained in the interval
    rho = [0.02, 0.05, 0.02, 0.0]  # probe ||g|| / ||W||
    # measured ratios 10 and 5 -> c = 7.5; frozen estimates 7.5 * rho
    assert calibrated_scores(change, rho) == pytest.approx([0.2, 0.375, 0.1, 0.0])
    # first decision: nothing measured, the score is rho itself
    assert calibrated_scores([None] * 4, rho) == rho
    assert grad_norm_scores(change, rho) == rho


def test_selection_takes_top_layers_and_hysteresis_keeps_incumbents():
    scores = [0.2, 0.375, 0.1, 0.0]
    assert select_layers(scores, set(), 2, 0.1) == {0, 1}
    assert select_layers(scores, {0, 2}, 2, 0.1) == {0, 1}  # 0.375 > 1.1 * 0.1: swap
    assert select_layers(scores, {0, 2}, 2, 5.0) == {0, 2}  # 0.375 < 6 * 0.1: keep
    assert select_layers([1.0, 1.05, 0.5], {0}, 1, 0.1) == {0}  # within the margin: no flapping
    assert select_layers([1.0, 1.2, 0.5], {0}, 1, 0.1) == {1}


def test_budget_to_layers_on_minilm_sizes():
    sizes = [MINILM_LAYER] * 6
    assert max_layers_for_budget(0.25, sizes, MINILM_NON_HEAD) == 3  # 23.6 %
    assert max_layers_for_budget(0.30, sizes, MINILM_NON_HEAD) == 3
    assert max_layers_for_budget(0.32, sizes, MINILM_NON_HEAD) == 4
    assert max_layers_for_budget(0.05, sizes, MINILM_NON_HEAD) == 0


def test_budget_smaller_than_a_layer_is_a_user_error(glue_data_dir, tmp_path, capsys):
    rc = main(tiny_run_args("sst2", "alf", glue_data_dir, str(tmp_path / "r"), "--alf-budget", "0.05"))
    assert rc == 2
    assert "--alf-budget 0.05" in capsys.readouterr().err


# ---------------------------------------------------------------- ALF in a real run
class Watch:
    """Wraps a dynamic method's hooks to check, at every optimizer step, what really changed."""

    def __init__(self):
        self.steps = []  # per step: dict(changed=set of (kind, idx), active=set, emb=bool, frac=float)
        self.inactive_intervals_ok = True
        self.state_leaks = []
        self.forward_log = []
        self.state_checks = []

    def params(self, method):
        out = {}
        for i, ps in enumerate(method.layer_params):
            for n, p in ps:
                out[n] = (("layer", i), p)
        for n, p in method.embed_params:
            out[n] = (("emb", None), p)
        return out


@pytest.fixture(scope="module")
def alf_run(glue_data_dir, tmp_path_factory):
    cls = get_method("alf")
    watch = Watch()
    orig_start, orig_step = cls.on_train_start, cls.on_step

    def snap(method):
        return {n: p.detach().clone() for n, (_, p) in watch.params(method).items()}

    def on_train_start(self, state):
        orig_start(self, state)
        watch.method = self
        watch.prev = snap(self)
        watch.prev_active = set(self.active)
        # log, for every training forward, whether each layer's output needs grad
        layers = self.layer_params
        mods = dict(state.model.named_modules())
        for i in range(len(layers)):
            mod = mods[f"{self.layout.layers_path}.{i}"]

            def hook(m, inp, out, i=i, me=self):
                if m.training:
                    t = out[0] if isinstance(out, tuple) else out
                    watch.forward_log.append((me._probing, i, bool(t.requires_grad), min(me.active) if me.active else None))
            mod.register_forward_hook(hook)

    def on_step(self, state):
        cur = snap(self)
        changed = {watch.params(self)[n][0] for n in cur if not torch.equal(cur[n], watch.prev[n])}
        numel = sum(self.layer_numel[k[1]] if k[0] == "layer" else self.embed_numel for k in changed)
        watch.steps.append({"step": state.step, "changed": changed, "active": set(watch.prev_active),
                            "frac": numel / self.denominator})
        if watch.prev_active:  # layers that trained in this step hold AdamW state now
            watch.state_checks.append(all(len(state.optimizer.state.get(p, {})) > 0
                                          for i in watch.prev_active for _, p in self.layer_params[i]))
        orig_step(self, state)
        # optimizer state of every inactive layer must be gone after the step's bookkeeping
        for i, ps in enumerate(self.layer_params):
            if i not in self.active:
                for _, p in ps:
                    if p in state.optimizer.state and len(state.optimizer.state[p]):
                        watch.state_leaks.append((state.step, i))
        watch.prev = snap(self)
        watch.prev_active = set(self.active)

    mp = pytest.MonkeyPatch()
    mp.setattr(cls, "on_train_start", on_train_start)
    mp.setattr(cls, "on_step", on_step)
    out = tmp_path_factory.mktemp("alf") / "run"
    try:
        args = tiny_run_args("sst2", "alf", glue_data_dir, str(out), "--alf-interval", "2", "--alf-score", "calibrated")
        args[args.index("--max-train-samples") + 1] = "128"  # 8 steps, decisions after 1, 2, 4, 6
        assert main(args) == 0
    finally:
        mp.undo()
    with open(out / "run.json", encoding="utf-8") as f:
        rec = json.load(f)
    return rec, watch, out


def test_alf_budget_never_exceeded_at_any_step(alf_run):
    rec, watch, _ = alf_run
    assert len(watch.steps) == 8
    budget = rec["config"]["alf_budget"]
    for s in watch.steps:
        assert s["frac"] <= budget, s
        assert all(k[0] == "layer" and k[1] in s["active"] for k in s["changed"]), s  # only active layers moved
    assert any(s["changed"] for s in watch.steps)  # something did train
    assert rec["params"]["trainable_fraction_max"] <= budget
    assert 0 < rec["params"]["trainable_fraction_mean"] <= budget


def test_alf_inactive_layers_bit_identical_and_state_released(alf_run):
    rec, watch, _ = alf_run
    # every layer that is inactive during a step is bit-identical before and after it (checked per step)
    for s in watch.steps:
        for i in range(6):
            if i not in s["active"]:
                assert ("layer", i) not in s["changed"]
    assert ("emb", None) not in set().union(*(s["changed"] for s in watch.steps))
    assert watch.state_leaks == []
    assert watch.state_checks and all(watch.state_checks)  # active layers do hold AdamW state
    p = rec["params"]
    assert p["optimizer_state_mb_peak"] < 0.5 * p["optimizer_state_mb_if_all_trained"]


def test_alf_no_backward_below_lowest_active_layer(alf_run):
    _, watch, _ = alf_run
    normal = [(i, rg, lo) for probing, i, rg, lo in watch.forward_log if not probing and lo is not None]
    assert normal
    for i, rg, lo in normal:
        if i < lo:
            assert rg is False  # no autograd graph below the lowest active layer
    assert any(rg for _, rg, _ in normal)  # ... but above it there is one


def test_alf_telemetry_matches_documented_scores(alf_run):
    rec, watch, out = alf_run
    tl = rec["layers"]
    assert [e["step"] for e in tl] == [1, 2, 4, 6]
    assert tl[-1]["until"] == 8
    for e in tl:
        assert len(e["scores"]) == 6 and all(s is not None and s >= 0 for s in e["scores"])
        assert len(e["active"]) == rec["method_details"]["max_layers"] == 3
        assert e["embeddings"] is False
    # 'calibrated' score: at each later decision the active layers' scores are their measured change
    for prev, cur in zip(tl, tl[1:]):
        for i in prev["active"]:
            assert prev["change"][i] is not None and prev["change"][i] > 0
            assert cur["scores"][i] == pytest.approx(prev["change"][i], rel=1e-4)
        for i in set(range(6)) - set(prev["active"]):
            assert prev["change"][i] is None
            # frozen layers: c * rho, c = median of measured change / rho (all from the record)
            ratios = sorted(prev["change"][j] / cur["rho"][j] for j in prev["active"])
            assert cur["calibration"] == pytest.approx(ratios[len(ratios) // 2], rel=1e-4)
            assert cur["scores"][i] == pytest.approx(cur["calibration"] * cur["rho"][i], rel=1e-4)
    assert tl[0]["scores"] == tl[0]["rho"]  # first decision: rho itself
    assert os.path.getsize(out / "layer_activity.png") > 1000
    with open(out / "layer_activity.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- rivals (and ALF) end to end
RIVAL_ARGS = {
    "lisa": ["--lisa-interval", "1", "--lisa-layers", "2"],
    "autofreeze": ["--autofreeze-interval", "1"],
    "badam": ["--badam-interval", "1"],
    "alf": ["--alf-interval", "1"],
}


@pytest.mark.parametrize("task", ["mrpc", "cola"])
@pytest.mark.parametrize("method", ["lisa", "autofreeze", "badam", "alf"])
def test_dynamic_method_end_to_end(method, task, glue_data_dir, tmp_path):
    out = tmp_path / "run"
    args = tiny_run_args(task, method, glue_data_dir, str(out), *RIVAL_ARGS[method])
    args[args.index("--max-train-samples") + 1] = "48"  # 3 steps of 16: decisions after steps 1 and 2
    args[args.index("--max-eval-samples") + 1] = "32"
    assert main(args) == 0
    with open(out / "run.json", encoding="utf-8") as f:
        rec = json.load(f)
    assert rec["status"] == "completed"
    tl = rec["layers"]
    assert len(tl) >= 2 and all({"step", "until", "active", "embeddings", "scores", "change"} <= set(e) for e in tl)
    assert all(e["until"] is not None and e["until"] > e["step"] for e in tl)
    frac = rec["params"]["trainable_fraction_mean"]
    assert 0 < frac <= 1
    assert (out / "layer_activity.png").exists()
    actives = [e["active"] for e in tl]
    if method == "lisa":
        assert all(len(a) == 2 for a in actives) and all(e["embeddings"] for e in tl)
        assert frac > 0.5  # embeddings (52.8 % of minilm) always train
    elif method == "badam":
        assert actives == [[5], [4], [3]][:len(actives)]  # descending, one layer at a time
        assert not any(e["embeddings"] for e in tl)
    elif method == "autofreeze":
        assert actives[0] == list(range(6)) and tl[0]["embeddings"]
        for a, b in zip(actives, actives[1:]):
            assert set(b) <= set(a)  # frozen layers stay frozen
        for a in actives:
            assert a == list(range(6 - len(a), 6))  # always a front prefix is frozen
    elif method == "alf":
        assert all(len(a) == 3 for a in actives)
        assert rec["params"]["trainable_fraction_max"] <= 0.25


def test_dynamic_runs_are_deterministic(glue_data_dir, tmp_path):
    recs = []
    for k in range(2):
        out = tmp_path / f"r{k}"
        assert main(tiny_run_args("cola", "lisa", glue_data_dir, str(out), *RIVAL_ARGS["lisa"])) == 0
        with open(out / "run.json", encoding="utf-8") as f:
            recs.append(json.load(f))
    assert recs[0]["layers"] == recs[1]["layers"]
    assert recs[0]["history"][0]["train_loss"] == recs[1]["history"][0]["train_loss"]


def test_alf_with_lora_adapters(glue_data_dir, tmp_path):
    out = tmp_path / "run"
    args = tiny_run_args("mrpc", "alf", glue_data_dir, str(out), "--adapter", "lora", "--alf-interval", "1",
                         "--alf-budget", "0.34")
    assert main(args) == 0
    with open(out / "run.json", encoding="utf-8") as f:
        rec = json.load(f)
    assert (out / "adapter_config.json").exists() and (out / "layer_activity.png").exists()
    assert rec["method_details"]["adapter"] == "lora"
    assert rec["params"]["trainable_fraction_of"] == "LoRA parameters"
    assert all(len(e["active"]) == 2 for e in rec["layers"])  # 0.34 of 6 equal LoRA layers -> 2
    assert rec["params"]["trainable_fraction_max"] <= 0.34
