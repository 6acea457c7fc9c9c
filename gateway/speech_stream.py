"""One answer of POST /v1/audio/speech: Triton's pieces encoded as they arrive, sent as raw audio
bytes (chunked) or as OpenAI's server-sent events (speech.audio.delta with base64 audio, then
speech.audio.done).

With `captions` (our extension, sse only), each piece's audio delta is preceded by a
speech.captions event holding the cues of the text chunks that piece begins to speak (times from
the start of the audio, contract/captions.py), and speech.audio.done by a speech.captions.done event
holding the whole captions file in the format asked for."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from typing import AsyncIterator, Callable

import anyio
from fastapi.responses import StreamingResponse

import contract
from client.captions import render
from gateway import encoders
from gateway.errors import APIError
from gateway.speech_request import SpeechRequest
from gateway.triton import Piece

log = logging.getLogger("gateway")
# Fast enough for the event loop; the compressing encoders take milliseconds per piece and run in threads.
_INLINE_FORMATS = ("pcm", "wav")


def sse_event(event: dict) -> bytes:
    return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"


class _BrokenOff(Exception):
    """The audio stream broke off after its first bytes; the response must end unfinished."""


def _broken_off(e: BaseException) -> bool:
    if isinstance(e, BaseExceptionGroup):  # the response's task group may wrap it
        return all(_broken_off(x) for x in e.exceptions)
    return isinstance(e, _BrokenOff)


class _ClosingResponse(StreamingResponse):
    """Closes the stream however the response ends: finished, failed, the client gone, or never
    started (a client that left before the first byte), so the Triton request is cancelled at once."""

    def __init__(self, stream: "SpeechStream", **kwargs) -> None:
        super().__init__(stream.body(), **kwargs)
        self._stream = stream

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except BaseException as e:
            # Returning without the body's end makes the server drop the connection: the client sees an
            # incomplete chunked response (the cause is logged once, below, without a traceback).
            if not _broken_off(e):
                raise
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()
                await self._stream.close()


class SpeechStream:
    def __init__(
        self,
        req: SpeechRequest,
        first: Piece,
        pieces: AsyncIterator[Piece],
        on_close: Callable[[int, bool], None],
    ) -> None:
        self.req = req
        self._first = first
        self._pieces = pieces
        self._on_close = on_close
        fmt = encoders.FORMATS[req.response_format]
        make = fmt.make_events if req.stream_format == "sse" and fmt.make_events else fmt.make
        self._encoder = make(contract.SAMPLE_RATE)
        self.samples = 0
        self.cues: list = []
        self.completed = False
        self._closed = False

    def response(self, headers: dict[str, str]) -> StreamingResponse:
        sse = self.req.stream_format == "sse"
        media_type = "text/event-stream" if sse else encoders.FORMATS[self.req.response_format].media_type
        return _ClosingResponse(self, media_type=media_type, headers=headers)

    async def _encode(self, fn, *args) -> bytes:
        inline = self.req.response_format in _INLINE_FORMATS
        data = fn(*args) if inline else await asyncio.to_thread(fn, *args)
        if not data or self.req.stream_format != "sse":
            return data
        return sse_event({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode("ascii")})

    async def body(self) -> AsyncIterator[bytes]:
        sse = self.req.stream_format == "sse"
        try:
            piece = self._first
            while piece is not None:
                if self.req.captions and piece.cues:
                    self.cues += piece.cues
                    yield sse_event({"type": "speech.captions", "chunks": [c.to_dict() for c in piece.cues]})
                pcm = encoders.quantize(piece.audio)
                self.samples += pcm.size
                if data := await self._encode(self._encoder.push, pcm):
                    yield data
                piece = await anext(self._pieces, None)
            if data := await self._encode(self._encoder.finish):
                yield data
            if self.req.captions:
                text = render(self.cues, self.req.captions)
                yield sse_event({"type": "speech.captions.done", "format": self.req.captions, "text": text})
            if sse:
                # F5-TTS's units: input characters are its text tokens, mel frames its output tokens.
                frames = self.samples // contract.HOP_LENGTH
                chars = len(self.req.input)
                yield sse_event(
                    {
                        "type": "speech.audio.done",
                        "usage": {"input_tokens": chars, "output_tokens": frames, "total_tokens": chars + frames},
                    }
                )
            self.completed = True
        except APIError as e:  # Triton broke off after the response had started
            log.warning(
                "speech stream broke off after %.2f s of audio: %s", self.samples / contract.SAMPLE_RATE, e.message
            )
            if not sse:
                raise _BrokenOff() from None  # an aborted body, never a silent cut
            yield sse_event({"type": "error", "error": e.body()["error"]})

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._pieces.aclose()  # cancels what is left on Triton when the client went away
        self._on_close(self.samples, self.completed)
