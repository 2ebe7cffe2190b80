"""Speech data in the Hugging Face "audiofolder" layout: a folder with ``metadata.csv`` (columns
``file_name`` and ``transcription``, others ignored) and the audio files it names (paths relative to
the folder; anything libsndfile reads: FLAC, WAV, OGG...).

``read_audiofolder`` checks the whole table up front (every row has a file name and a non-empty
transcription, every file exists and has a readable audio header) so that bad data fails before
training, with one line naming ``metadata.csv:LINE`` and the file. ``load_audio`` decodes one file
to what Whisper's feature extractor expects: float32 mono at 16 kHz. Multi-channel audio is averaged
to mono; another sample rate is resampled with ``scipy.signal.resample_poly`` (polyphase FIR with a
Kaiser-window anti-aliasing filter, the exact rational ratio 16000/rate) rather than refused, since
any recording rate is legitimate input.
"""

import csv
import math
import os
from typing import NamedTuple

import numpy as np

from ...errors import UserError

SAMPLING_RATE = 16_000  # Whisper's feature extractor works at 16 kHz


class AudioRow(NamedTuple):
    file: str           # absolute path of the audio file
    transcription: str  # the text as written in metadata.csv (not normalised)
    line: int           # line of metadata.csv the row ends on (the header is line 1)


def read_audiofolder(folder: str, text_column: str = "transcription") -> list:
    """Rows of ``folder/metadata.csv`` as ``AudioRow(file, transcription, line)``, validated."""
    import soundfile as sf

    meta = os.path.join(folder, "metadata.csv")
    if not os.path.isfile(meta):
        raise UserError(f"{folder}: no metadata.csv (audiofolder layout: metadata.csv with columns "
                        f"file_name,{text_column} and the audio files beside it)")
    rows = []
    with open(meta, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise UserError(f"{meta}: empty file")
        for col in ("file_name", text_column):
            if col not in header:
                raise UserError(f"{meta}:1: no column {col!r} (columns: {', '.join(header)})")
        i_file, i_text = header.index("file_name"), header.index(text_column)
        for fields in reader:
            where = f"{meta}:{reader.line_num}"
            if not any(x.strip() for x in fields):
                continue  # blank line
            if len(fields) != len(header):
                raise UserError(f"{where}: {len(fields)} fields, the header has {len(header)}")
            name, text = fields[i_file].strip(), fields[i_text].strip()
            if not name:
                raise UserError(f"{where}: empty file_name")
            if not text:
                raise UserError(f"{where}: {name}: empty {text_column}")
            path = os.path.abspath(os.path.join(folder, name))
            if not os.path.isfile(path):
                raise UserError(f"{where}: audio file {name} not found in {folder}")
            try:
                info = sf.info(path)
            except Exception as e:  # libsndfile: unknown format, corrupt header
                raise UserError(f"{where}: {name}: not a readable audio file ({_one_line(e)})") from None
            if info.frames == 0:
                raise UserError(f"{where}: {name}: no audio samples")
            rows.append(AudioRow(path, text, reader.line_num))
    if not rows:
        raise UserError(f"{meta}: no rows")
    return rows


def load_audio(path, where: str = "", name: str | None = None) -> np.ndarray:
    """Decode ``path`` to float32 mono at 16 kHz; UserError naming ``where`` and the file if it
    cannot be decoded (a corrupt or truncated file is often only found here, not by the header).
    ``path`` may also be a file-like object (a hub dataset's audio bytes); ``name`` names it in errors."""
    import soundfile as sf

    prefix = f"{where}: " if where else ""
    name = name or str(path)
    try:
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
    except Exception as e:
        raise UserError(f"{prefix}{name}: cannot decode audio ({_one_line(e)})") from None
    if audio.shape[0] == 0:
        raise UserError(f"{prefix}{name}: no audio samples")
    return to_16k_mono(audio, rate)


def to_16k_mono(audio: np.ndarray, rate: int) -> np.ndarray:
    """(frames, channels) or (frames,) float audio at ``rate`` -> float32 mono at 16 kHz."""
    from scipy.signal import resample_poly

    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    if rate != SAMPLING_RATE:
        g = math.gcd(SAMPLING_RATE, int(rate))
        audio = resample_poly(audio, SAMPLING_RATE // g, int(rate) // g).astype(np.float32)
    return audio


def load_audiofolder(folder: str, text_column: str = "transcription") -> tuple:
    """(rows, audio arrays) of a whole audiofolder: read_audiofolder + load_audio for every row."""
    rows = read_audiofolder(folder, text_column)
    meta = os.path.join(folder, "metadata.csv")
    return rows, [load_audio(r.file, f"{meta}:{r.line}") for r in rows]


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split()) or type(e).__name__
