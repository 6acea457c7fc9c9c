"""Multi-voice scripts: `[narrator] It was late. [alice] Who's there?`, as f5-tts's CLI speaks them.

f5-tts's infer_cli splits the text before each `[name]` tag (a tag is `\\w+` in brackets), speaks
each piece in the voice it names, text before the first tag in the main voice, and joins the pieces
end to end (np.concatenate: no cross-fade between voices). Two choices on top, for a server:
- a tag that names no voice is an error listing the known ones (f5-tts falls back to the main voice
  silently, which on a server hides a typo until someone listens);
- `\\[` is a literal bracket, so text such as `\\[laughs]` is spoken, not taken for a voice.
Text without a tag is not a script: it is spoken as before (its escaped brackets unescaped).

Each segment is a request of its own (its voice, its text, the request's other options) and segment
j draws its noise from seed + j, so a script's audio equals, sample for sample, its segments spoken
one by one with those seeds. A stream's first-chunk budget applies to the first segment only.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Collection

import contract
from pipeline.requests import RequestError, SynthesisRequest

MAIN = "main"  # the tag of the request's own speaker (its reference or its voice), as in f5-tts
_TAG = re.compile(r"(?<!\\)\[(\w+)\]")  # infer_cli's reg2, unless the bracket is escaped


@dataclass(frozen=True)
class Segment:
    voice: str  # MAIN or a voice name
    text: str


def is_script(text: str) -> bool:
    return _TAG.search(text) is not None


def split_script(text: str) -> list[Segment]:
    """The segments of a script in order; segments with nothing to say are left out (f5-tts skips them)."""
    segments = []
    starts = [m.start() for m in _TAG.finditer(text)]
    pieces = [text[: starts[0]]] if starts and starts[0] > 0 else []
    pieces += [text[a:b] for a, b in zip(starts, starts[1:] + [len(text)])]
    for piece in pieces or [text]:
        tag = _TAG.match(piece)
        voice = tag.group(1) if tag else MAIN
        spoken = (piece[tag.end() :] if tag else piece).replace("\\[", "[").strip()
        if spoken:
            segments.append(Segment(voice, spoken))
    return segments


def unescape(text: str) -> str:
    """Text that is not a script, with its escaped brackets as the brackets they stand for."""
    return text.replace("\\[", "[")


def segment_requests(request: SynthesisRequest, voices: Collection[str]) -> list[SynthesisRequest]:
    """The request as one request per script segment (the request itself, unescaped, when it has no tag).

    [main] is the request's own speaker (its reference or its voice); other tags name registered voices."""
    if not is_script(request.target_text):
        if "\\[" not in request.target_text:
            return [request]
        return [dataclasses.replace(request, target_text=unescape(request.target_text))]
    segments = split_script(request.target_text)
    unknown = sorted({s.voice for s in segments if s.voice != MAIN and s.voice not in voices})
    if unknown:
        known = ", ".join([MAIN, *sorted(voices)])
        raise RequestError(
            f"input '{contract.TARGET_TEXT}' names voice(s) {', '.join(f'[{v}]' for v in unknown)} that this "
            f"server does not have; known: {known} ([{MAIN}] is the request's own reference or voice; write "
            "\\[ for a literal bracket)"
        )
    if not segments:
        raise RequestError(f"input '{contract.TARGET_TEXT}' has voice tags but nothing to speak")
    if request.duration is not None:
        raise RequestError(f"input '{contract.DURATION}' cannot be combined with a multi-voice script")
    out = []
    for j, segment in enumerate(segments):
        speaker = {}
        if segment.voice != MAIN:
            speaker = dict(voice=segment.voice, reference_audio=None, reference_sample_rate=None, reference_text=None)
        out.append(
            dataclasses.replace(
                request,
                target_text=segment.text,
                seed=None if request.seed is None else (request.seed + j) % 2**63,
                first_chunk_chars=request.first_chunk_chars if j == 0 else 0,
                **speaker,
            )
        )
    return out


def locate_chunk(index: int, counts: list[int]) -> tuple[int, int]:
    """Chunk `index` of a whole script -> (segment, chunk within it), given each segment's chunk count."""
    for j, count in enumerate(counts):
        if index < count:
            return j, index
        index -= count
    total = sum(counts)
    raise RequestError(
        f"input '{contract.CHUNK_INDEX}' is {index + total}; the text has {total} chunk(s), so 0 to "
        f"{total - 1} are allowed"
    )
