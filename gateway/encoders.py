"""Speech -> the bytes of each response format, piece by piece as the stream model sends them.

| format | encoder | container | progressive |
|---|---|---|---|
| pcm  | none (16-bit little-endian samples) | raw | yes |
| wav  | a RIFF header with open-ended sizes, then pcm (what streaming WAV writers do) | WAV | yes |
| mp3  | PyAV (FFmpeg's libmp3lame) | MPEG audio | sse only: sent whole, so its LAME tag carries the delay and length |
| opus | libsndfile through soundfile (libopus) | Ogg | yes |
| aac  | PyAV (FFmpeg's native AAC encoder) | ADTS | yes |
| flac | libsndfile through soundfile | FLAC | no: sent whole, so its header carries the length and MD5 |

Encoder delay. MP3 and AAC decoders put the encoder's priming before the speech (libmp3lame 1105
samples with the decoder's own delay, FFmpeg's AAC 1024) and pad the last frame, unless the file
says how much to drop. For mp3 that is the LAME tag in the first frame (an "Info" frame: delay,
padding and the frame count), which FFmpeg's muxer completes when it closes a seekable file: the
whole answer is encoded into memory and sent at the end, and decoders that read the tag (FFmpeg,
browsers, mpg123) return the samples without the delay (tested): exactly, or at some lengths with up
to a few dozen samples of padding left at the end (measured: at most 46 in 40 random lengths; the
padding FFmpeg records misses part of LAME's last frame there). A stream cannot take its first frame
back, and a tag without the frame count is decoded as a frame of silence by FFmpeg (measured), so
the mp3 deltas of stream_format "sse" carry no tag: 1105 samples of delay, then the last frames'
padding (under 1152 samples, two 24 kHz frames; measured 52 to 606). ADTS has no field for priming
at all: aac decodes to 1024 samples of delay, then the speech, then up to one frame (1024) of
padding (tested); clients that need the exact samples ask for pcm, wav, flac or opus (Ogg's pre-skip
and end trimming are exact).

Why not libsndfile for mp3: its LAME encoder rewrites the first frame (the Xing/LAME tag) when it
closes the file, which a stream cannot take back: decoders then stop early (measured: 17784 of
72000 samples). libsndfile has no AAC at all. Every encoder gets the same 16-bit samples
(client.audio.pcm16), so the lossless formats carry exactly the pcm answer.
"""

from __future__ import annotations

import io
import logging
import struct
from dataclasses import dataclass
from typing import Callable

import numpy as np

import contract
from client.audio import pcm16

log = logging.getLogger("gateway")

BITRATE = 64_000  # bits/s for mp3 and aac: transparent for 24 kHz mono speech


class Encoder:
    def push(self, samples: np.ndarray) -> bytes:
        """16-bit mono samples in; the bytes ready to send out (maybe none yet)."""
        raise NotImplementedError

    def finish(self) -> bytes:
        """The rest: buffered frames, trailers. The encoder is done after this."""
        return b""


class PcmEncoder(Encoder):
    def push(self, samples):
        return samples.astype("<i2").tobytes()


class WavEncoder(PcmEncoder):
    """16-bit PCM WAV whose RIFF and data sizes say 'unknown' (0xFFFFFFFF): the length is not known when
    the header leaves. libsndfile, FFmpeg, browsers and Python's wave module read to the end of the data."""

    def __init__(self, sample_rate: int) -> None:
        self._header = (
            b"RIFF"
            + struct.pack("<I", 0xFFFFFFFF)
            + b"WAVE"
            + b"fmt "
            + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
            + b"data"
            + struct.pack("<I", 0xFFFFFFFF)
        )

    def push(self, samples):
        head, self._header = self._header, b""
        return head + super().push(samples)

    def finish(self):
        return self._header  # no samples at all: still a valid (empty) WAV


class _Outbox:
    """A write-only file for an encoder library: collects what it writes until taken. Writing at a position
    already sent (a header rewritten at close) cannot be honoured; it is dropped and logged."""

    def __init__(self, seekable: bool) -> None:
        self._sent = 0
        self._pending = bytearray()
        self._pos = 0
        self._end = 0
        if seekable:  # libsndfile's virtual I/O needs these; PyAV must not see them (it would rewrite headers)
            self.seek = self._seek
            self.tell = lambda: self._pos
            self.read = lambda n=-1: b""

    def write(self, data) -> int:
        data = bytes(data)
        start, self._pos = self._pos, self._pos + len(data)
        self._end = max(self._end, self._pos)
        if start < self._sent:
            log.debug("encoder rewrote %d byte(s) at offset %d, already sent", len(data), start)
            data, start = data[self._sent - start :], self._sent
        offset = start - self._sent
        if offset > len(self._pending):
            self._pending.extend(b"\0" * (offset - len(self._pending)))
        self._pending[offset : offset + len(data)] = data
        return len(data)

    def _seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._pos = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._end}[whence] + offset
        return self._pos

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        out = bytes(self._pending)
        self._sent += len(out)
        self._pending.clear()
        return out


class OggOpusEncoder(Encoder):
    def __init__(self, sample_rate: int) -> None:
        import soundfile as sf

        self._out = _Outbox(seekable=True)
        self._file = sf.SoundFile(self._out, "w", samplerate=sample_rate, channels=1, format="OGG", subtype="OPUS")

    def push(self, samples):
        self._file.write(samples)
        return self._out.take()

    def finish(self):
        self._file.close()
        return self._out.take()


class FlacEncoder(Encoder):
    def __init__(self, sample_rate: int) -> None:
        self._rate = sample_rate
        self._pieces: list[np.ndarray] = []

    def push(self, samples):
        self._pieces.append(samples)
        return b""

    def finish(self):
        import soundfile as sf

        buf = io.BytesIO()
        samples = np.concatenate(self._pieces) if self._pieces else np.zeros(0, np.int16)
        sf.write(buf, samples, self._rate, format="FLAC", subtype="PCM_16")
        return buf.getvalue()


class PyAVEncoder(Encoder):
    """whole: into a seekable buffer, all of it sent by finish(), so that the muxer can complete its header
    (mp3's LAME tag); else progressive, into an unseekable outbox, where muxers write no such header."""

    def __init__(self, sample_rate: int, container: str, codec: str, whole: bool = False) -> None:
        import av

        self._rate = sample_rate
        self._whole = io.BytesIO() if whole else None
        self._out = _Outbox(seekable=False)
        self._container = av.open(self._whole or self._out, "w", format=container)
        self._stream = self._container.add_stream(codec, rate=sample_rate, layout="mono")
        self._stream.bit_rate = BITRATE

    def _mux(self, frame) -> bytes:
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        return self._out.take()

    def push(self, samples):
        import av

        frame = av.AudioFrame.from_ndarray(samples.astype(np.int16)[None], format="s16", layout="mono")
        frame.sample_rate = self._rate
        return self._mux(frame)

    def finish(self):
        tail = self._mux(None)  # flush the encoder
        self._container.close()  # mp3 into a seekable buffer: its LAME tag is completed here
        return self._whole.getvalue() if self._whole else tail + self._out.take()


@dataclass(frozen=True)
class AudioFormat:
    name: str
    media_type: str
    progressive: bool  # stream_format "audio": bytes leave as each piece arrives (else all at the end)
    library: str
    make: Callable[[int], Encoder]  # the encoder of a stream_format "audio" answer
    make_events: Callable[[int], Encoder] | None = None  # of an "sse" answer, where it differs: progressive


FORMATS: dict[str, AudioFormat] = {
    f.name: f
    for f in (
        AudioFormat(
            "mp3",
            "audio/mpeg",
            False,
            "PyAV (FFmpeg libmp3lame)",
            lambda r: PyAVEncoder(r, "mp3", "libmp3lame", whole=True),
            lambda r: PyAVEncoder(r, "mp3", "libmp3lame"),
        ),
        AudioFormat("opus", "audio/ogg; codecs=opus", True, "soundfile (libsndfile, libopus)", OggOpusEncoder),
        AudioFormat("aac", "audio/aac", True, "PyAV (FFmpeg aac)", lambda r: PyAVEncoder(r, "adts", "aac")),
        AudioFormat("flac", "audio/flac", False, "soundfile (libsndfile)", FlacEncoder),
        AudioFormat("wav", "audio/wav", True, "built in (RIFF header)", WavEncoder),
        AudioFormat(
            "pcm",
            f"audio/pcm; rate={contract.SAMPLE_RATE}; channels=1; encoding=s16le",
            True,
            "none",
            lambda r: PcmEncoder(),
        ),
    )
}


def quantize(waveform: np.ndarray) -> np.ndarray:
    """float32 speech -> the 16-bit samples every format carries (the project clients' own conversion)."""
    return np.frombuffer(pcm16(waveform), dtype="<i2")


def probe() -> dict[str, str | None]:
    """Encode 0.1 s with each format: None where it works, else why not (a request for it gets a 400)."""
    found = {}
    for name, fmt in FORMATS.items():
        try:
            enc = fmt.make(contract.SAMPLE_RATE)
            data = enc.push(np.zeros(contract.SAMPLE_RATE // 10, np.int16)) + enc.finish()
            found[name] = None if data else "the encoder produced no bytes"
        except ImportError as e:
            found[name] = f"{fmt.library} is not installed ({e.name})"
        except Exception as e:  # a library built without this codec, and the like
            found[name] = f"{fmt.library} cannot encode it here ({type(e).__name__}: {e})"
    return found
