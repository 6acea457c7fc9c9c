"""The Triton side: asyncio gRPC clients (one per server URL), what the server offers, streamed speech,
and transcripts from the optional transcriber model.

Every request goes through `f5_tts_stream`, so audio leaves after the first text chunk; its pieces
joined are the whole answer. Several URLs are used round robin; a server that cannot be reached is
skipped while the request has not started, so one down replica costs no request.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import time
from typing import AsyncIterator, NamedTuple, Protocol

import numpy as np

import contract
from client.api import SynthesisError, Transcription, stream_synthesize_async, transcribe_async
from client.request import SynthesisOptions
from contract import errors
from contract.captions import Cue
from contract.parameters import TtsParameters
from gateway.errors import APIError, bad_request, unavailable

log = logging.getLogger("gateway")


@dataclasses.dataclass(frozen=True)
class Speaker:
    """Who speaks: a voice registered on the server, or reference audio with its transcript."""

    voice: str | None = None
    audio: np.ndarray | None = None  # [channels, samples], float32
    sample_rate: int | None = None
    text: str | None = None


@dataclasses.dataclass(frozen=True)
class ServerInfo:
    voices: tuple[str, ...]  # registered at export
    limits: contract.Limits  # with the server's own export-time values
    demo_model: bool = False  # exported with --demo-tiny: random weights, noise
    transcriber_model: str = ""  # the model that transcribes audio (export --asr); "" when the server has none


def server_info(config: dict) -> ServerInfo:
    """What f5_tts's config says, read with the class the model itself parses it with (not strictly: a
    server exported by another version may have knobs this gateway does not know)."""
    params = TtsParameters.from_triton(config.get("parameters", {}), strict=False)
    return ServerInfo(
        params.voice_names, params.limits, demo_model=params.demo_model, transcriber_model=params.transcriber_model
    )


def _message(e: Exception) -> str:
    """tritonclient's exceptions keep the server's words in message(); str() adds a status prefix."""
    return (e.message() if callable(getattr(e, "message", None)) else None) or str(e)


def api_error(e: SynthesisError, url: str) -> APIError:
    """Triton's answer as an OpenAI error: its INVALID_ARG message (the contract's input names replaced by
    the API's) as a 400, 'not now' as a 503, the rest as a 500."""
    message = str(e)
    # Triton's gRPC stream carries a message but no status code: the contract's phrases tell the kinds apart.
    kind = errors.error_kind(e.status, message)
    if kind == errors.NOT_NOW:
        return unavailable(f"Triton at {url} cannot serve speech now: {message}")
    if kind == errors.TIMEOUT:
        return APIError(504, f"Triton at {url} did not finish in time: {message}", code="timeout")
    if kind == errors.SERVER_FAULT:
        return APIError(500, f"Triton at {url} failed: {message}", code="triton_error")
    message = message.replace(f"input '{contract.TARGET_TEXT}'", "'input'")
    param = (
        "input"
        if "'input'" in message
        else next(
            (
                name
                for name in (
                    contract.DURATION,
                    contract.NFE_STEP,
                    contract.CFG_STRENGTH,
                    contract.SWAY_SAMPLING_COEF,
                    contract.SEED,
                    contract.SPEED,
                    contract.VOICE,
                )
                if f"'{name}'" in message
            ),
            "voice" if "reference" in message else None,
        )
    )
    return bad_request(message.replace("input '", "'"), param, "triton_invalid_argument")


def transcription_error(message: str, status: str | None, url: str) -> APIError:
    """The transcriber's refusal or failure as an OpenAI error, told apart as api_error tells speech's."""
    kind = errors.error_kind(status, message)
    if kind == errors.NOT_NOW:
        return unavailable(f"Triton at {url} cannot transcribe now: {message}")
    if kind == errors.TIMEOUT:
        return APIError(504, f"Triton at {url} did not finish the transcription in time: {message}", code="timeout")
    if kind == errors.SERVER_FAULT:
        return APIError(500, f"Triton at {url} failed to transcribe: {message}", code="triton_error")
    # Only the language is the caller's own input; the audio was checked against the same limits before.
    param = contract.LANGUAGE if f"'{contract.LANGUAGE}'" in message else None
    return bad_request(message.replace("input '", "'"), param, "triton_invalid_argument")


class Piece(NamedTuple):
    """A piece of a speech stream: its audio and the cues of the text chunks it begins to speak."""

    audio: np.ndarray
    cues: list[Cue]


class SpeechServer(Protocol):
    """What the routes use of the Triton side; `Triton` below, or a stand-in in tests."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def readiness(self) -> dict[str, str | None]: ...

    async def info(self) -> ServerInfo: ...

    def stream(self, text: str, speaker: Speaker, options: SynthesisOptions) -> AsyncIterator[Piece]: ...

    async def transcribe(
        self,
        audio: np.ndarray,
        sample_rate: int,
        as_reference: bool = True,
        language: str | None = None,
        detect_language: bool = False,
    ) -> Transcription: ...


class Triton:
    def __init__(self, urls: tuple[str, ...], timeout: float, info_ttl: float) -> None:
        self.urls = urls
        self.timeout = timeout
        self.info_ttl = info_ttl
        self._clients: list = []
        self._turn = itertools.count()
        self._info: tuple[float, ServerInfo] | None = None
        self._info_lock = asyncio.Lock()

    async def start(self) -> None:
        import tritonclient.grpc.aio as aio

        # gRPC asyncio channels belong to the loop that made them: made here, in the server's loop.
        self._clients = [aio.InferenceServerClient(url) for url in self.urls]

    async def close(self) -> None:
        for c in self._clients:
            await c.close()

    def _order(self) -> list[tuple[str, object]]:
        first = next(self._turn) % len(self._clients)
        pairs = list(zip(self.urls, self._clients))
        return pairs[first:] + pairs[:first]

    async def readiness(self) -> dict[str, str | None]:
        """Per URL: None when the server and both speech models are ready, else why not."""

        async def check(url, c):
            try:
                if not await c.is_server_ready():
                    return "server not ready"
                for model in (contract.TTS_MODEL, contract.STREAM_MODEL):
                    if not await c.is_model_ready(model):
                        return f"model {model} not ready"
                return None
            except Exception as e:  # unreachable: InferenceServerException or gRPC's own
                return f"unreachable ({_message(e)})"

        found = await asyncio.gather(*(check(u, c) for u, c in zip(self.urls, self._clients)))
        return dict(zip(self.urls, found))

    async def info(self) -> ServerInfo:
        """Registered voices and limits from f5_tts's config, cached for a while (they change with a new export)."""
        async with self._info_lock:
            if self._info and time.monotonic() - self._info[0] < self.info_ttl:
                return self._info[1]
            failures = []
            for url, c in self._order():
                try:
                    config = (await c.get_model_config(contract.TTS_MODEL, as_json=True, client_timeout=10))["config"]
                except Exception as e:
                    failures.append(f"{url}: {_message(e)}")
                    continue
                self._info = (time.monotonic(), server_info(config))
                return self._info[1]
            raise unavailable(
                f"Triton is not reachable or serves no {contract.TTS_MODEL} model: " + "; ".join(failures)
            )

    async def stream(self, text: str, speaker: Speaker, options: SynthesisOptions) -> AsyncIterator[Piece]:
        """The speech's float32 pieces as Triton sends them, each with the captions of the chunks it begins.
        Raises APIError before the first piece (and after it, should the stream break). Closing the
        generator early cancels the request on Triton."""
        failures = []
        for url, c in self._order():
            pieces = stream_synthesize_async(
                text,
                speaker.audio,
                speaker.sample_rate,
                speaker.text,
                voice=speaker.voice,
                client=c,
                options=options,
                timeout=self.timeout,
                captions=True,
            )
            try:
                try:
                    first = await pieces.__anext__()
                except StopAsyncIteration:
                    return
                except SynthesisError as e:
                    if e.status == errors.GRPC_UNAVAILABLE:  # nothing started there: the next server may take it
                        failures.append(f"{url}: {e}")
                        continue
                    raise api_error(e, url) from None
                yield Piece(*first)
                try:
                    async for piece in pieces:
                        yield Piece(*piece)
                except SynthesisError as e:
                    raise api_error(e, url) from None
                return
            finally:
                await pieces.aclose()
        raise unavailable("Triton is not reachable: " + "; ".join(failures))

    async def transcribe(
        self,
        audio: np.ndarray,
        sample_rate: int,
        as_reference: bool = True,
        language: str | None = None,
        detect_language: bool = False,
    ) -> Transcription:
        """The transcriber's transcript of `audio` ([channels, samples] float32). as_reference: of the part
        f5_tts hears as a voice's reference (clipped, trimmed), the transcript a voice needs; else of all of
        it. `language`: Whisper's code, None to detect it; the language is returned only when asked for or
        `detect_language` (detection costs the model a decoder pass). Callers check first that the server
        has a transcriber (ServerInfo.transcriber_model)."""
        model = (await self.info()).transcriber_model or contract.TRANSCRIBER_MODEL
        failures = []
        for url, c in self._order():
            try:
                return await transcribe_async(
                    audio,
                    sample_rate,
                    client=c,
                    language=language,
                    as_reference=as_reference,
                    detect_language=detect_language,
                    model=model,
                    timeout=self.timeout,
                )
            except SynthesisError as e:
                if e.status == errors.GRPC_UNAVAILABLE:  # nothing started there: the next server may take it
                    failures.append(f"{url}: {e}")
                    continue
                raise transcription_error(str(e), e.status, url) from None
        raise unavailable("Triton is not reachable: " + "; ".join(failures))
