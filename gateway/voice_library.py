"""Uploaded voices, stored on disk and sent to Triton as the reference of each request.

Layout: <voices dir>/<name>/voice.json (transcript, where it came from, the model it belongs to, and facts)
and audio.wav (the
upload's samples as decoded, float32, its own rate and channels: Triton prepares it exactly as it
would the uploaded file). A voice is written into a private directory and renamed into place, and
deleted by renaming it away first, so readers (other requests, other gateway processes on the same
directory) see a voice whole or not at all; of two uploads of one name, exactly one wins. A corrected
transcript replaces voice.json by a rename too. The server's reference cache keys on the audio's
content, so a repeated voice is prepared once there.

A voice belongs to one F5-TTS model (voice.json's "model": the model's short name, "default" or NAME of
`export --name NAME`) or is shared by all of them (no "model": every voice stored before models existed).
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

import contract
from contract.request_options import (
    OptionError,
    check_bytes,
    check_not_blank,
    check_reference,
    check_voice_name,
    is_voice_name,
)
from gateway.errors import APIError, bad_request

log = logging.getLogger("gateway")

AUDIO_FILE = "audio.wav"
META_FILE = "voice.json"
_STALE_SECONDS = 600  # leftovers of a crash mid-upload or mid-delete, removed at start
# What an upload may be, as this libsndfile reads it (MP3 needs libsndfile 1.1 or later).
ACCEPTED_FORMATS = ", ".join(f for f in ("WAV", "FLAC", "OGG", "MP3", "AIFF") if f in sf.available_formats())
# Where a voice's transcript came from: sent with the upload (or corrected since), or the server's transcriber.
GIVEN, TRANSCRIBED = "given", "transcribed"


@dataclass(frozen=True)
class StoredVoice:
    name: str
    transcript: str
    audio: np.ndarray  # [channels, samples] float32
    sample_rate: int
    created_at: int
    transcript_source: str = GIVEN
    model: str | None = None  # the short name of the model it belongs to; None: shared by every model

    def describe(self, model_id: str | None = None) -> dict:
        """OpenAI's voice object (id, object, name, created_at, type) and what F5-TTS uses; `model_id`: the API's
        id of the model it belongs to (None: shared)."""
        return {
            "id": self.name,
            "object": "audio.voice",
            "name": self.name,
            "created_at": self.created_at,
            "type": "audio_sample",
            "source": "library",
            "transcript": self.transcript,
            "transcript_source": self.transcript_source,
            "seconds": round(self.audio.shape[1] / self.sample_rate, 3),
            "sample_rate": self.sample_rate,
            "channels": self.audio.shape[0],
            "model": model_id,
        }


def check_name(name: str) -> str:
    try:
        return check_voice_name(name)
    except OptionError as e:
        raise bad_request(e.message, "name") from None


def decode_upload(
    data: bytes,
    filename: str,
    limits: contract.Limits,
    content_type: str | None = None,
    param: str = "audio_sample",
    max_seconds_hint: str | None = None,
) -> tuple[np.ndarray, int]:
    """An uploaded audio file -> float32 [channels, samples] within the reference limits. `param` is the
    form field it came in; `max_seconds_hint`, when given, replaces the reference wording of a too long
    file's refusal (for uploads that are not voices)."""
    what = f"the uploaded audio {filename!r} ({len(data)} bytes)"
    if not data:
        raise bad_request(f"{what} is empty; send {ACCEPTED_FORMATS}", param)
    try:
        audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as e:
        # libsndfile's own words, without the Python object it was handed (its str() starts with that).
        reason = getattr(e, "error_string", None) or str(e)
        sent = f"sent as {content_type}, " if content_type else ""
        raise bad_request(
            f"{what} is not an audio file libsndfile can read: {reason.rstrip('.')} ({sent}it begins "
            f"{data[:12]!r}); send {ACCEPTED_FORMATS}",
            param,
        ) from None
    audio = np.ascontiguousarray(audio.T)
    seconds = audio.shape[1] / rate
    if max_seconds_hint and seconds > limits.max_reference_seconds:
        raise bad_request(f"{what} is {seconds:.2f} s long; {max_seconds_hint}", param)
    try:
        # What the server would refuse is refused at upload, with the same words.
        check_reference(what, audio, int(rate), limits)
    except OptionError as e:
        raise bad_request(e.message, param) from None
    return audio, int(rate)


def check_transcript(transcript: str, limits: contract.Limits) -> str:
    """The upload's transcript, within what the server accepts as a reference text."""
    transcript = transcript.strip()
    try:
        check_not_blank("'transcript'", transcript, hint="give the words spoken in the audio sample")
        check_bytes("'transcript'", len(transcript.encode("utf-8")), limits.max_reference_text_bytes)
    except OptionError as e:
        raise bad_request(e.message, "transcript") from None
    return transcript


def check_transcription(transcript: str, limits: contract.Limits) -> str:
    """The transcriber's transcript of an upload, fit to be a voice's transcript; else what to send instead."""
    transcript = transcript.strip()
    if not transcript:
        raise bad_request(
            "the transcriber heard no speech in the audio sample (its transcript is empty); give 'transcript' "
            "(the words spoken in it), or upload a sample with clearer speech",
            "transcript",
            "no_speech",
        )
    size = len(transcript.encode("utf-8"))
    if size > limits.max_reference_text_bytes:
        raise bad_request(
            f"the transcription of the audio sample is {size} bytes, more than a transcript may be "
            f"({limits.max_reference_text_bytes} bytes of UTF-8); give a shorter 'transcript' or a shorter sample",
            "transcript",
        )
    return transcript


class VoiceLibrary:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._cache: dict[str, tuple[tuple[int, int], StoredVoice]] = {}
        self._lock = threading.Lock()  # the cache; the files need none (renames are atomic)

    def open(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".probe-{uuid.uuid4().hex}"
            probe.mkdir()
            probe.rmdir()
        except OSError as e:
            raise OSError(
                f"the voices directory {self.root} is not usable ({e.strerror}): point --voices-dir at a "
                "writable directory"
            ) from None
        for leftover in self.root.glob(".*-*"):
            try:
                if time.time() - leftover.stat().st_mtime > _STALE_SECONDS:
                    shutil.rmtree(leftover, ignore_errors=True)
            except OSError:
                pass

    def names(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if not p.name.startswith(".") and p.is_dir())

    def get(self, name: str) -> StoredVoice | None:
        path = self.root / name
        if not is_voice_name(name):
            return None
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        try:
            # voice.json's own inode and time too: a corrected transcript is a new file in the same directory.
            meta_st = (path / META_FILE).stat()
            key = (st.st_ino, meta_st.st_ino, meta_st.st_mtime_ns)
        except FileNotFoundError:
            key = None  # deleted meanwhile, or unreadable: the read below tells which
        with self._lock:
            hit = self._cache.get(name)
        if hit and key and hit[0] == key:
            return hit[1]
        try:
            meta = json.loads((path / META_FILE).read_text())
            audio, rate = sf.read(str(path / AUDIO_FILE), dtype="float32", always_2d=True)
        except (OSError, ValueError, sf.LibsndfileError) as e:
            if not path.exists():  # deleted meanwhile
                return None
            raise APIError(
                500,
                f"voice {name!r} in {self.root} is unreadable ({e}); delete and upload it again",
                code="voice_unreadable",
            ) from None
        voice = StoredVoice(
            name,
            meta["transcript"],
            np.ascontiguousarray(audio.T),
            int(rate),
            int(meta["created_at"]),
            meta.get("transcript_source", GIVEN),  # voices stored before transcription existed: given
            meta.get("model") or None,  # voices stored before models existed: shared
        )
        with self._lock:
            self._cache[name] = (key, voice)
        return voice

    def all(self) -> list[StoredVoice]:
        return [v for v in (self.get(n) for n in self.names()) if v is not None]

    def add(
        self,
        name: str,
        transcript: str,
        audio: np.ndarray,
        sample_rate: int,
        source: str,
        transcript_source: str = GIVEN,
        model: str | None = None,
    ) -> StoredVoice:
        private = self.root / f".new-{uuid.uuid4().hex}"
        private.mkdir()
        try:
            created = int(time.time())
            sf.write(str(private / AUDIO_FILE), audio.T, sample_rate, format="WAV", subtype="FLOAT")
            (private / META_FILE).write_text(
                json.dumps(
                    {
                        "name": name,
                        "transcript": transcript,
                        "transcript_source": transcript_source,
                        "created_at": created,
                        "source_file": source,
                        **({"model": model} if model else {}),
                    },
                    indent=1,
                )
            )
            for f in (private / AUDIO_FILE, private / META_FILE):
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
            try:
                os.rename(private, self.root / name)  # onto nothing: atomic; onto a voice: refused
            except OSError as e:
                if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    raise APIError(
                        409,
                        f"voice {name!r} already exists; delete it first or choose another name",
                        param="name",
                        code="voice_exists",
                    ) from None
                raise
        finally:
            shutil.rmtree(private, ignore_errors=True)
        log.info(
            "voice %r added (%.1f s, %d Hz, %d channel(s), transcript %s, %s)",
            name,
            audio.shape[1] / sample_rate,
            sample_rate,
            audio.shape[0],
            transcript_source,
            f"model {model}" if model else "shared",
        )
        return self.get(name)

    def set_transcript(self, name: str, transcript: str) -> StoredVoice | None:
        """A corrected transcript (then `given`), or None when there is no such voice. voice.json is written
        beside the old one and renamed over it: readers see the old transcript or the new one, never a part."""
        if self.get(name) is None:  # (a voice.json that cannot be read is said to be so by get)
            return None
        path = self.root / name
        try:
            meta = json.loads((path / META_FILE).read_text())
            meta.update(transcript=transcript, transcript_source=GIVEN)
            private = path / f".{META_FILE}-{uuid.uuid4().hex}"
            try:
                with open(private, "w") as fh:
                    fh.write(json.dumps(meta, indent=1))
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(private, path / META_FILE)
            finally:
                private.unlink(missing_ok=True)
        except FileNotFoundError:  # never there, or deleted meanwhile
            return None
        with self._lock:
            self._cache.pop(name, None)
        log.info("voice %r: transcript corrected", name)
        return self.get(name)

    def delete(self, name: str) -> bool:
        if not is_voice_name(name):
            return False
        trash = self.root / f".del-{uuid.uuid4().hex}"
        try:
            os.rename(self.root / name, trash)  # gone for readers at once; two deletes: one wins
        except FileNotFoundError:
            return False
        shutil.rmtree(trash, ignore_errors=True)
        with self._lock:
            self._cache.pop(name, None)
        log.info("voice %r deleted", name)
        return True
