"""The error contract over every task family's inputs: each malformed input -> exit 2, one line on
stderr naming the culprit (file:line or option), no traceback, no completed run.json."""

import gzip
import json
import os

import pytest

from tunelab.cli import main

SST2_HEADER = "sentence\tlabel\n"
GOOD_ROWS = "a fine film\t1\nawful plot\t0\n"


def _sst2(root, train: bytes, dev: bytes = (SST2_HEADER + GOOD_ROWS).encode()):
    d = root / "glue" / "SST-2"
    d.mkdir(parents=True)
    (d / "train.tsv").write_bytes(train)
    if dev is not None:
        (d / "dev.tsv").write_bytes(dev)
    return root / "glue"


def _hh(root, lines: list, gz=False):
    d = root / "hh" / "helpful-base"
    d.mkdir(parents=True)
    data = "".join(line + "\n" for line in lines).encode("utf-8", errors="surrogateescape")
    if gz:
        (d / "train.jsonl.gz").write_bytes(gzip.compress(data))
    else:
        (d / "train.jsonl").write_bytes(data)
    return root / "hh"


PAIR = json.dumps({"chosen": "\n\nHuman: hi\n\nAssistant: hello there", "rejected": "\n\nHuman: hi\n\nAssistant: go"})

# (id, builder(tmp_path) -> (args, expected substring))
CASES = {
    "glue-latin1-byte": lambda t: (["--task", "sst2", "--data-dir", str(_sst2(t, (SST2_HEADER + "a caf").encode()
                                                                                   + b"\xe9 film\t1\n"))],
                                   "train.tsv:2: invalid UTF-8 byte 0xe9"),
    "glue-column-count": lambda t: (["--task", "sst2", "--data-dir", str(_sst2(t, (SST2_HEADER + GOOD_ROWS
                                                                                    + "x\ty\t1\n").encode()))],
                                    "train.tsv:4: expected 2 tab-separated columns, found 3"),
    "glue-unknown-label": lambda t: (["--task", "sst2", "--data-dir", str(_sst2(t, (SST2_HEADER + "ok\t7\n").encode()))],
                                     "train.tsv:2: unknown label '7'"),
    "glue-missing-column": lambda t: (["--task", "sst2", "--data-dir", str(_sst2(t, b"text\tlabel\nok\t1\n"))],
                                      "train.tsv:1: header lacks column(s) ['sentence']"),
    "glue-empty-split": lambda t: (["--task", "sst2", "--data-dir", str(_sst2(t, SST2_HEADER.encode()))],
                                   "the train split of sst2 is empty"),
    "glue-missing-dev": lambda t: (["--task", "sst2", "--data-dir", str(_sst2(t, (SST2_HEADER + GOOD_ROWS).encode(),
                                                                               dev=None))],
                                   "missing SST-2/dev.tsv"),
    "hh-invalid-json": lambda t: (["--task", "dpo", "--method", "lora", "--data-dir", str(_hh(t, [PAIR, "{oops"]))],
                                  "train.jsonl:2: invalid JSON"),
    "hh-missing-field": lambda t: (["--task", "dpo", "--method", "lora",
                                    "--data-dir", str(_hh(t, [PAIR, json.dumps({"chosen": "x"})]))],
                                   "train.jsonl:2: expected an object with string fields 'chosen' and 'rejected'"),
    "hh-gz-latin1": lambda t: (["--task", "sft", "--method", "lora",
                                "--data-dir", str(_hh(t, [PAIR, '{"chosen": "caf\udce9"}'], gz=True))],
                               "train.jsonl.gz:2: invalid UTF-8 byte 0xe9"),
    "model-pickle-only": lambda t: (["--task", "sst2", "--model", str(_pickle_model(t))],
                                    "holds only pickle weights (pytorch_model.bin)"),
    "option-not-read": lambda t: (["--task", "sst2", "--method", "prompt", "--layers", "top:2"],
                                  "--layers does not apply to --method prompt"),
    "option-range": lambda t: (["--task", "sst2", "--warmup-ratio", "1.5"], "--warmup-ratio 1.5: must be in [0, 1)"),
}


def _keyphrase_missing_keys(t):
    d = t / "kp"
    (d / "docsutf8").mkdir(parents=True)
    (d / "keys").mkdir()
    (d / "docsutf8" / "1.txt").write_text("Neural networks for keyphrase extraction.\n")
    return d


def _audiofolder_missing_file(t):
    d = t / "speech"
    d.mkdir()
    (d / "metadata.csv").write_text("file_name,transcription\nnot-there.flac,hello world\n")
    return d


def _one_class_images(t):
    d = t / "images" / "cats"
    d.mkdir(parents=True)
    from PIL import Image

    for i in range(3):
        Image.new("L", (8, 8), color=i * 40).save(d / f"{i}.png")
    return t / "images"


CASES.update({
    "keyphrase-missing-keys": lambda t: (["--task", "keyphrase", "--data-dir", str(_keyphrase_missing_keys(t))],
                                         "1.txt: document without its key file"),
    "asr-missing-audio": lambda t: (["--task", "asr", "--model", "whisper-tiny", "--method", "lora",
                                     "--data-dir", str(_audiofolder_missing_file(t))], "metadata.csv:2: audio file not-there.flac not found"),
    "image-single-class": lambda t: (["--task", "image-folder", "--model", "vit-tiny",
                                      "--data-dir", str(_one_class_images(t))], "only one class folder (cats)"),
})


def _pickle_model(t):
    """A model folder with a config and only a pickle checkpoint (never loaded: refused first)."""
    d = t / "pickle-model"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (d / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    return d


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_exit_2_and_no_completed_run(case, tmp_path, capsys, glue_data_dir):
    args, needle = CASES[case](tmp_path)
    if "--data-dir" not in args:
        args += ["--data-dir", glue_data_dir]
    out = tmp_path / "out"
    rc = main(["run", *args, "--output-dir", str(out), "--max-train-samples", "4", "--max-eval-samples", "4"])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert needle in err, err
    assert not (out / "run.json").exists() or json.loads((out / "run.json").read_text())["status"] != "completed"


def test_disk_error_keeps_previous_run_json_and_names_the_path(tmp_path, monkeypatch):
    from tunelab.errors import OutputError
    from tunelab.results import record

    path = tmp_path / "run.json"
    record.write_json_atomic(str(path), {"status": "running"})

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(record.json, "dump", full)
    with pytest.raises(OutputError, match=f"cannot write {path}: No space left on device"):
        record.write_json_atomic(str(path), {"status": "completed"})
    assert json.loads(path.read_text()) == {"status": "running"}  # the old file, intact
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]  # no temp file left behind


def test_weights_that_cannot_be_written_fail_the_run_with_one_line(tmp_path, glue_data_dir, monkeypatch, capsys):
    from tunelab.methods.base import Method

    def full(self, model, out_dir):
        raise OSError(28, "No space left on device", os.path.join(out_dir, "model.safetensors"))

    monkeypatch.setattr(Method, "save", full)
    out = tmp_path / "o"
    rc = main(["run", "--task", "sst2", "--data-dir", glue_data_dir, "--output-dir", str(out), "--max-train-samples",
               "16", "--max-eval-samples", "8", "--epochs", "1", "--batch-size", "8", "--threads", "1"])
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if ln.startswith("tunelab")]
    assert rc == 1 and len(err) == 1, err  # one line besides the progress bar; no traceback
    err = err[0]
    assert f"cannot write {out}/model.safetensors: No space left on device" in err
    rec = json.loads((out / "run.json").read_text())
    assert rec["status"] == "failed" and "No space left on device" in rec["error"]
