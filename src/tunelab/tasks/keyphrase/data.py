"""Keyphrase extraction data: reading, splits, BIO labels, sliding windows, span decoding.

Pure functions; the keyphrase Task calls them. The formulation is the one of the BERT-era papers
(Sahrawat et al. 2020): token classification with B/I/O tags over the words of the document,
first sub-token of every word labelled, the others -100.

Data layout (LIAAD / YAKE copies of Inspec, KDD, WWW, or any folder like them)::

    <dataset>/docsutf8/<id>.txt   the document (title + abstract), UTF-8, CRLF or LF
    <dataset>/keys/<id>.key       gold keyphrases, one per line (lines are stripped, empty ones skipped)

Words: ``tokenize_words`` = runs of letters/digits, with inner hyphens and apostrophes kept
("graph-based", "user's"), and every other non-space character as a word of its own. The same
tokenisation is used for documents, gold keys and predicted phrases, so matching is consistent.

Matching (labels, "present" keys, metrics): lower-case + Porter stem (nltk) of every word, exact
match of the whole word sequence. So "networks" in the text matches the key "network".
"""

import hashlib
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from ...errors import UserError
from .. import tagging
from ..base import sha256_file
from ..splits import seeded_split, take

LABELS = ("O", "B", "I")
LABEL2ID = {name: i for i, name in enumerate(LABELS)}
DATASETS = {"inspec": "Inspec", "kdd": "kdd", "www": "www"}  # task name -> folder in ../shared/data/keyphrase
HUB_IDS = {"inspec": "midas/inspec", "kdd": "midas/kdd", "www": "midas/www"}
SPLIT_RATIOS = (0.70, 0.15, 0.15)  # train / validation / test for datasets without a published split

WORD_RE = re.compile(r"\w+(?:[-'\u2019]\w+)*|[^\w\s]")


@dataclass
class Doc:
    id: str
    text: str
    keys: list  # gold keyphrases as written in the key file (stripped, non-empty lines)
    path: str = ""  # document file ("" for hub data)
    key_path: str = ""
    words: list = field(default_factory=list)  # filled by read_keyphrase_dir / load_hub (tokenize_words)


# --- words and stems ---

def tokenize_words(text: str) -> list:
    """Surface words of a text (see module docstring)."""
    return WORD_RE.findall(text)


@lru_cache(maxsize=None)
def _stemmer():
    from nltk.stem.porter import PorterStemmer

    return PorterStemmer()


@lru_cache(maxsize=200_000)
def stem_word(word: str) -> str:
    """Lower-cased Porter stem of one word (nltk's PorterStemmer, its default NLTK_EXTENSIONS mode)."""
    return _stemmer().stem(word.lower())


def phrase_key(phrase: str) -> tuple:
    """The matching form of a phrase: tuple of stemmed words. '' -> ()."""
    return tuple(stem_word(w) for w in tokenize_words(phrase))


# --- reading ---

def _read_utf8(path: Path) -> str:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise UserError(f"{path}: line {line}: not valid UTF-8 (byte {e.start}: {raw[e.start:e.start + 1]!r})") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_keyphrase_dir(path) -> tuple:
    """Read a docsutf8/ + keys/ folder. Returns (docs sorted by id, files = {abs path: sha256}).

    Every document needs its key file and every key file its document; documents must be non-empty
    UTF-8 and key files must hold at least one keyphrase. Anything else is a UserError naming the file.
    """
    root = Path(path)
    doc_dir, key_dir = root / "docsutf8", root / "keys"
    if not doc_dir.is_dir() or not key_dir.is_dir():
        raise UserError(f"{root}: not a keyphrase dataset folder (needs docsutf8/*.txt and keys/*.key)")
    doc_paths = {p.stem: p for p in doc_dir.glob("*.txt")}
    key_paths = {p.stem: p for p in key_dir.glob("*.key")}
    if not doc_paths:
        raise UserError(f"{doc_dir}: no .txt documents")
    orphans = sorted(key_paths.keys() - doc_paths.keys())
    if orphans:
        i = orphans[0]
        raise UserError(f"{key_paths[i]}: key file without its document {doc_dir / (i + '.txt')}")
    missing = sorted(doc_paths.keys() - key_paths.keys())
    if missing:
        i = missing[0]
        raise UserError(f"{doc_paths[i]}: document without its key file {key_dir / (i + '.key')}")
    docs, files = [], {}
    for i in sorted(doc_paths):
        dp, kp = doc_paths[i], key_paths[i]
        text = _read_utf8(dp)
        if not text.strip():
            raise UserError(f"{dp}: empty document")
        keys = [line.strip() for line in _read_utf8(kp).split("\n")]
        keys = [k for k in keys if k]
        if not keys:
            raise UserError(f"{kp}: no keyphrases (every line is empty)")
        docs.append(Doc(id=i, text=text, keys=keys, path=str(dp.resolve()), key_path=str(kp.resolve()),
                        words=tokenize_words(text)))
        files[str(dp.resolve())] = sha256_file(str(dp))
        files[str(kp.resolve())] = sha256_file(str(kp))
    return docs, files


def find_dataset(data_dir, name: str) -> Path:
    """The folder of dataset `name` (inspec|kdd|www): data_dir itself when it is a dataset folder,
    else its child named like the dataset (case-insensitive: Inspec, kdd, www)."""
    d = Path(data_dir)
    if (d / "docsutf8").is_dir():
        return d
    if not d.is_dir():
        raise UserError(f"--data-dir {d}: no such folder")
    want = DATASETS.get(name, name).lower()
    for child in sorted(d.iterdir()):
        if child.is_dir() and child.name.lower() == want and (child / "docsutf8").is_dir():
            return child
    raise UserError(f"--data-dir {d}: no {DATASETS.get(name, name)}/docsutf8 inside (and {d} has no docsutf8/ itself)")


# --- splits ---

def _ids_digest(ids) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def _inspec_split(doc_id: str) -> str:
    """Hulth (2003)'s original Inspec split, as published in boudinfl/ake-datasets (train/dev/test
    folders) and hence midas/inspec. The LIAAD file names are Hulth's document numbers, and the
    published split is three ranges of the numbers compared as *strings*: validation = "1461".."1929",
    test = "193".."414", train = the rest. (Checked file by file against ake-datasets at its boundaries:
    train 146, 1460, 538, 999, 9, 11; validation 15, 19, 192, 1461, 1929; test 2, 4, 41, 193, 414, 2200.)"""
    if "1461" <= doc_id <= "1929":
        return "validation"
    if "193" <= doc_id <= "414":
        return "test"
    return "train"


def split_docs(docs, name: str, seed: int = 0) -> tuple:
    """Split documents into train / validation / test. Returns ({split: [Doc]}, rule dict for run.json).

    inspec: the original 1000 / 500 / 500 split (see _inspec_split), independent of the seed.
    Any other dataset (kdd, www, a user's folder): document ids sorted, shuffled with random.Random(seed),
    then 70% / 15% / 15% (validation and test rounded, train takes the rest). Keep the split seed fixed
    across runs that are compared (the training seed need not be the split seed)."""
    docs = sorted(docs, key=lambda d: d.id)
    if name == "inspec":
        out = {"train": [], "validation": [], "test": []}
        for d in docs:
            out[_inspec_split(d.id)].append(d)
        rule = {"rule": "Hulth 2003 original split (as in boudinfl/ake-datasets, midas/inspec): ids compared as "
                        "strings, validation '1461'..'1929', test '193'..'414', train the rest",
                "expected_sizes": {"train": 1000, "validation": 500, "test": 500}}
    else:
        parts, _ = seeded_split(docs, {"validation": SPLIT_RATIOS[1], "test": SPLIT_RATIOS[2]}, seed,
                                rest_first=True, min_held=0)  # tasks/splits.py
        out = {name: take(docs, parts[name]) for name in ("train", "validation", "test")}
        rule = {"rule": "seeded document-level split: ids sorted, random.Random(seed).shuffle, "
                        "first 70% train, next 15% validation, last 15% test",
                "seed": seed, "ratios": list(SPLIT_RATIOS)}
    for split, part in out.items():
        if not part:
            raise UserError(f"keyphrase dataset '{name}': the {split} split is empty ({len(docs)} documents)")
    rule["sizes"] = {s: len(p) for s, p in out.items()}
    rule["ids_sha256_16"] = {s: _ids_digest([d.id for d in p]) for s, p in out.items()}
    return out, rule


# --- hub copies (online users) ---

def load_hub(name: str) -> tuple:
    """Load midas/<name> from the Hugging Face hub (needs network). Returns ({split: [Doc]}, source dict).

    The midas repositories hold JSON-lines files (inspec: train/valid/test.jsonl; kdd, www: test.jsonl only)
    with the fields id (older files: paper_id), document (list of words), doc_bio_tags,
    extractive_keyphrases (present) and abstractive_keyphrases (absent). Gold keys = both lists. The
    files are read directly (datasets' json builder), since datasets >= 4 no longer runs their loading
    scripts. inspec comes with the hub's own train/validation/test split; kdd and www with only
    {"test": docs} (their whole collection): the caller splits those with split_docs. One UserError line
    when the hub can't be reached."""
    if name not in HUB_IDS:
        raise UserError(f"keyphrase hub dataset '{name}': known are {', '.join(sorted(HUB_IDS))}")
    repo = HUB_IDS[name]
    files = {"train": "train.jsonl", "validation": "valid.jsonl", "test": "test.jsonl"} if name == "inspec" \
        else {"test": "test.jsonl"}
    try:
        from datasets import load_dataset

        ds = load_dataset("json", data_files={s: f"hf://datasets/{repo}/{f}" for s, f in files.items()})
    except Exception as e:  # offline, hub error, missing file: one line for the user
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise UserError(f"could not load {repo} from the Hugging Face hub ({type(e).__name__}: {msg}); "
                        f"offline, use --data-dir with a docsutf8/ + keys/ folder") from None
    out = {}
    for split in files:
        docs = []
        for j, row in enumerate(ds[split]):
            words = list(row.get("document") or [])
            keys = list(row.get("extractive_keyphrases") or []) + list(row.get("abstractive_keyphrases") or [])
            keys = [k.strip() for k in keys if k and k.strip()]
            doc_id = str(row.get("id", row.get("paper_id", j)))
            if not words or not keys:
                continue  # nothing to learn or score
            text = " ".join(words)
            docs.append(Doc(id=doc_id, text=text, keys=keys, words=tokenize_words(text)))
        out[split] = docs
    return out, {"hub": repo, "files": files}


# --- labels ---

def bio_labels(words, keys) -> tuple:
    """BIO labels of `words` for gold `keys`. Returns (labels as 'B'/'I'/'O' strings, n_present, n_absent).

    Keys are deduplicated after stemming. Every occurrence of a key in the text (stemmed word sequence)
    is labelled; longer keys first, and an occurrence overlapping words already labelled is skipped
    (so "neural network" wins over "network" where both match). n_present counts the distinct keys that
    occur in the text at least once, n_absent the others: absent keys can never be extracted (the ceiling)."""
    stems = [stem_word(w) for w in words]
    uniq = list(dict.fromkeys(k for k in (phrase_key(k) for k in keys) if k))
    labels = ["O"] * len(words)
    n_present = 0
    for key in sorted(uniq, key=len, reverse=True):
        n = len(key)
        found = False
        for s in range(len(stems) - n + 1):
            if tuple(stems[s:s + n]) == key:
                found = True
                if all(lab == "O" for lab in labels[s:s + n]):
                    labels[s] = "B"
                    for t in range(s + 1, s + n):
                        labels[t] = "I"
        n_present += found
    return labels, n_present, len(uniq) - n_present


def presence_counts(docs) -> dict:
    """Gold keys present in / absent from their document, over `docs` (the ceiling of any extractor)."""
    present = absent = 0
    for d in docs:
        _, p, a = bio_labels(d.words, d.keys)
        present += p
        absent += a
    total = present + absent
    return {"n_keys": total, "n_present": present, "n_absent": absent,
            "absent_share": absent / total if total else 0.0}


# --- sliding windows for a fast tokenizer (tasks/tagging.py, shared with token-classification) ---

def encode_windows(words, labels, tokenizer, max_length: int = 512, stride: int = 128) -> list:
    """tagging.encode_windows with this family's B/I/O labels (strings, or None for prediction)."""
    ids = None if labels is None else [LABEL2ID[lab] for lab in labels]
    return tagging.encode_windows(words, ids, tokenizer, max_length, stride)


def merge_word_probs(windows, token_probs, n_words: int) -> np.ndarray:
    """tagging.merge_word_probs over B/I/O: [n_words, 3]; a word no window covers gets P(O) = 1."""
    return tagging.merge_word_probs(windows, token_probs, n_words, len(LABELS), LABEL2ID["O"])


# --- decoding ---

def decode_spans(words, word_probs) -> list:
    """Predicted keyphrase spans, ranked: [{'phrase', 'score', 'start', 'end'}] (end exclusive).

    Each word gets its argmax label. A span starts at B (or at an I that follows O: tolerated) and goes on
    over the following I words. Score = mean over the span's words of P(B) + P(I), the probability that
    the word is inside a keyphrase. Phrases are deduplicated after stemming (highest score kept, its
    surface form the first one with that score) and ranked by score, ties by first position."""
    word_probs = np.asarray(word_probs)
    tags = word_probs.argmax(axis=1)
    inside = word_probs[:, LABEL2ID["B"]] + word_probs[:, LABEL2ID["I"]]
    spans, start = [], None
    for i, t in enumerate(list(tags) + [LABEL2ID["O"]]):
        if start is not None and t != LABEL2ID["I"]:
            spans.append((start, i))
            start = None
        if t == LABEL2ID["B"] or (t == LABEL2ID["I"] and start is None):
            start = i
    best = {}
    for s, e in spans:
        phrase = " ".join(words[s:e])
        key = phrase_key(phrase)
        if not key:
            continue
        score = float(inside[s:e].mean())
        if key not in best or score > best[key]["score"]:
            best[key] = {"phrase": phrase, "score": score, "start": s, "end": e}
    return sorted(best.values(), key=lambda d: (-d["score"], d["start"]))


MAX_CANDIDATE_WORDS = 6  # longest candidate span ranked after the argmax spans (Inspec's gold keys: 99 % <= 6 words)


def rank_candidates(words, word_probs, k: int = 10, spans: list | None = None) -> list:
    """The ranked list F1@5 / F1@10 cut: up to `k` phrases, so that @k has k candidates when the text has them.

    First the argmax spans (``decode_spans``, by their score: what the model tags outranks what it does not),
    then every other span of 1..MAX_CANDIDATE_WORDS words (no word without a letter or digit) by the
    probability that the words' independent tag distributions give exactly that span: P(B) at its first
    word x P(I) at each following word x (1 - P(I)) at the word after it. Deduplicated after stemming.
    Returns [{'phrase', 'score', 'start', 'end', 'argmax'}] (score: the argmax spans' mean P(B)+P(I),
    the others' span probability)."""
    word_probs = np.asarray(word_probs, dtype=np.float64)
    spans = decode_spans(words, word_probs) if spans is None else spans
    out = [dict(s, argmax=True) for s in spans[:k]]
    seen = {phrase_key(s["phrase"]) for s in spans}
    n = len(words)
    if len(out) >= k or n == 0:
        return out
    eps = 1e-12
    log_b = np.log(word_probs[:, LABEL2ID["B"]] + eps)
    log_i = np.log(word_probs[:, LABEL2ID["I"]] + eps)
    log_not_i = np.log(np.clip(1.0 - word_probs[:, LABEL2ID["I"]], eps, None))
    ok = np.array([any(ch.isalnum() for ch in w) for w in words])
    cum_i = np.concatenate([[0.0], np.cumsum(log_i)])  # cum_i[e] - cum_i[s+1]: sum of log P(I) over s+1..e-1
    starts, ends, scores = [], [], []
    for length in range(1, min(MAX_CANDIDATE_WORDS, n) + 1):
        s = np.arange(0, n - length + 1)
        e = s + length
        valid = np.array([ok[a:b].all() for a, b in zip(s, e)])
        lp = log_b[s] + (cum_i[e] - cum_i[s + 1]) + np.where(e < n, log_not_i[np.minimum(e, n - 1)], 0.0)
        starts.append(s[valid])
        ends.append(e[valid])
        scores.append(lp[valid])
    starts, ends, scores = np.concatenate(starts), np.concatenate(ends), np.concatenate(scores)
    for j in np.lexsort((starts, -scores)):  # best first, ties by position
        phrase = " ".join(words[starts[j]:ends[j]])
        key = phrase_key(phrase)
        if not key or key in seen:
            continue
        seen.add(key)
        out.append({"phrase": phrase, "score": float(np.exp(scores[j])), "start": int(starts[j]),
                    "end": int(ends[j]), "argmax": False})
        if len(out) >= k:
            break
    return out


def decode_keyphrases(words, word_probs) -> list:
    """Ranked keyphrases (strings) of one document; see decode_spans."""
    return [d["phrase"] for d in decode_spans(words, word_probs)]
