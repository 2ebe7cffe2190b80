"""Speech recognition (seed 001's Whisper system): fine-tune Whisper, CER/WER on a new domain and on
the old one (forgetting), against the base model's numbers on the same utterances.

Tasks
- ``speech-accents``: ``--data-dir`` holds ``accents/{train,validation,test}`` and ``real/test``
  (../shared/data/speech, see its SOURCE.md). Eval splits, every epoch: ``validation`` (early
  stopping and the best epoch: ``cer``, ``wer``), ``test`` (``test_cer``, ``test_wer``: the number
  to report) and ``real`` = real/test (``real_cer``, ``real_wer``: the forgetting check).
- ``asr``: any speech data. ``--data-dir`` an audiofolder (``train/``, and ``validation/`` (or
  ``valid``/``dev``/``eval``) and/or ``test/``, each with ``metadata.csv``; or one folder with
  ``metadata.csv`` whose seeded ``--eval-fraction`` becomes ``validation``), or ``--dataset`` a hub
  dataset with ``--audio-column`` / ``--text-column`` (splits ``train`` + ``validation``/``test``).

Recipe (HF "fine-tune Whisper"): ``WhisperForConditionalGeneration`` through
``AutoModelForSpeechSeq2Seq``; inputs are the feature extractor's log-mel ``input_features``
(computed per batch from 16 kHz audio); labels are the tokenised transcript with the decoder start
token dropped (the model prepends it when it shifts labels right), padding -100, the model's own
cross-entropy. The transcript gets a leading space (``" " + text``) so its first token is the
space-prefixed word that Whisper itself emits (openai/whisper encodes text as ``" " + text`` too).
Labels therefore read ``[<|notimestamps|>, text..., <|endoftext|>]`` for tiny.en and
``[<|en|>, <|transcribe|>, <|notimestamps|>, text..., <|endoftext|>]`` for multilingual models;
every id comes from the tokenizer (tiny.en's start token is 50257, base's 50258).

Evaluation decodes with ``generate`` (greedy, ``--max-new-tokens``, no timestamps); CER (the main
metric) and WER are corpus-level after ``asr_text.normalize`` (lower-case, punctuation stripped;
see that module). Before training the same splits are transcribed by the base model: ``base_cer``,
``base_test_cer``, ``base_real_cer`` ... in run.json ``metrics`` (cached under
``$TUNELAB_CACHE/base-eval``: greedy decoding of fixed weights is deterministic), and run.json
``asr.delta`` holds after - base for every key (positive ``real_cer``: forgetting).

Methods: full, lora (q/v of encoder self-, decoder self- and cross-attention), selective
(``--layers encoder:top:2,decoder:0-1``; ``top:2`` = top 2 of each stack), alf and the dynamic
rivals over all encoder + decoder layers. Prompt and prefix tuning are not applicable (PEFT's prompt
learning works on ``input_ids`` / ``inputs_embeds``; Whisper's encoder reads ``input_features``).
PEFT's seq2seq wrapper passes ``input_ids=None`` into every forward, which Whisper rejects, so
training and generation call the wrapped (LoRA-injected) transformers model directly.
"""

import csv
import hashlib
import io
import json
import os
import time
from dataclasses import dataclass

import torch

from ...cache import model_fingerprint
from ...errors import UserError
from ...methods import get_method, methods_training
from ...metrics import Metric, register
from ...models.heads import Head, register_head
from .. import TASKS
from . import options  # noqa: F401  (declares the family's options)
from .text import cer, wer
from .audiofolder import SAMPLING_RATE, load_audio, read_audiofolder
from ..base import Split, sha256_file
from ..splits import seeded_split, take
from ..supervised import SupervisedTask

MAX_SECONDS = 30  # Whisper reads one 30-s window; longer audio would be cut off by the feature extractor
NORMALISER = ("tunelab.tasks.asr.text.normalize v1: NFKC, lower-case, punctuation/symbols -> space, "
              "inner apostrophes kept")
BASE_EVAL_VERSION = 1  # bump when base-evaluation results would change: old cache entries are then ignored
N_SAMPLES = 4  # transcripts per eval split shown side by side in run.json (reference / base / fine-tuned)

register(Metric("cer", cer, higher_is_better=False,
                description="character error rate (corpus-level, after asr_text.normalize)"))
register(Metric("wer", wer, higher_is_better=False,
                description="word error rate (corpus-level, after asr_text.normalize)"))


def window_audio(u, where: str, advice: str = ""):
    """The utterance's audio, refused with one line when longer than Whisper's 30-s window."""
    audio = u.audio()
    if len(audio) > MAX_SECONDS * SAMPLING_RATE:
        raise UserError(f"{where}: {len(audio) / SAMPLING_RATE:.1f} s long; Whisper transcribes "
                        f"{MAX_SECONDS}-s windows: split the recording{advice}")
    return audio



def load_speech_processor(source: str):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(source)


register_head(Head("speech-seq2seq", "AutoModelForSpeechSeq2Seq", "SEQ_2_SEQ_LM", trains=False,
                   load_processor=load_speech_processor,
                   description="the pretrained Whisper decoder and its LM head (tied to the token embeddings)"))



def family_lr(method) -> float | None:
    """The learning rate by what the method trains (its traits; None: the method's own). All weights
    (full FT): the HF Whisper recipe's 1e-5; adapters (LoRA on q/v): ~1e-3 (REFERENCE.md "Whisper
    fine-tuning"). Layer subsets move fewer weights and need more per weight: measured on whisper-tiny,
    48 accents utterances x 2 epochs (BENCHMARKS.md "Whisper on accents"): selective decoder:top:2 at
    5e-5 -> val CER 0.328, at 2e-4 -> 0.279 (a fixed subset: 2e-4); ALF at 5e-5 -> 0.122 (full 1e-5:
    0.188; dynamic layer methods: 5e-5). Virtual tokens: refused (``validate``)."""
    if method.trains == "adapters":
        return 1e-3
    if method.trains != "weights":
        return None
    if method.changes_trainable_set:
        return 5e-5
    return 2e-4 if method.selects_layers else 1e-5


@dataclass

class Utterance:
    """One audio clip and its transcript. Audio is decoded when the run encodes it (after any
    ``--max-*-samples`` subsampling), not when the split is read."""

    transcription: str
    file: str  # audio path (audiofolder) or the hub row's file name
    line: int = 0  # metadata.csv line (0 for hub rows)
    where: str = ""  # what errors name: "metadata.csv:LINE" or "hub:ID/SPLIT row N"
    data: bytes | None = None  # a hub row's encoded audio

    def audio(self):
        """float32 mono 16 kHz samples."""
        src = io.BytesIO(self.data) if self.data is not None else self.file
        return load_audio(src, self.where, name=self.file)

    def audio_digest(self) -> str:
        if self.data is not None:
            return hashlib.sha256(self.data).hexdigest()
        return sha256_file(self.file)


def _core(model):
    """The transformers model to call: PEFT's seq2seq wrapper passes ``input_ids=None`` to the
    model's forward, which Whisper does not take; the wrapped model already holds the LoRA layers."""
    from peft import PeftModel

    return model.get_base_model() if isinstance(model, PeftModel) else model


def _base_model_context(model):
    """Context in which ``model`` computes what the base model computes: adapters disabled for a PEFT
    model; other methods have not changed any weight before training."""
    import contextlib

    from peft import PeftModel

    return model.disable_adapter() if isinstance(model, PeftModel) else contextlib.nullcontext()


def audiofolder_split(folder: str, name: str, text_column: str = "transcription") -> Split:
    """A ``Split`` of Utterances from one audiofolder (``metadata.csv`` + audio)."""
    rows = read_audiofolder(folder, text_column)
    meta = os.path.join(folder, "metadata.csv")
    examples = [Utterance(r.transcription, r.file, r.line, f"{meta}:{r.line}") for r in rows]
    return Split(name, examples, {os.path.abspath(meta): sha256_file(meta)}, {"folder": os.path.abspath(folder)})


class SpeechRecognitionTask(SupervisedTask):
    data_parallel = True  # SupervisedTask.build_data shards batches and the generate-based evaluation
    family = "asr"
    head = "speech-seq2seq"
    num_labels = 0  # a generative head: no classes
    metric_names = ("cer", "wer")
    defaults = {"batch_size": 8, "eval_batch_size": 16, "epochs": 3, "warmup_ratio": 0.1}

    def __init__(self):
        self.cfg = None
        self.generate_kwargs = {}
        self.base_predictions = {}

    # ------------------------------------------------------------ options
    def option_defaults(self, method) -> dict:
        d = super().option_defaults(method)  # the family's defaults + length-grouped batches
        if self.name == "asr":
            d["text_column"] = "transcription"  # the audiofolder convention (docrep's default differs)
        lr = family_lr(method)
        if lr is not None:
            d["lr"] = lr
        return d

    def configure(self, cfg):
        import copy

        task = copy.copy(self)
        task.cfg = cfg
        task.generate_kwargs, task.base_predictions = {}, {}
        return task

    def validate(self, cfg) -> None:
        if get_method(cfg.method).trains == "virtual_tokens":
            raise UserError(f"--method {cfg.method}: not applicable to speech recognition (PEFT's prompt learning "
                            f"prepends virtual tokens to input_ids / inputs_embeds; Whisper's encoder reads "
                            f"input_features); use a method that trains weights or adapters "
                            f"({methods_training('weights', 'adapters')})")

    # ------------------------------------------------------------ model
    def load_model(self, name: str, allow_pickle: bool = False):
        model, processor, layout, source = super().load_model(name, allow_pickle=allow_pickle)
        cfg = self.cfg
        if model.config.model_type != "whisper":
            raise UserError(f"--model {name}: a {model.config.model_type} model; the asr tasks fine-tune Whisper "
                            f"(whisper-tiny, whisper-base, a local Whisper folder or hub id)")
        tok = processor.tokenizer
        gen = model.generation_config
        if getattr(gen, "is_multilingual", False):
            language = cfg.language if cfg and cfg.language else getattr(gen, "language", None)
            if not language:
                raise UserError(f"--model {name}: multilingual Whisper with no default language: pass --language "
                                f"(e.g. --language en)")
            tok.set_prefix_tokens(language=language, task="transcribe")  # the labels' prompt = generate's
            self.generate_kwargs = {"language": language, "task": "transcribe"}
        elif cfg and cfg.language:
            raise UserError(f"--language {cfg.language}: --model {name} is English-only (no language tokens)")
        limit = model.config.max_target_positions - len(tok.prefix_tokens)
        if cfg and cfg.max_new_tokens > limit:
            raise UserError(f"--max-new-tokens {cfg.max_new_tokens}: the model's decoder takes at most "
                            f"{model.config.max_target_positions} positions, {len(tok.prefix_tokens)} of them the "
                            f"prompt (use <= {limit})")
        sot = tok.convert_tokens_to_ids("<|startoftranscript|>")
        if model.config.decoder_start_token_id != sot:
            raise UserError(f"--model {name}: decoder_start_token_id {model.config.decoder_start_token_id} is not "
                            f"the tokenizer's <|startoftranscript|> ({sot})")
        self.max_label_tokens = model.config.max_target_positions
        return model, processor, layout, source

    # ------------------------------------------------------------ hooks
    def encode(self, examples, processor, cfg) -> list:
        """Utterances -> rows {audio, labels, text, file}; log-mel features are made per batch."""
        tok = processor.tokenizer
        self.tokenizer = tok
        sot = tok.convert_tokens_to_ids("<|startoftranscript|>")
        limit = getattr(self, "max_label_tokens", 448)
        rows = []
        for u in examples:
            audio = window_audio(u, f"{u.where}: {u.file}", " or remove the row")
            ids = tok(" " + u.transcription.strip()).input_ids
            if ids and ids[0] == sot:
                ids = ids[1:]  # the model prepends the decoder start token itself
            if len(ids) > limit:
                raise UserError(f"{u.where}: {u.file}: transcript is {len(ids)} tokens; Whisper's decoder takes "
                                f"at most {limit}")
            rows.append({"audio": audio, "labels": ids, "text": u.transcription, "file": u.file})
        return rows

    def collator(self, processor):
        fe, pad = processor.feature_extractor, -100

        def collate(rows):
            feats = fe([r["audio"] for r in rows], sampling_rate=SAMPLING_RATE, return_tensors="pt").input_features
            n = max(len(r["labels"]) for r in rows)
            labels = torch.full((len(rows), n), pad, dtype=torch.long)
            for i, r in enumerate(rows):
                labels[i, :len(r["labels"])] = torch.tensor(r["labels"])
            return {"input_features": feats, "labels": labels}

        return collate

    def length(self, row):
        return None  # every input is the same 30-s window of features

    def decode(self, outputs, batch):  # evaluation decodes with generate (predict)
        raise NotImplementedError

    def loss(self, model, batch):
        from torch.nn.parallel import DistributedDataParallel

        if isinstance(model, DistributedDataParallel):  # data-parallel: the forward must go through the wrapper
            inner = model.module
            if _core(inner) is not inner:  # PEFT: the wrapper calls the base model (it holds the LoRA layers)
                inner.forward = _core(inner).forward
            return model(**batch).loss
        return _core(model)(**batch).loss

    @torch.no_grad()
    def predict(self, model, loader, device) -> tuple:
        """(hypotheses, reference transcripts) by greedy ``generate``, in the loader's row order."""
        model.eval()
        core = _core(model)
        hyps = []
        for batch in loader:
            ids = core.generate(input_features=batch["input_features"].to(device),
                                max_new_tokens=self.cfg.max_new_tokens, num_beams=1, do_sample=False,
                                **self.generate_kwargs)
            hyps.extend(t.strip() for t in self.tokenizer.batch_decode(ids, skip_special_tokens=True))
        return hyps, [r["text"] for r in loader.dataset]

    # ------------------------------------------------------------ training + the base model
    def before_fit(self, ctx, evaluate) -> dict:
        """The base model's metrics and transcripts on the same eval splits, before any step."""
        return self.base_evaluation(ctx, evaluate)

    def after_fit(self, ctx, summary, base) -> dict:
        """``base_*`` metrics beside the fine-tuned ones; run.json ``asr`` (delta, samples ...)."""
        cfg = ctx.cfg
        after = summary.final_metrics
        summary.final_metrics = {**after, **{"base_" + k: v for k, v in base["metrics"].items()}}
        self.base_predictions = base["hypotheses"]
        tok = ctx.tokenizer
        samples = {}
        for name, pr in summary.final_predictions.items():
            samples[name] = [{"file": os.path.basename(ex.file), "reference": ref, "base": b, "fine_tuned": hyp}
                             for ex, ref, b, hyp in zip(pr.examples, pr.references, base["hypotheses"][name],
                                                        pr.predictions)][:N_SAMPLES]
        return {"asr": {
            "normaliser": NORMALISER,
            "decoding": f"greedy, at most {cfg.max_new_tokens} new tokens, no timestamps"
                        + (f", language {self.generate_kwargs['language']}" if self.generate_kwargs else ""),
            "labels": f"tokenizer(' ' + transcript) without <|startoftranscript|> (id "
                      f"{tok.convert_tokens_to_ids('<|startoftranscript|>')}): prompt "
                      f"{tok.convert_ids_to_tokens(tok.prefix_tokens[1:])} + text + <|endoftext|>; padding -100",
            "splits": {s.name: {"utterances": len(s.examples), "metric_prefix": self.split_prefix(i, s),
                                **s.info} for i, s in enumerate(ctx.eval_splits)},
            "base": base["metrics"], "base_eval_cached": base["cached"], "base_eval_seconds": base["seconds"],
            "delta": {k: round(after[k] - base["metrics"][k], 6) for k in after if k in base["metrics"]},
            "samples": samples,
        }}

    def base_evaluation(self, ctx, evaluate) -> dict:
        """The base model's metrics and hypotheses on the run's eval splits (before any training step),
        cached under $TUNELAB_CACHE/base-eval/: a pure function of weights, audio, transcripts and decoding."""
        from ...cache import cache_dir
        from ...results.record import write_json_atomic
        from ...train import distributed
        import transformers

        key_src = {"v": BASE_EVAL_VERSION, "task": "asr", "model": model_fingerprint(ctx.model_source),
                   "splits": [[s.name, [[u.file, u.transcription, u.audio_digest()] for u in s.examples]]
                              for s in ctx.eval_splits],
                   "max_new_tokens": ctx.cfg.max_new_tokens, "generate": self.generate_kwargs,
                   "normaliser": NORMALISER, "device": ctx.device.type, "transformers": transformers.__version__}
        key = hashlib.sha256(json.dumps(key_src, sort_keys=True).encode()).hexdigest()[:20]
        path = cache_dir("base-eval", "asr-" + key + ".json")
        # data-parallel: rank 0 decides (evaluate is collective, every rank must take the same branch)
        if distributed.broadcast_object(os.path.isfile(path)):
            with open(path, encoding="utf-8") as f:
                out = json.load(f)
            return {**out, "cached": True}
        t0 = time.perf_counter()
        # the random state training starts from must not depend on whether this ran or came from the cache
        # (each eval DataLoader draws its base seed from torch's global generator): fork and restore it
        cuda = [ctx.device.index or 0] if ctx.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda), _base_model_context(ctx.model):
            metrics, preds = evaluate(ctx.model)
        out = {"metrics": metrics, "hypotheses": {name: p.predictions for name, p in preds.items()},
               "seconds": round(time.perf_counter() - t0, 3)}
        if distributed.is_main():  # every rank holds the same gathered result; one writes it
            os.makedirs(os.path.dirname(path), exist_ok=True)
            write_json_atomic(path, out)
        distributed.barrier()
        return {**out, "cached": False}

    # ------------------------------------------------------------ tunelab predict
    def read_inputs(self, path, cfg) -> list:
        """Audio: one file, a folder of audio files (sorted by name) or an audiofolder (metadata.csv's
        ``file_name`` rows, in file order; the transcript column is not needed)."""
        exts = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".aiff", ".aif")
        if os.path.isfile(path):
            return [Utterance("", os.path.abspath(path), 0, os.path.basename(path))]
        meta = os.path.join(path, "metadata.csv")
        if os.path.isfile(meta):
            out = []
            with open(meta, newline="", encoding="utf-8-sig") as f:
                reader = csv.reader(f)
                header = next(reader, None) or []
                if "file_name" not in header:
                    raise UserError(f"{meta}:1: no column 'file_name' (columns: {', '.join(header)})")
                k = header.index("file_name")
                for fields in reader:
                    if not any(x.strip() for x in fields):
                        continue
                    where = f"{meta}:{reader.line_num}"
                    name = fields[k].strip() if len(fields) > k else ""
                    file = os.path.abspath(os.path.join(path, name))
                    if not name or not os.path.isfile(file):
                        raise UserError(f"{where}: audio file {name!r} not found in {path}")
                    out.append(Utterance("", file, reader.line_num, where))
            if not out:
                raise UserError(f"{meta}: no rows")
            return out
        files = sorted(f for f in os.listdir(path) if f.lower().endswith(exts))
        if not files:
            raise UserError(f"--input {path}: no audio files ({', '.join(exts)}) and no metadata.csv")
        return [Utterance("", os.path.abspath(os.path.join(path, f)), 0, f) for f in files]

    @torch.no_grad()
    def predict_inputs(self, model, processor, inputs, cfg, device, batch_size, progress=None):
        """The transcript of each recording: the run's evaluation decoding (greedy, --max-new-tokens,
        its language), 30-s windows as in training (longer audio is refused)."""
        from ..base import progress_bar

        fe, tok, core = processor.feature_extractor, processor.tokenizer, _core(model)
        bar = progress_bar(len(inputs), f"predict {self.name}", progress)
        for b in range(0, len(inputs), batch_size):
            chunk = inputs[b:b + batch_size]
            audio = [window_audio(u, u.where) for u in chunk]
            feats = fe(audio, sampling_rate=SAMPLING_RATE, return_tensors="pt").input_features
            ids = core.generate(input_features=feats.to(device), max_new_tokens=cfg.max_new_tokens, num_beams=1,
                                do_sample=False, **self.generate_kwargs)
            for u, t in zip(chunk, tok.batch_decode(ids, skip_special_tokens=True)):
                yield {"file": os.path.basename(u.file), "transcript": t.strip()}
            bar.update(len(chunk))
        bar.close()

    def write_predictions(self, path: str, predictions: dict) -> None:
        """One row per utterance and eval split: file, reference, hypothesis of the fine-tuned model and
        of the base model (tab-separated, csv-quoted where a transcript needs it)."""
        with open(path, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, delimiter="\t", lineterminator="\n")
            w.writerow(["split", "index", "line", "file", "reference", "hypothesis", "base_hypothesis"])
            for split, pr in predictions.items():
                base = self.base_predictions.get(split) or [""] * len(pr.predictions)
                for i, (ex, ref, hyp, b) in enumerate(zip(pr.examples, pr.references, pr.predictions, base)):
                    w.writerow([split, i, ex.line, os.path.basename(ex.file), _one_line(ref), _one_line(hyp),
                                _one_line(b)])


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


# ---------------------------------------------------------------- speech-accents

SPEECH_CANDIDATES = ("data/speech", "../shared/data/speech")


class SpeechAccents(SpeechRecognitionTask):
    """Whisper on accented synthetic English (new domain) with real recordings as the forgetting check."""

    name = "speech-accents"
    eval_splits = ("validation", "test", "real")

    def _root(self, data_dir: str | None) -> str:
        cands = [data_dir, os.path.join(data_dir, "speech")] if data_dir else list(SPEECH_CANDIDATES)
        for c in cands:
            if os.path.isdir(os.path.join(c, "accents")) and os.path.isdir(os.path.join(c, "real")):
                return c
        if data_dir:
            raise UserError(f"--data-dir {data_dir}: no accents/ and real/ folders (speech-accents reads "
                            f"accents/{{train,validation,test}} and real/test, e.g. ../shared/data/speech)")
        raise UserError("speech-accents needs --data-dir: the folder with accents/ and real/ (../shared/data/speech)")

    def load(self, split: str, data_dir: str | None) -> Split:
        root = self._root(data_dir)
        sub = os.path.join("real", "test") if split == "real" else os.path.join("accents", split)
        folder = os.path.join(root, sub)
        if not os.path.isdir(folder):
            raise UserError(f"--data-dir {root}: missing {sub}/ ({split} split of {self.name})")
        return audiofolder_split(folder, split)


# ---------------------------------------------------------------- asr: any audiofolder or hub dataset

EVAL_FOLDERS = {"validation": ("validation", "valid", "dev", "eval"), "test": ("test",)}


class GenericASR(SpeechRecognitionTask):
    """Any speech data: an audiofolder (--data-dir) or a hub dataset (--dataset)."""

    name = "asr"
    eval_splits = ("validation",)
    shared_options = ("eval_fraction", "dataset", "dataset_config", "text_column")  # common options it reads

    def configure(self, cfg):
        task = super().configure(cfg)
        if cfg.dataset:
            names = _hub_split_names(cfg.dataset, cfg.dataset_config)
            if "train" not in names:
                raise UserError(f"--dataset {cfg.dataset}: no train split (splits: {', '.join(names)})")
            task.eval_splits = tuple(s for s in ("validation", "test") if s in names)
            if not task.eval_splits:
                raise UserError(f"--dataset {cfg.dataset}: no validation or test split (splits: {', '.join(names)})")
            return task
        if not cfg.data_dir:
            raise UserError("--task asr needs --data-dir (an audiofolder: metadata.csv with file_name,transcription "
                            "and the audio) or --dataset (a hub dataset id)")
        layout = _audiofolder_splits(cfg.data_dir)
        task.folders = layout
        task.eval_splits = tuple(s for s in layout if s != "train") or ("validation",)
        return task

    def load(self, split: str, data_dir: str | None) -> Split:
        cfg = self.cfg
        if cfg.dataset:
            return _hub_split(cfg.dataset, cfg.dataset_config, split, cfg.audio_column, cfg.text_column)
        if len(self.folders) > 1:  # split folders
            return audiofolder_split(self.folders[split], split, cfg.text_column)
        # one folder, no splits: a seeded held-out share becomes "validation" (the same for every seed)
        whole = audiofolder_split(self.folders["train"], "train", cfg.text_column)
        parts, record = seeded_split(whole.examples, {"validation": float(cfg.eval_fraction)}, 0)
        if not parts["train"]:
            raise UserError(f"{self.folders['train']}: {len(whole.examples)} utterance(s); too few to hold out a "
                            "validation split")
        info = {**whole.info, "held_out": f"seeded (0) {cfg.eval_fraction:g} of {len(whole.examples)} utterances -> "
                                          "validation", "split": record}
        return Split(split, take(whole.examples, parts[split if split == "validation" else "train"]), whole.files, info)


def _audiofolder_splits(data_dir: str) -> dict:
    """{split: folder} of an audiofolder root: split folders with metadata.csv, else the root itself as train."""
    out = {}
    if os.path.isfile(os.path.join(data_dir, "train", "metadata.csv")):
        out["train"] = os.path.join(data_dir, "train")
        for split, names in EVAL_FOLDERS.items():
            for n in names:
                if os.path.isfile(os.path.join(data_dir, n, "metadata.csv")):
                    out[split] = os.path.join(data_dir, n)
                    break
        if len(out) == 1:
            raise UserError(f"--data-dir {data_dir}: train/ but no validation/ (or valid/, dev/, eval/) or test/ "
                            f"folder with a metadata.csv")
        return out
    if os.path.isfile(os.path.join(data_dir, "metadata.csv")):
        return {"train": data_dir}
    raise UserError(f"--data-dir {data_dir}: not an audiofolder (expected metadata.csv with file_name,transcription, "
                    f"or train/ and validation/ or test/ folders each with one)")


def _quiet_datasets():
    import datasets
    import huggingface_hub

    datasets.logging.set_verbosity_error()
    huggingface_hub.utils.logging.set_verbosity_error()


def _hub_split_names(dataset: str, config: str | None) -> list:
    try:
        import datasets

        _quiet_datasets()
        return list(datasets.get_dataset_split_names(dataset, config))
    except Exception as e:  # noqa: BLE001  (network / hub errors become one line)
        raise UserError(f"--dataset {dataset}: cannot read its splits from the hub ({type(e).__name__}: "
                        f"{_one_line(str(e))[:160]}); pass --data-dir with a local audiofolder") from e


def _hub_split(dataset: str, config: str | None, split: str, audio_col: str, text_col: str) -> Split:
    """A hub split as Utterances holding the encoded audio bytes (decoded with soundfile, resampled to
    16 kHz, when the run encodes them)."""
    try:
        import datasets

        _quiet_datasets()
        ds = datasets.load_dataset(dataset, config, split=split)
    except Exception as e:  # noqa: BLE001
        raise UserError(f"--dataset {dataset}: cannot load split {split} ({type(e).__name__}: "
                        f"{_one_line(str(e))[:160]})") from e
    where = f"hub:{dataset}{'/' + config if config else ''}/{split}"
    for col, opt in ((audio_col, "--audio-column"), (text_col, "--text-column")):
        if col not in ds.column_names:
            raise UserError(f"{where}: no column {col!r} ({opt}; columns: {', '.join(ds.column_names)})")
    ds = ds.cast_column(audio_col, datasets.Audio(decode=False))  # bytes + path; we decode with soundfile
    examples = []
    for i, row in enumerate(ds):
        here = f"{where} row {i}"
        text, audio = row[text_col], row[audio_col] or {}
        if not isinstance(text, str) or not text.strip():
            raise UserError(f"{here}: empty {text_col}")
        data, path = audio.get("bytes"), audio.get("path")
        if data is None and not (path and os.path.isfile(path)):
            raise UserError(f"{here}: no audio bytes and no readable file ({path})")
        examples.append(Utterance(text.strip(), path or f"row-{i}", 0, here, data))
    if not examples:
        raise UserError(f"{where}: no rows")
    return Split(split, examples, {where: getattr(ds, "_fingerprint", "")})


TASKS.add(SpeechAccents.name, SpeechAccents())
TASKS.add(GenericASR.name, GenericASR())
