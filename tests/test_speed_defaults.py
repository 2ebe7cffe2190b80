"""Fast defaults: length-grouped batches are on for loop-trained tasks (off with --no-group-by-length),
untouched for TRL-trained ones, and rows without a length keep plain shuffled batches."""

import torch

from tunelab.cli import build_parser, config_from_args
from tunelab.config import build_config
from tunelab.tasks import get_task
from tunelab.tasks.base import FitContext
from tunelab.train.batching import LengthGroupedBatches


def _cfg(*argv):
    return config_from_args(build_parser().parse_args(["run", *argv]))


def test_group_by_length_is_on_by_default_for_loop_trained_tasks_only():
    cfg = _cfg("--task", "sst2")
    assert cfg.group_by_length is True and cfg.sources["group_by_length"] == "task"
    assert _cfg("--task", "sst2", "--no-group-by-length").group_by_length is False
    dpo = build_config({"task": "dpo"})  # TRL builds those batches: not turned on, so not rejected
    assert dpo.group_by_length is False and dpo.sources["group_by_length"] == "default"


class NoLength(type(get_task("sst2"))):
    def length(self, row):
        return None


def _loader(task, tok, glue_data_dir, tmp_path, group):
    cfg = build_config({"task": "sst2", "method": "full", "data_dir": glue_data_dir, "group_by_length": group,
                        "batch_size": 8, "output_dir": str(tmp_path), "activation_cache": False})
    rows = task.load("train", glue_data_dir).examples[:40]
    ctx = FitContext(model=torch.nn.Linear(1, 1), processor=tok, method=None, cfg=cfg, device=torch.device("cpu"),
                     train_examples=rows, eval_splits=[], model_source="", out_dir=str(tmp_path))
    return task.build_data(ctx)[0].base


def test_rows_without_a_length_keep_plain_batches(glue_data_dir, tmp_path):
    from tunelab.models.heads import HEADS
    from tunelab.models.aliases import resolve_model

    task = get_task("sst2")
    tok = HEADS.get("classification").load_processor(resolve_model("minilm"))
    grouped = _loader(task, tok, glue_data_dir, tmp_path, True)
    assert isinstance(grouped.batch_sampler, LengthGroupedBatches)
    no_length = NoLength(task.spec)
    plain = _loader(no_length, tok, glue_data_dir, tmp_path, True)
    assert not isinstance(plain.batch_sampler, LengthGroupedBatches)
    assert isinstance(plain.sampler, torch.utils.data.RandomSampler) and plain.batch_size == 8
    assert sum(len(b["input_ids"]) for b in plain) == 40  # every example once
