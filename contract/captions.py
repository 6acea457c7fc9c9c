"""Captions: when each text chunk, and each word in it, is heard in an answer's audio.

f5_tts decides every chunk's length itself (f5-tts's duration estimate, then the cross-fade that
joins chunks), so a chunk's times are exact: sample positions in the joined waveform. A chunk's cue
starts where its audio starts (where it fades in over the previous chunk's tail) and ends where the
next chunk's starts, or where the audio ends; cues never overlap. Word times inside a chunk are
estimated (the chunk's span shared by the words' UTF-8 lengths, as f5-tts shares time between
text) and say so: `estimated` is true for every word whose time was not measured.

The JSON travels on f5_tts's and f5_tts_stream's `captions` output (contract.CAPTIONS) and the
gateway's `speech.captions` events; clients turn it into SRT or WebVTT (client/captions.py).
Dependency-free, as the rest of `contract`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

# The files clients write them as (client/captions.py): SubRip, WebVTT, or this module's JSON.
FORMATS = ("srt", "vtt", "json")


@dataclass(frozen=True)
class Word:
    text: str
    start: float  # seconds from the beginning of the whole answer (of the whole stream)
    end: float
    estimated: bool  # true: shared out within the chunk, not measured

    def to_dict(self) -> dict:
        return {"word": self.text, "start": self.start, "end": self.end, "estimated": self.estimated}

    @classmethod
    def from_dict(cls, d: dict) -> "Word":
        return cls(str(d["word"]), float(d["start"]), float(d["end"]), bool(d["estimated"]))


@dataclass(frozen=True)
class Cue:
    """One text chunk as heard: its samples [start_sample, end_sample) of the answer's audio."""

    index: int  # the chunk's index in the whole text (all segments of a script)
    start_sample: int
    end_sample: int
    sample_rate: int
    text: str
    speaker: str | None  # a script's voice tag ("main" for the request's own); None without tags
    words: tuple[Word, ...]

    @property
    def start(self) -> float:
        return self.start_sample / self.sample_rate

    @property
    def end(self) -> float:
        return self.end_sample / self.sample_rate

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "start": round(self.start, 6),
            "end": round(self.end, 6),
            "start_sample": self.start_sample,
            "end_sample": self.end_sample,
            "sample_rate": self.sample_rate,
            "text": self.text,
            "speaker": self.speaker,
            "words": [w.to_dict() for w in self.words],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Cue":
        return cls(
            int(d["index"]),
            int(d["start_sample"]),
            int(d["end_sample"]),
            int(d["sample_rate"]),
            str(d["text"]),
            None if d.get("speaker") is None else str(d["speaker"]),
            tuple(Word.from_dict(w) for w in d.get("words", ())),
        )


def dumps(cues) -> str:
    """The `captions` output's JSON: {"chunks": [cue, ...]}."""
    return json.dumps({"chunks": [c.to_dict() for c in cues]}, ensure_ascii=False)


def loads(text: str | bytes) -> list[Cue]:
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    return [Cue.from_dict(c) for c in json.loads(text)["chunks"]]
