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

import difflib
import re
import unicodedata
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
    # With measure_words: what the transcriber heard in the chunk, (word, start, end) in seconds from
    # the chunk's own first sample; None: word times are estimated.
    heard: tuple[tuple[str, float, float], ...] | None = None


def _split(text: str) -> tuple[list[str], list[int]]:
    """The text's words and each one's weight: its UTF-8 bytes with the space after it."""
    matches = list(_WORD.finditer(text))
    weights = []
    for k, m in enumerate(matches):
        upto = matches[k + 1].start() if k + 1 < len(matches) else len(text)
        weights.append(len(text[m.start() : upto].encode("utf-8")))
    return [m.group() for m in matches], weights


def _share(words: list[str], weights: list[int], start: int, end: int, rate: int) -> list[Word]:
    """[start, end) samples shared by weight, as f5-tts's duration estimate shares time between text."""
    total, done, out = sum(weights), 0, []
    for word, weight in zip(words, weights):
        a = start + (end - start) * done // total
        done += weight
        b = start + (end - start) * done // total
        out.append(Word(word, a / rate, b / rate, estimated=True))
    return out


def estimate_words(text: str, start: int, end: int, sample_rate: int = contract.SAMPLE_RATE) -> tuple[Word, ...]:
    """The chunk's words over [start, end) samples, each its share by UTF-8 bytes (with the space after it)."""
    words, weights = _split(text)
    return tuple(_share(words, weights, start, end, sample_rate)) if words else ()


def _normal(word: str) -> str:
    """A word as compared with what Whisper heard: case-folded, without punctuation or accents."""
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(c for c in decomposed if c.isalnum())


def measure_words(
    text: str, heard, start: int, end: int, offset: int, sample_rate: int = contract.SAMPLE_RATE
) -> tuple[Word, ...]:
    """The chunk's words with the times Whisper heard them at, where it heard them.

    heard: (word, start, end) seconds from the chunk's first sample, which lies at `offset` in the
    answer. The text's words are aligned with the heard ones (difflib's longest matching blocks over
    normalized words); a matched word takes its heard time (estimated=False), clamped into the cue
    [start, end); a run of unmatched words shares the time between its matched neighbours by UTF-8
    bytes and stays marked estimated."""
    words, weights = _split(text)
    if not words:
        return ()
    said = [_normal(w) for w in words]
    got = [_normal(w) for w, _, _ in heard]
    at: dict[int, tuple[int, int]] = {}
    for block in difflib.SequenceMatcher(a=said, b=got, autojunk=False).get_matching_blocks():
        for k in range(block.size):
            if said[block.a + k]:  # punctuation alone matches nothing meaningful
                _, a, b = heard[block.b + k]
                a = min(max(offset + round(a * sample_rate), start), end)
                at[block.a + k] = (a, min(max(offset + round(b * sample_rate), a), end))
    out: list[Word] = []
    k, cursor = 0, start
    while k < len(words):
        if k in at:
            a, b = at[k]
            a = max(a, cursor)
            b = max(b, a)
            out.append(Word(words[k], a / sample_rate, b / sample_rate, estimated=False))
            cursor, k = b, k + 1
            continue
        run_end = k
        while run_end < len(words) and run_end not in at:
            run_end += 1
        until = max(at[run_end][0], cursor) if run_end in at else end
        out += _share(words[k:run_end], weights[k:run_end], cursor, until, sample_rate)
        cursor, k = until, run_end
    return tuple(out)


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
        if chunk.heard is None:
            words = estimate_words(chunk.text, start, end, self.sample_rate)
        else:  # heard from the chunk's own first sample, which lies at joined - samples after the fade
            words = measure_words(chunk.text, chunk.heard, start, end, self.joined - samples, self.sample_rate)
        return Cue(
            chunk.index,
            start,
            end,
            self.sample_rate,
            chunk.text,
            chunk.speaker,
            words,
        )


def place_all(chunks: list[tuple[ChunkText, int]], fade: int) -> list[Cue]:
    """The cues of a whole answer: (chunk, its samples before joining), in order; fade: the cross-fade's samples."""
    clock = CaptionClock(fade)
    return [clock.place(chunk, samples, k == len(chunks) - 1) for k, (chunk, samples) in enumerate(chunks)]
