"""Joining text chunks' audio: all at once (cross_fade) or while streaming (StreamJoiner).

The stream model asks `f5_tts` for one text chunk at a time (input chunk_index), so the
chunks of all streams share f5_tts's dynamic batching and its single copy of the weights.
Each chunk comes back un-faded; `StreamJoiner` holds back the last cross-fade window of
audio until the next chunk arrives, so the pieces sent, concatenated, equal
`cross_fade` of all chunks: the non-streaming output of the same request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

import contract
from contract.captions import Cue
from contract.captions import dumps as dumps_cues
from contract.captions import loads as loads_cues
from pipeline.captions import CaptionClock, ChunkText

CROSS_FADE_SECONDS = 0.15  # f5_tts.infer.utils_infer.cross_fade_duration
CROSS_FADE_SAMPLES = int(CROSS_FADE_SECONDS * contract.SAMPLE_RATE)


def cross_fade(
    waves: Sequence[np.ndarray], seconds: float = CROSS_FADE_SECONDS, sample_rate: int = contract.SAMPLE_RATE
) -> np.ndarray:
    """Join chunk waveforms with linear cross-fades, as f5-tts's infer_batch_process."""
    final = waves[0]
    for nxt in waves[1:]:
        n = min(int(seconds * sample_rate), len(final), len(nxt))
        if n <= 0:
            final = np.concatenate([final, nxt])
            continue
        overlap = final[-n:] * np.linspace(1, 0, n) + nxt[:n] * np.linspace(0, 1, n)
        final = np.concatenate([final[:-n], overlap, nxt[n:]])
    return final.astype(np.float32)


class StreamJoiner:
    """Incremental `cross_fade`: push chunk waveforms, get the samples that are final."""

    def __init__(self, seconds: float = CROSS_FADE_SECONDS, sample_rate: int = contract.SAMPLE_RATE) -> None:
        self.fade = int(seconds * sample_rate)
        # Not yet sent: the last min(fade, joined so far) samples, which the next chunk fades into.
        self._pending = np.zeros(0)

    def push(self, wave: np.ndarray) -> np.ndarray:
        wave = np.asarray(wave)
        n = min(len(self._pending), len(wave))  # cross_fade's overlap: min(fade, len(final), len(next))
        if n == 0:
            joined = np.concatenate([self._pending, wave])
        else:
            overlap = self._pending[-n:] * np.linspace(1, 0, n) + wave[:n] * np.linspace(0, 1, n)
            joined = np.concatenate([self._pending[:-n], overlap, wave[n:]])
        keep = min(self.fade, len(joined))
        self._pending = joined[len(joined) - keep :]
        return joined[: len(joined) - keep].astype(np.float32)

    def finish(self) -> np.ndarray:
        out, self._pending = self._pending.astype(np.float32), np.zeros(0)
        return out


def chunk_inputs(inputs: Mapping[str, np.ndarray], index: int, first_chunk_chars: int) -> dict[str, np.ndarray]:
    """The f5_tts inputs that ask for chunk `index` of a stream request's text: the request's own
    inputs, its first-chunk budget (`first_chunk_chars` when it sent none), and the chunk index."""
    chunk = {name: value for name, value in inputs.items() if name != contract.CHUNK_INDEX}
    chunk.setdefault(contract.FIRST_CHUNK_CHARS, np.array([[first_chunk_chars]], dtype=np.int32))
    chunk[contract.CHUNK_INDEX] = np.array([[index]], dtype=np.int32)
    return chunk


@dataclass(frozen=True)
class ChunkAnswer:
    """f5_tts's answer to one chunk request."""

    waveform: np.ndarray
    chunk_count: int
    segment: int  # its script segment
    caption: ChunkText | None = None  # None when captions were not asked of f5_tts


def chunk_result(outputs: Mapping[str, np.ndarray]) -> ChunkAnswer:
    """f5_tts's outputs for one chunk request, as a ChunkAnswer."""
    caption = None
    if contract.CAPTIONS in outputs:
        raw = outputs[contract.CAPTIONS].reshape(-1)[0]
        (cue,) = loads_cues(raw)
        extra = json.loads(raw)
        heard = extra.get(contract.HEARD)
        caption = ChunkText(
            cue.index,
            cue.text,
            cue.speaker,
            bool(extra[contract.ENDS_SEGMENT]),
            None if heard is None else tuple((str(w), float(a), float(b)) for w, a, b in heard),
        )
    return ChunkAnswer(
        outputs[contract.WAVEFORM].reshape(-1),
        int(outputs[contract.CHUNK_COUNT].reshape(-1)[0]),
        int(outputs[contract.SEGMENT_INDEX].reshape(-1)[0]),
        caption,
    )


def piece_outputs(samples: np.ndarray, cues: Sequence[Cue] = ()) -> dict[str, np.ndarray]:
    """The stream model's output tensors for one piece of audio (contract.STREAM_OUTPUTS)."""
    return {
        contract.WAVEFORM: np.asarray(samples, dtype=np.float32)[None],
        contract.SAMPLE_RATE_OUT: np.array([[contract.SAMPLE_RATE]], dtype=np.int32),
        contract.CAPTIONS: np.array([[dumps_cues(cues).encode("utf-8")]], dtype=object),
    }


# infer_chunk(k) -> f5_tts's answer for chunk k; send(samples, final, the cues of the chunks it begins)
InferChunk = Callable[[int], ChunkAnswer]
Send = Callable[[np.ndarray, bool, "list[Cue]"], None]


def stream_chunks(infer_chunk: InferChunk, send: Send, cancelled: Callable[[], bool]) -> tuple[int, int]:
    """Synthesize chunk after chunk and send what is final; stops early once `cancelled()`.

    Returns (chunks synthesized, chunks in the text). Exceptions from infer_chunk propagate
    (the caller answers them); nothing is sent after one.
    """
    joiner, clock, cues = StreamJoiner(), CaptionClock(CROSS_FADE_SAMPLES), []
    answer = infer_chunk(0)
    count = answer.chunk_count
    for k in range(count):
        held = np.zeros(0, dtype=np.float32)
        if k > 0:
            if cancelled():
                return k, count
            previous = answer.segment
            answer = infer_chunk(k)
            if answer.segment != previous:  # a script's next voice: end to end, as f5-tts joins segments
                held, joiner = joiner.finish(), StreamJoiner()
        if answer.caption is not None:
            cues.append(clock.place(answer.caption, len(answer.waveform), last=k == count - 1))
        piece = np.concatenate([held, joiner.push(answer.waveform)])
        if k == count - 1:
            send(np.concatenate([piece, joiner.finish()]), True, cues)
        elif len(piece):
            send(piece, False, cues)
            cues = []
    return count, count
