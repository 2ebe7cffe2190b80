"""GLUE parsing on the real shared files and on small malformed fixtures."""

from pathlib import Path

import pytest

from tunelab.errors import UserError
from tunelab.runner import subsample
from tunelab.tasks import get_task, task_names

# (task, split, rows, label counts) as verified in ../shared/data/glue/SOURCE.md
REAL = [
    ("sst2", "train", 67349, {1: 37569, 0: 29780}),
    ("sst2", "validation", 872, {1: 444, 0: 428}),
    ("cola", "train", 8551, {1: 6023, 0: 2528}),
    ("cola", "validation", 1043, {1: 721, 0: 322}),
    ("mrpc", "train", 3668, {1: 2474, 0: 1194}),
    ("mrpc", "validation", 408, {1: 279, 0: 129}),
    ("qnli", "validation", 5463, {0: 2702, 1: 2761}),
]


@pytest.mark.parametrize("task,split,rows,labels", REAL)
def test_real_files_parse_to_verified_counts(glue_data_dir, task, split, rows, labels):
    ex = get_task(task).load(split, glue_data_dir).examples
    assert len(ex) == rows
    counts = {}
    for e in ex:
        counts[e.label] = counts.get(e.label, 0) + 1
    assert counts == labels


def test_mrpc_bom_and_pairs(glue_data_dir):
    ex = get_task("mrpc").load("validation", glue_data_dir).examples
    assert len(ex[0].texts) == 2 and ex[0].texts[0].startswith("He said the foodservice pie")


def test_stsb_is_regression_with_scores(glue_data_dir):
    t = get_task("stsb")
    ex = t.load("validation", glue_data_dir).examples
    assert t.head == "regression" and len(ex) == 1500
    assert all(isinstance(e.label, float) and 0.0 <= e.label <= 5.0 for e in ex)


def test_cola_has_no_header_and_keeps_quotes(glue_data_dir):
    ex = get_task("cola").load("train", glue_data_dir).examples
    assert ex[0].line == 1  # first line is data, not a header
    assert any('"' in e.texts[0] for e in ex)  # no CSV quoting applied


def test_all_nine_tasks_registered():
    assert set(task_names()) >= {"cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"}


def _write(path: Path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_unseen_task_folder_in_standard_layout(tmp_path):
    _write(tmp_path / "RTE" / "train.tsv", "index\tsentence1\tsentence2\tlabel\n0\tA man.\tA person.\tentailment\n"
           "1\tIt rains.\tIt is dry.\tnot_entailment\n")
    _write(tmp_path / "RTE" / "dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\tX \"q\" y.\tZ.\tnot_entailment\n")
    t = get_task("rte")
    tr = t.load("train", str(tmp_path))
    assert [e.label for e in tr.examples] == [0, 1]
    assert t.load("validation", str(tmp_path)).examples[0].texts == ('X "q" y.', "Z.")


def test_mnli_dev_extra_columns_and_two_eval_splits(tmp_path):
    head_tr = "index\tpromptID\tpairID\tgenre\ts1b\ts2b\ts1p\ts2p\tsentence1\tsentence2\tlabel1\tgold_label\n"
    head_dev = "index\tpromptID\tpairID\tgenre\ts1b\ts2b\ts1p\ts2p\tsentence1\tsentence2\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label\n"
    _write(tmp_path / "MNLI" / "train.tsv", head_tr + "0\t1\t2\tg\tb\tb\tp\tp\tPrem.\tHyp.\tneutral\tneutral\n")
    for f in ("dev_matched.tsv", "dev_mismatched.tsv"):
        _write(tmp_path / "MNLI" / f, head_dev + "0\t1\t2\tg\tb\tb\tp\tp\tP.\tH.\tc\tc\tc\tc\tc\tcontradiction\n")
    t = get_task("mnli")
    assert t.eval_splits == ("validation_matched", "validation_mismatched")
    assert t.load("train", str(tmp_path)).examples[0].label == 1
    assert t.load("validation_mismatched", str(tmp_path)).examples[0].label == 2


@pytest.mark.parametrize("content,needle", [
    ("sentence\tlabel\ngood movie\t1\nbad\tmovie\t0\n", "train.tsv:3: expected 2 tab-separated columns, found 3"),
    ("sentence\tlabel\ngood movie\t1\nbad movie\tpositive\n", "train.tsv:3: unknown label 'positive'"),
    ("sentence\tlabel\n", "split of sst2 is empty"),
    ("text\tlabel\nfine\t1\n", "train.tsv:1: header lacks column(s) ['sentence']"),
])
def test_malformed_files_name_file_and_line(tmp_path, content, needle):
    _write(tmp_path / "SST-2" / "train.tsv", content)
    with pytest.raises(UserError) as e:
        get_task("sst2").load("train", str(tmp_path))
    assert needle in str(e.value)


def test_missing_folder_and_split(tmp_path):
    with pytest.raises(UserError, match="no folder SST-2/"):
        get_task("sst2").load("train", str(tmp_path))
    _write(tmp_path / "SST-2" / "train.tsv", "sentence\tlabel\nok\t1\n")
    with pytest.raises(UserError, match="missing SST-2/dev.tsv"):
        get_task("sst2").load("validation", str(tmp_path))


def test_subsample_is_seeded_and_deterministic():
    xs = list(range(1000))
    a, b, c = subsample(xs, 50, 0), subsample(xs, 50, 0), subsample(xs, 50, 1)
    assert a == b and a != c and len(set(a)) == 50 and a == sorted(a)
    assert subsample(xs, 5000, 0) == xs
