"""Transcripts for references sent without one, as f5-tts writes them, each reference transcribed once.

f5-tts's preprocess_ref_audio_text transcribes an empty transcript's reference after clipping and
trimming it (so the text matches the audio the model hears) and keeps the result by the
reference's content hash. Here the transcription is a callable (f5_tts's model.py asks the
`transcriber` model through BLS; tests may hand a pipeline.transcriber.Transcriber's) and the
cache is an LRU by the uploaded audio's content, bounded like the reference cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections import OrderedDict
from typing import Callable, Sequence

import numpy as np

import contract
from pipeline.reference import f5_preprocess_audio
from pipeline.requests import RequestError, SynthesisRequest
from pipeline.transcriber import Clip

log = logging.getLogger(__name__)

# clips -> one transcript or the exception that clip earned, in order
Transcribe = Callable[[Sequence[Clip]], list["str | Exception"]]

NO_TRANSCRIBER = (
    f"input '{contract.REFERENCE_TEXT}' is empty or absent and this repository has no "
    f"'{contract.TRANSCRIBER_MODEL}' model to transcribe the reference: send the transcript, or re-export "
    "with `python -m export ... --asr` (Whisper, as f5-tts transcribes references)"
)
HEARD_NOTHING = (
    f"the {contract.TRANSCRIBER_MODEL} heard no speech in '{contract.REFERENCE_AUDIO}' (its transcript is empty); "
    f"send '{contract.REFERENCE_TEXT}'"
)


def audio_key(audio: np.ndarray, sample_rate: int) -> str:
    audio = np.ascontiguousarray(audio)
    return hashlib.sha256(b"%d|%s|" % (sample_rate, str(audio.shape).encode()) + audio.tobytes()).hexdigest()


class TranscriptCache:
    def __init__(self, transcribe: Transcribe | None, size: int) -> None:
        self.transcribe = transcribe
        self.size = size
        self._texts: OrderedDict[str, str] = OrderedDict()
        self.hits = 0  # requests whose reference was transcribed before (the model exports these as a metric)
        self.misses = 0  # references sent to the transcriber

    def fill(self, requests: Sequence[SynthesisRequest]) -> list[SynthesisRequest | Exception]:
        """Each request with its transcript filled in (unchanged when it had one or names a voice), or the
        error it earned. Requests of one batch with the same reference share one transcription."""
        out: list[SynthesisRequest | Exception] = list(requests)
        waiting: dict[str, list[int]] = {}
        for i, request in enumerate(requests):
            if request.voice is not None or request.reference_text:
                continue
            if self.transcribe is None:
                out[i] = RequestError(NO_TRANSCRIBER)
                continue
            key = audio_key(request.reference_audio, request.reference_sample_rate)
            text = self._texts.get(key)
            if text is not None:
                self._texts.move_to_end(key)
                self.hits += 1
                out[i] = dataclasses.replace(request, reference_text=text)
            else:
                waiting.setdefault(key, []).append(i)
        if not waiting:
            return out
        keys = list(waiting)
        clips = []
        for key in keys:
            first = requests[waiting[key][0]]
            audio, rate, _ = f5_preprocess_audio(first.reference_audio, first.reference_sample_rate)
            clips.append(Clip(audio, rate))
        self.misses += len(keys)
        for key, answer in zip(keys, self.transcribe(clips)):
            if isinstance(answer, str) and not answer.strip():
                answer = RequestError(HEARD_NOTHING)
            for i in waiting[key]:
                out[i] = (
                    answer if isinstance(answer, Exception) else dataclasses.replace(requests[i], reference_text=answer)
                )
            if isinstance(answer, str):
                log.info("reference transcribed: %r", answer)
                if self.size > 0:
                    self._texts[key] = answer
                    while len(self._texts) > self.size:
                        self._texts.popitem(last=False)
        return out
