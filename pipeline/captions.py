"""Captions of an answer: each chunk placed where the cross-fade joins it, its words shared out inside.

`CaptionClock` follows `StreamJoiner` (pipeline/streaming.py, which owns the fade's length)
chunk by chunk, so the stream model, which sees one chunk at a time, places every cue exactly where
f5_tts's whole answer places it, and before the next chunk exists: a chunk's cue ends where the next
chunk's fade-in begins, which is known as soon as the chunk is (the joiner holds back the last fade
window of audio, and a chunk that ends its script segment is joined end to end instead). A chunk
shorter than the fade window (0.15 s: f5-tts's duration estimate gives no real text so little)
bends this, and the rule that holds is the one players need: cues in order, never overlapping.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import contract
from contract.captions import Cue, Word

# A word: a run of non-space characters, but each CJK ideograph, kana or hangul syllable is a word of
# its own (those scripts write no spaces, and f5-tts speaks them a character at a time).
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_WORD = re.compile(rf"[{_CJK}]|[^\s{_CJK}]+")


@dataclass(frozen=True)
class ChunkText:
    """What a caption needs of a synthesized chunk besides its length."""

    index: int  # in the whole text
    text: str
    speaker: str | None
    ends_segment: bool  # the last chunk of its script segment: the next one is joined end to end


def estimate_words(text: str, start: int, end: int, sample_rate: int = contract.SAMPLE_RATE) -> tuple[Word, ...]:
    """The chunk's words over [start, end) samples, each its share by UTF-8 bytes (with the space after it),
    as f5-tts's duration estimate shares time between text."""
    matches = list(_WORD.finditer(text))
    if not matches:
        return ()
    weights = []
    for k, m in enumerate(matches):
        upto = matches[k + 1].start() if k + 1 < len(matches) else len(text)
        weights.append(len(text[m.start() : upto].encode("utf-8")))
    total, done, words = sum(weights), 0, []
    for m, weight in zip(matches, weights):
        a = start + (end - start) * done // total
        done += weight
        b = start + (end - start) * done // total
        words.append(Word(m.group(), a / sample_rate, b / sample_rate, estimated=True))
    return tuple(words)


class CaptionClock:
    """Places chunks one by one, as StreamJoiner joins them (a new joiner at each script segment)."""

    def __init__(self, fade: int, sample_rate: int = contract.SAMPLE_RATE) -> None:
        self.fade = fade  # samples: StreamJoiner's fade
        self.sample_rate = sample_rate
        self.joined = 0  # samples of the whole answer so far
        self.pending = 0  # of those, the tail the next chunk fades into (StreamJoiner's _pending)
        self.last_end = 0

    def place(self, chunk: ChunkText, samples: int, last: bool) -> Cue:
        overlap = min(self.pending, samples)
        start = max(self.joined - overlap, self.last_end)
        self.joined += samples - overlap
        # StreamJoiner keeps min(fade, what it joined since it started): it starts again at a new segment
        self.pending = min(self.fade, self.pending - overlap + samples)
        end = self.joined if last or chunk.ends_segment else self.joined - self.pending
        end = max(end, start)
        if chunk.ends_segment:
            self.pending = 0
        self.last_end = end
        return Cue(
            chunk.index,
            start,
            end,
            self.sample_rate,
            chunk.text,
            chunk.speaker,
            estimate_words(chunk.text, start, end, self.sample_rate),
        )


def place_all(chunks: list[tuple[ChunkText, int]], fade: int) -> list[Cue]:
    """The cues of a whole answer: (chunk, its samples before joining), in order; fade: the cross-fade's samples."""
    clock = CaptionClock(fade)
    return [clock.place(chunk, samples, k == len(chunks) - 1) for k, (chunk, samples) in enumerate(chunks)]
