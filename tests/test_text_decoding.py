"""Invalid UTF-8 in any file tunelab reads: exit 2 and one line naming the file, the line and the byte
offset (checked against offsets counted here from the bytes we wrote), never a traceback, never a
run folder. Real rows from the shared data with one line re-encoded as Latin-1."""

import gzip
import json
import os
from pathlib import Path

import pytest

from tunelab.cli import main
from tunelab.errors import UserError
from tunelab.textio import open_lines, read_jsonl, read_text

BAD_AT = 17  # 1-based line that carries the Latin-1 byte


def with_latin1_line(lines: list, bad: bytes) -> tuple:
    """Put ``bad`` at line BAD_AT; return (bytes of the file, byte offset of the first 0xE9)."""
    lines = list(lines)
    lines.insert(BAD_AT - 1, bad)
    offset = sum(len(x) for x in lines[:BAD_AT - 1]) + bad.index(b"\xe9")
    return b"".join(lines), offset


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_glue_tsv_with_a_latin1_line(tmp_path, glue_data_dir, capsys):
    src = Path(glue_data_dir, "SST-2")
    data = tmp_path / "data"
    (data / "SST-2").mkdir(parents=True)
    train = (src / "train.tsv").read_bytes().splitlines(keepends=True)[:40]
    body, offset = with_latin1_line(train, "un café noir et amer \t1\n".encode("latin-1"))
    (data / "SST-2" / "train.tsv").write_bytes(body)
    (data / "SST-2" / "dev.tsv").write_bytes(b"".join((src / "dev.tsv").read_bytes().splitlines(keepends=True)[:20]))
    out = tmp_path / "run"
    rc = main(["run", "--task", "sst2", "--method", "full", "--model", "minilm", "--data-dir", str(data),
               "--output-dir", str(out), "--epochs", "1"])
    assert rc == 2
    path = data / "SST-2" / "train.tsv"
    assert one_error_line(capsys) == (f"tunelab: error: {path}:{BAD_AT}: invalid UTF-8 byte 0xe9 at byte offset "
                                      f"{offset} (the GLUE TSV must be UTF-8)")
    assert not out.exists()  # nothing written, so nothing can be counted completed


def test_gzipped_hh_rlhf_jsonl_with_a_latin1_line(tmp_path, hh_data_dir, capsys):
    with gzip.open(Path(hh_data_dir, "helpful-base", "test.jsonl.gz"), "rb") as f:
        real = [next(f) for _ in range(40)]
    bad = real[BAD_AT - 1].replace(b"Assistant:", "Assistant: un café,".encode("latin-1"), 1)
    body, offset = with_latin1_line(real[:BAD_AT - 1] + real[BAD_AT:], bad)
    folder = tmp_path / "hh" / "helpful-base"
    folder.mkdir(parents=True)
    with gzip.open(folder / "train.jsonl.gz", "wb") as f:
        f.write(body)
    with gzip.open(folder / "test.jsonl.gz", "wb") as f:
        f.write(b"".join(real[:10]))
    out = tmp_path / "run"
    rc = main(["run", "--task", "sft", "--method", "lora", "--data-dir", str(tmp_path / "hh"),
               "--output-dir", str(out)])
    assert rc == 2
    path = folder / "train.jsonl.gz"
    assert one_error_line(capsys) == (f"tunelab: error: {path}:{BAD_AT}: invalid UTF-8 byte 0xe9 at byte offset "
                                      f"{offset} of the decompressed text (the hh-rlhf file must be UTF-8)")
    assert not out.exists()


def test_alpaca_json_with_a_latin1_byte(tmp_path, shared_data, capsys):
    rows = json.loads((shared_data / "alpaca" / "alpaca_5000.json").read_text(encoding="utf-8"))[:30]
    lines = [(json.dumps(r, ensure_ascii=False) + "\n").encode() for r in rows]
    bad = json.dumps({"instruction": "Name a drink.", "input": "", "output": "café"}, ensure_ascii=False)
    body, offset = with_latin1_line(lines, (bad + "\n").encode("latin-1"))
    (tmp_path / "alpaca.jsonl").write_bytes(body)
    out = tmp_path / "run"
    rc = main(["run", "--task", "sft-alpaca", "--method", "lora", "--data-dir", str(tmp_path),
               "--output-dir", str(out)])
    assert rc == 2
    assert one_error_line(capsys) == (f"tunelab: error: {tmp_path / 'alpaca.jsonl'}:{BAD_AT}: invalid UTF-8 byte 0xe9 "
                                      f"at byte offset {offset} (the Alpaca file must be UTF-8)")
    assert not out.exists()


@pytest.mark.parametrize("command,what,bad", [("run", "YAML config", b"task: caf\xe9\n"),
                                              ("compare", "compare config", b"description: caf\xe9 reviews\n")],
                         ids=["run", "compare"])
def test_yaml_config_with_a_latin1_byte(tmp_path, command, what, bad, capsys):
    good = b"# study of the caf\xc3\xa9 corpus (valid UTF-8 here)\nseeds: [0]\nepochs: 1\n"
    cfg = tmp_path / "study.yaml"
    cfg.write_bytes(good + bad)
    rc = main([command, str(cfg), "--output-dir", str(tmp_path / "out")])
    assert rc == 2
    offset = len(good) + bad.index(b"\xe9")
    assert one_error_line(capsys) == (f"tunelab: error: {cfg}:4: invalid UTF-8 byte 0xe9 at byte offset {offset} "
                                      f"(the {what} must be UTF-8)")
    assert not (tmp_path / "out").exists()


def test_valid_files_read_the_same_as_python_does(tmp_path, glue_data_dir):
    # MRPC's train.tsv starts with a UTF-8 BOM: dropped, as utf-8-sig does
    mrpc = Path(glue_data_dir, "MRPC", "train.tsv")
    assert mrpc.read_bytes().startswith(b"\xef\xbb\xbf")
    assert read_text(str(mrpc)) == mrpc.read_text(encoding="utf-8-sig")
    # streaming lines of a gzipped file: the same text, numbered from 1, endings kept
    text = "é\n{\"a\": 1}\n\n{\"b\": \"ü\\u2028\"}\r\n"
    gz = tmp_path / "x.jsonl.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as f:
        f.write(text)
    got = list(open_lines(str(gz)))
    assert [i for i, _ in got] == [1, 2, 3, 4] and "".join(t for _, t in got) == text
    (tmp_path / "x.jsonl").write_text(text[2:], encoding="utf-8")
    assert read_jsonl(str(tmp_path / "x.jsonl")) == [(1, {"a": 1}), (3, {"b": "ü\u2028"})]


def test_unreadable_files_are_one_line(tmp_path):
    broken = tmp_path / "train.jsonl.gz"
    with gzip.open(broken, "wb") as f:
        f.write(b'{"a": 1}\n' * 1000)
    broken.write_bytes(broken.read_bytes()[:-30])  # cut off: the stream ends early
    with pytest.raises(UserError) as e:
        read_jsonl(str(broken))
    assert str(e.value).startswith(f"{broken}: cannot read (not a valid gzip file") and "\n" not in str(e.value)
    with pytest.raises(UserError, match=r"cannot read \(No such file or directory\)"):
        read_text(os.path.join(tmp_path, "missing.tsv"))
    with pytest.raises(UserError, match=r"cannot read \(Is a directory\)"):
        read_text(str(tmp_path))
