"""Captions as files people publish: SubRip (.srt), WebVTT (.vtt) or the server's JSON (.json).

One subtitle per text chunk (the server's exact times). WebVTT also carries each word's time as a
cue timestamp (`<00:00:01.250>word`, which players use for karaoke-style highlighting) and a script's
speaker as a voice span (`<v alice>`); SubRip has neither, so a speaker is written as the script's
tag (`[alice] ...`) there. The JSON keeps everything, including which word times are estimated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from contract.captions import FORMATS, Cue, dumps


def format_of(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise ValueError(f"captions file {path} must end in one of: {', '.join('.' + f for f in FORMATS)}")
    return suffix


def _clock(seconds: float, separator: str) -> str:
    ms = round(seconds * 1000)
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{separator}{ms:03d}"


def to_srt(cues: Sequence[Cue]) -> str:
    blocks = []
    for n, cue in enumerate(cues, 1):
        text = f"[{cue.speaker}] {cue.text}" if cue.speaker else cue.text
        blocks.append(f"{n}\n{_clock(cue.start, ',')} --> {_clock(cue.end, ',')}\n{text}\n")
    return "\n".join(blocks)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(cues: Sequence[Cue]) -> str:
    blocks = ["WEBVTT\n"]
    for cue in cues:
        if cue.words:
            # the first word starts with the cue; a timestamp before each later word marks when it is heard
            parts = [_escape(cue.words[0].text)]
            parts += [f"<{_clock(w.start, '.')}>{_escape(w.text)}" for w in cue.words[1:]]
            text = " ".join(parts)
        else:
            text = _escape(cue.text)
        if cue.speaker:
            text = f"<v {_escape(cue.speaker)}>{text}</v>"
        blocks.append(f"{_clock(cue.start, '.')} --> {_clock(cue.end, '.')}\n{text}\n")
    return "\n".join(blocks)


def render(cues: Sequence[Cue], fmt: str) -> str:
    return {"srt": to_srt, "vtt": to_vtt, "json": dumps}[fmt](cues)


def write(cues: Sequence[Cue], path: Path) -> None:
    path.write_text(render(cues, format_of(path)), encoding="utf-8")
