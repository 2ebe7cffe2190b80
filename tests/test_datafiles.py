"""tasks/datafiles.py: the user's own data files / --dataset into datasets splits, with one-line errors."""

import csv
import json
import types

import pytest

from tunelab.errors import UserError
from tunelab.tasks import datafiles
from tunelab.tasks.base import sha256_file


def cfg(**kw):
    base = {o: None for o in datafiles.DATA_OPTIONS}
    base.update(kw)
    return types.SimpleNamespace(**base)


ROWS = [{"text": f"row {i}, with a comma" if i % 3 else f'quoted "row" {i}\nover two lines', "label": "ab"[i % 2]}
        for i in range(10)]


def write_csv(path, rows, delimiter=","):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter=delimiter)
        w.writeheader()
        w.writerows(rows)
    return str(path)


def test_csv_jsonl_parquet_read_the_same_rows_with_lines_and_sha256(tmp_path):
    p_csv = write_csv(tmp_path / "train.csv", ROWS)
    p_jsonl = tmp_path / "train.jsonl"
    p_jsonl.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    import datasets

    p_parquet = tmp_path / "train.parquet"
    datasets.Dataset.from_list(ROWS).to_parquet(str(p_parquet))
    for p in (p_csv, str(p_jsonl), str(p_parquet)):
        data = datafiles.load_user_splits(cfg(train_file=p))
        assert list(data.splits) == ["train"]
        assert data.splits["train"].to_list() == ROWS
        assert list(data.files_of("train").values()) == [sha256_file(p)]
    data = datafiles.load_user_splits(cfg(train_file=p_csv))
    # row 0 spans lines 2-3 (a quoted newline), so row 1 starts on line 4 (independent count with csv)
    assert data.lines["train"][:3] == [2, 4, 5]
    assert data.where("train", 1) == f"{p_csv}:4"
    data = datafiles.load_user_splits(cfg(train_file=str(p_jsonl)))
    assert data.where("train", 9) == f"{p_jsonl}:10"


def test_csv_keeps_na_text_and_tsv_reads_unquoted(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("text,label\nNA,None\n,x\n")
    assert datafiles.read_file(str(p))[0].to_list() == [{"text": "NA", "label": "None"}, {"text": "", "label": "x"}]
    t = tmp_path / "t.tsv"
    t.write_text('sentence\tlabel\na "quoted, text\t1\nplain\t0\n')
    ds, lines = datafiles.read_file(str(t))
    assert ds.to_list() == [{"sentence": 'a "quoted, text', "label": 1}, {"sentence": "plain", "label": 0}]
    assert lines == [2, 3]


def test_bad_files_one_line_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nfine,a\nextra,field,b\n")
    with pytest.raises(UserError, match=r"bad\.csv:3: expected 2 fields \(as the header\), found 3"):
        datafiles.load_user_splits(cfg(train_file=str(bad)))
    with pytest.raises(UserError, match=r"--train-file .*data\.xlsx: unknown file extension '\.xlsx'"):
        datafiles.check_options(cfg(train_file=str(tmp_path / "data.xlsx")), "text-classification")
    with pytest.raises(UserError, match=r"--validation-file .*nope\.csv: no such file"):
        datafiles.check_options(cfg(train_file=str(bad), validation_file=str(tmp_path / "nope.csv")), "t")
    with pytest.raises(UserError, match="needs --train-file"):
        datafiles.check_options(cfg(), "text-classification")
    with pytest.raises(UserError, match="either data files or --dataset"):
        datafiles.check_options(cfg(train_file=str(bad), dataset="x"), "t")
    j = tmp_path / "bad.jsonl"
    j.write_text('{"text": "a", "label": 1}\n{"text": "b", label: 2}\n')
    with pytest.raises(UserError, match=r"bad\.jsonl:2: not valid JSON"):
        datafiles.read_file(str(j))
    ok = write_csv(tmp_path / "ok.csv", ROWS)
    data = datafiles.load_user_splits(cfg(train_file=ok))
    with pytest.raises(UserError, match=r"ok\.csv: no column 'sentence' \(--text-column\); columns: text, label"):
        data.require_columns(["sentence"], {"sentence": "text_column"})


def test_dataset_folders_and_offline_hub(tmp_path, monkeypatch):
    import datasets

    feats = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["a", "b"])})
    dd = datasets.DatasetDict({s: datasets.Dataset.from_list([{**r, "label": "ab".index(r["label"])} for r in ROWS],
                                                             features=feats) for s in ("train", "dev", "test")})
    dd.save_to_disk(str(tmp_path / "saved"))
    data = datafiles.load_user_splits(cfg(dataset=str(tmp_path / "saved")))
    assert sorted(data.splits) == ["test", "train", "validation"]  # dev found as the validation split
    assert data.splits["validation"].features["label"].names == ["a", "b"]
    assert all(len(data.files_of(s)) >= 1 for s in data.splits)
    with pytest.raises(UserError, match=r"--validation-split valid: .* has no such split \(splits: train, dev, test\)"):
        datafiles.load_user_splits(cfg(dataset=str(tmp_path / "saved"), validation_split="valid"))
    datasets.DatasetDict({k: dd[k] for k in ("train", "test")}).save_to_disk(str(tmp_path / "train-test"))  # no dev
    data = datafiles.load_user_splits(cfg(dataset=str(tmp_path / "train-test"), validation_split="test"))
    assert sorted(data.splits) == ["train", "validation"] and data.sources["validation"].endswith("/test")
    folder = tmp_path / "files"
    folder.mkdir()
    write_csv(folder / "train.csv", ROWS)
    write_csv(folder / "test.csv", ROWS[:4])
    data = datafiles.load_user_splits(cfg(dataset=str(folder)))
    assert sorted(data.splits) == ["test", "train"] and len(data.splits["test"]) == 4
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
    with pytest.raises(UserError, match=r"--dataset someone/nothing: cannot be loaded offline .*pass a local path"):
        datafiles.load_user_splits(cfg(dataset="someone/nothing"))


def test_hold_out_is_seeded_and_stratified(tmp_path):
    rows = [{"text": f"t{i}", "label": "a" if i < 30 else "b"} for i in range(40)]
    p = write_csv(tmp_path / "train.csv", rows)
    a = datafiles.load_user_splits(cfg(train_file=p))
    rec = datafiles.hold_out(a, 0.25, seed=0, label=lambda r: r["label"])
    b = datafiles.load_user_splits(cfg(train_file=p))
    datafiles.hold_out(b, 0.25, seed=0, label=lambda r: r["label"])
    assert a.splits["validation"].to_list() == b.splits["validation"].to_list()
    val = a.splits["validation"]["label"]
    assert (val.count("a"), val.count("b")) == (round(0.25 * 30), round(0.25 * 10))  # per class
    assert len(a.splits["train"]) + len(val) == 40
    assert set(a.splits["train"]["text"]).isdisjoint(a.splits["validation"]["text"])
    assert rec["stratified"] and a.info_of("validation")["held_out"]["seed"] == 0
    # the row -> line map follows the selection
    for i in (0, len(val) - 1):
        assert a.where("validation", i) == f"{p}:{int(a.splits['validation'][i]['text'][1:]) + 2}"
