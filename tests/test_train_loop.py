"""The training loop: early stopping on the main metric, schedule length, evaluation every epoch."""

import torch

from tunelab.config import RunConfig
from tunelab.methods import get_method
from tunelab.methods.base import PrepareContext
from tunelab.models import load_backbone
from tunelab.train.loop import seed_everything, train


def _setup(epochs, patience):
    cfg = RunConfig(task="sst2", method="selective", layers="top:1", epochs=epochs, batch_size=4,
                    early_stopping_patience=patience)
    m = get_method("selective")()
    seed_everything(0)
    model, tok, layout, _ = load_backbone("minilm", "classification", 2)
    model = m.prepare(model, PrepareContext(cfg=cfg, layout=layout, peft_task_type="SEQ_CLS"))
    rows = [dict(tok(t), labels=i % 2) for i, t in enumerate(["good", "bad", "fine film", "awful plot"] * 2)]
    from transformers import DataCollatorWithPadding

    loader = torch.utils.data.DataLoader(rows, batch_size=4, collate_fn=DataCollatorWithPadding(tok))
    return cfg, m, model, loader


def test_early_stopping_after_patience_epochs_without_improvement():
    cfg, m, model, loader = _setup(epochs=5, patience=2)
    scores = iter([0.6, 0.7, 0.65, 0.69, 0.9])
    out = train(model, m, loader, lambda _m: ({"accuracy": next(scores)}, {}), cfg, 1e-3, torch.device("cpu"))
    assert [h["metrics"]["accuracy"] for h in out.history] == [0.6, 0.7, 0.65, 0.69]
    assert out.stopped_early and out.best_epoch == 2 and out.state.step == 8  # 2 steps x 4 epochs


def test_runs_all_epochs_without_patience():
    cfg, m, model, loader = _setup(epochs=3, patience=None)
    out = train(model, m, loader, lambda _m: ({"accuracy": 0.5}, {}), cfg, 1e-3, torch.device("cpu"))
    assert len(out.history) == 3 and not out.stopped_early and out.state.step == 6
    assert out.state.samples_seen == 24
    assert out.state.optimizer.defaults["fused"] is True  # fused AdamW by default (cfg.fused_adamw)


def test_early_stopping_on_a_lower_is_better_main_metric_stops_when_it_rises():
    """chosen_logppl is registered lower-is-better: 2.0 -> 1.5 improves, 1.6 and 1.7 are worse."""
    from tunelab.metrics import get_metric
    from tunelab.tasks import load_families

    load_families()  # the alignment family registers chosen_logppl
    assert get_metric("chosen_logppl").higher_is_better is False
    cfg, m, model, loader = _setup(epochs=5, patience=2)
    scores = iter([2.0, 1.5, 1.6, 1.7, 1.0])
    out = train(model, m, loader, lambda _m: ({"chosen_logppl": next(scores)}, {}), cfg, 1e-3, torch.device("cpu"),
                main_metric="chosen_logppl")
    assert [h["metrics"]["chosen_logppl"] for h in out.history] == [2.0, 1.5, 1.6, 1.7]
    assert out.stopped_early and out.best_epoch == 2 and out.best == 1.5


def test_gradient_accumulation_equals_one_big_batch():
    """batch 4 x grad_accum 2 = one optimizer step with the gradient of the batch of 8 (dropout off)."""
    from transformers import DataCollatorWithPadding

    results = []
    for batch_size, accum in ((8, 1), (4, 2)):
        cfg, m, model, loader = _setup(epochs=1, patience=None)
        for mod in model.modules():
            if isinstance(mod, torch.nn.Dropout):
                mod.p = 0.0
        cfg.grad_accum, cfg.max_grad_norm, cfg.warmup_ratio = accum, 0.0, 0.0
        loader = torch.utils.data.DataLoader(loader.dataset, batch_size=batch_size,
                                             collate_fn=DataCollatorWithPadding(loader.collate_fn.tokenizer))
        out = train(model, m, loader, lambda _m: ({"accuracy": 0.5}, {}), cfg, 1e-3, torch.device("cpu"))
        assert out.state.step == 1 and out.state.samples_seen == 8
        results.append({n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad})
    for n, p in results[0].items():
        torch.testing.assert_close(results[1][n], p, rtol=1e-4, atol=3e-5)  # Adam steps are lr = 1e-3


def test_full_fine_tuning_equals_hf_trainer_on_identical_batches_without_dropout(glue_data_dir, tmp_path):
    """Same init, same batches, dropout off: tunelab's loop (AdamW, no decay on biases/LayerNorm,
    linear warm-up + decay, clipping at 1.0) lands on HF Trainer's weights, so accuracy differences
    between the engines at the same hyper-parameters come from random draws, not the optimisation."""
    import copy

    from transformers import Trainer, TrainingArguments

    from tunelab.resolve import build_config
    from tunelab.runner import subsample
    from tunelab.tasks import get_task

    torch.set_num_threads(1)
    cfg = build_config({"task": "sst2", "method": "full", "epochs": 1, "batch_size": 8, "lr": 5e-5, "seed": 0,
                        "weight_decay": 0.01, "warmup_ratio": 0.25, "group_by_length": False,
                        "activation_cache": False, "data_dir": glue_data_dir})
    task = get_task("sst2").configure(cfg)
    seed_everything(0)
    model, tok, layout, _ = load_backbone("minilm", task.head, 2)
    for mod in model.modules():
        if isinstance(mod, torch.nn.Dropout):
            mod.p = 0.0
    m = get_method("full")()
    model = m.prepare(model, PrepareContext(cfg=cfg, layout=layout, peft_task_type="SEQ_CLS"))
    init = copy.deepcopy(model)
    rows = task.encode(subsample(task.load("train", glue_data_dir).examples, 64, 0), tok, cfg)
    collate = task.collator(tok)
    loader = torch.utils.data.DataLoader(rows, batch_size=8, shuffle=False, collate_fn=collate)
    heads = tuple(n for n, _ in model.named_parameters() if layout.classify(n) == "head")
    train(model, m, loader, lambda _m: ({"accuracy": 0.0}, {}), cfg, cfg.lr, torch.device("cpu"), head_names=heads)

    class InOrder(Trainer):
        def _get_train_sampler(self, *args, **kwargs):
            return torch.utils.data.SequentialSampler(self.train_dataset)

    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=8, num_train_epochs=1,
                             learning_rate=5e-5, warmup_steps=2, weight_decay=0.01, max_grad_norm=1.0,
                             logging_strategy="no", save_strategy="no", report_to=[], seed=0, use_cpu=True,
                             disable_tqdm=True)
    ref = copy.deepcopy(init)
    InOrder(model=ref, args=args, train_dataset=rows, data_collator=collate).train()
    got, want, start = (dict(m_.state_dict()) for m_ in (model, ref, init))
    moved = max(float((want[n] - start[n]).abs().max()) for n in want)
    diff = max(float((got[n] - want[n]).abs().max()) for n in want)
    assert moved > 1e-4 and diff < 1e-5, (moved, diff)  # both trained; to float noise the same weights
