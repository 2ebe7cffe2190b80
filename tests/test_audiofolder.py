"""The audiofolder reader: real rows and audio, resampling, and one clear error per kind of bad data."""

import csv
import shutil

import numpy as np
import pytest
import soundfile as sf

from tunelab.errors import UserError
from tunelab.tasks.asr.audiofolder import SAMPLING_RATE, load_audio, load_audiofolder, read_audiofolder


@pytest.fixture
def real_test(shared_data):
    return shared_data / "speech" / "real" / "test"


def test_reads_the_real_split(real_test):
    rows, audio = load_audiofolder(str(real_test))
    with open(real_test / "metadata.csv", newline="", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert [(r.file, r.transcription) for r in rows] == \
        [(str(real_test / t["file_name"]), t["transcription"]) for t in table]
    assert [r.line for r in rows] == list(range(2, 2 + len(table)))
    for r, a in zip(rows, audio):
        assert a.dtype == np.float32 and a.ndim == 1
        assert len(a) == sf.info(r.file).frames  # already 16 kHz mono: untouched length


def test_other_rates_and_channels_become_16k_mono(tmp_path):
    rate, seconds = 22050, 1.5
    t = np.arange(int(rate * seconds)) / rate
    tone = 0.5 * np.sin(2 * np.pi * 440.0 * t)
    sf.write(tmp_path / "a.wav", np.stack([tone, 0.5 * tone], axis=1), rate)  # stereo
    a = load_audio(str(tmp_path / "a.wav"))
    assert abs(len(a) - seconds * SAMPLING_RATE) <= 1
    spectrum = np.abs(np.fft.rfft(a))
    assert np.fft.rfftfreq(len(a), 1 / SAMPLING_RATE)[spectrum.argmax()] == pytest.approx(440, abs=1)
    # channels averaged: amplitude (0.5 + 0.25) / 2, away from the edges of the resampling filter
    assert np.abs(a[2000:-2000]).max() == pytest.approx(0.375, abs=0.01)


def make_folder(tmp_path, real_test, rows, header="file_name,transcription"):
    d = tmp_path / "data"
    d.mkdir()
    shutil.copy(real_test / "cards-001.flac", d / "a.flac")
    (d / "metadata.csv").write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return d


@pytest.mark.parametrize("rows, header, message", [
    (["a.flac,ten of clubs", "missing.flac,seven"], None, r"metadata.csv:3: audio file missing.flac not found"),
    (["a.flac,ten of clubs", "a.flac,"], None, r"metadata.csv:3: a.flac: empty transcription"),
    (["a.flac,ten,extra"], None, r"metadata.csv:2: 3 fields, the header has 2"),
    (["a.flac,ten of clubs"], "file_name,text", r"metadata.csv:1: no column 'transcription'"),
    ([], None, r"metadata.csv: no rows"),
])
def test_bad_rows_name_file_and_line(tmp_path, real_test, rows, header, message):
    d = make_folder(tmp_path, real_test, rows, header or "file_name,transcription")
    with pytest.raises(UserError, match=message):
        read_audiofolder(str(d))


def test_unreadable_audio_names_the_file(tmp_path, real_test):
    d = make_folder(tmp_path, real_test, ["a.flac,ten of clubs", "junk.flac,four"])
    (d / "junk.flac").write_bytes(b"not audio" * 100)
    with pytest.raises(UserError, match=r"metadata.csv:3: junk.flac: not a readable audio file"):
        read_audiofolder(str(d))
    # a truncated FLAC keeps a valid header: it is caught when decoded, still naming file and line
    data = (real_test / "cards-005.flac").read_bytes()
    (d / "junk.flac").write_bytes(data[:len(data) // 2])
    assert len(read_audiofolder(str(d))) == 2
    with pytest.raises(UserError, match=r"metadata.csv:3: .*junk.flac: cannot decode audio"):
        load_audiofolder(str(d))


def test_no_metadata(tmp_path):
    with pytest.raises(UserError, match="no metadata.csv"):
        read_audiofolder(str(tmp_path))
