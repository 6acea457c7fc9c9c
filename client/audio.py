"""Reference audio in, WAV out."""

from __future__ import annotations

import os
import secrets
import wave
from pathlib import Path

import numpy as np
import soundfile as sf


def load_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Any file soundfile reads (WAV, FLAC, OGG, ...) -> float32 [channels, samples], sample rate."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"reference audio file {path} does not exist")
    if path.is_dir():
        raise ValueError(f"reference audio {path} is a directory, not an audio file")
    if not os.access(path, os.R_OK):
        raise ValueError(f"reference audio file {path} is not readable (permission denied)")
    try:
        data, sample_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise ValueError(f"cannot read reference audio {path}: {e}") from e
    return np.ascontiguousarray(data.T), int(sample_rate)


def write_wav_atomic(path: str | Path, waveform: np.ndarray, sample_rate: int) -> None:
    """Write a 16-bit PCM WAV via a temp file + rename: no partial file on failure.

    The temp file is created with mode 0666 minus the umask, as open() would create the file
    itself (mkstemp's 0600 would survive the rename).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as out:
            sf.write(out, np.asarray(waveform, dtype=np.float32), sample_rate, subtype="PCM_16", format="WAV")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class ProgressiveWav:
    """A 16-bit mono WAV written piece by piece. The stdlib writer rewrites the header's sizes
    after every piece, so the file is a valid WAV of what has arrived while the rest is still
    being synthesized (a player or another process can read it)."""

    def __init__(self, path: str | Path, sample_rate: int) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._out = open(path, "wb")
        self._file = wave.open(self._out, "wb")
        self._file.setnchannels(1)
        self._file.setsampwidth(2)
        self._file.setframerate(sample_rate)

    def write(self, samples: np.ndarray) -> None:
        self._file.writeframes(pcm16(samples))
        self._out.flush()  # the frames and the patched header reach the file now

    def close(self) -> None:
        self._file.close()
        self._out.close()


def pcm16(samples: np.ndarray) -> bytes:
    """Raw 16-bit little-endian PCM (what `aplay -f S16_LE` and `ffplay -f s16le` read)."""
    return (np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0) * 32767).astype("<i2").tobytes()
