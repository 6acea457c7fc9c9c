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
class ModelInfo:
    """One F5-TTS model the server holds (f5_tts, or f5_tts_NAME added with `export --name NAME`), as its config
    says: its registered voices, its limits (each model's export sets its own), whether it is the demo model,
    and f5-tts's name of its architecture."""

    triton_model: str  # f5_tts, f5_tts_fr
    voices: tuple[str, ...] = ()  # registered at export, for this model
    limits: contract.Limits = contract.LIMITS
    demo_model: bool = False  # exported with --demo-tiny: random weights, noise
    architecture: str = "unknown"  # f5-tts's config name: F5TTS_v1_Base, F5TTS_Base, ...

    @property
    def name(self) -> str:
        """The short name: "default" for f5_tts, NAME for f5_tts_NAME (export --name NAME)."""
        return contract.model_short_name(self.triton_model)

    @property
    def stream_model(self) -> str:
        return contract.stream_model_name(self.triton_model)

    @property
    def is_default(self) -> bool:
        return self.triton_model == contract.TTS_MODEL


def model_info(triton_model: str, config: dict) -> tuple[ModelInfo, str]:
    """What a model's config says, read with the class the model itself parses it with (not strictly: a
    server exported by another version may have knobs this gateway does not know); and its transcriber."""
    params = TtsParameters.from_triton(config.get("parameters", {}), strict=False)
    info = ModelInfo(triton_model, params.voice_names, params.limits, params.demo_model, params.f5_model_name)
    return info, params.transcriber_model


@dataclasses.dataclass(frozen=True)
class ServerInfo:
    """The F5-TTS models the server serves (the default, f5_tts, first; then the named ones by name) and its
    transcriber. The default model's facts are the server's where one is needed (transcriptions' limits)."""

    models: tuple[ModelInfo, ...]
    transcriber_model: str = ""  # the model that transcribes audio (export --asr); "" when the server has none

    def __post_init__(self) -> None:
        if not self.models or not self.models[0].is_default:
            raise ValueError(f"the default model {contract.TTS_MODEL} comes first: {self.models}")

    @property
    def default(self) -> ModelInfo:
        return self.models[0]

    @property
    def limits(self) -> contract.Limits:
        return self.default.limits

    @property
    def voices(self) -> tuple[str, ...]:
        """Every model's registered voices (a name registered for two models, once)."""
        return tuple(dict.fromkeys(v for m in self.models for v in m.voices))

    def model(self, triton_model: str) -> ModelInfo | None:
        return next((m for m in self.models if m.triton_model == triton_model), None)

    def owners(self, voice: str) -> list[ModelInfo]:
        """The models that registered `voice` at export."""
        return [m for m in self.models if voice in m.voices]


def server_info(configs: dict[str, dict]) -> ServerInfo:
    """The server's models from their configs (Triton name -> config, the default's among them)."""
    models, transcribers = [], []
    for name in sorted(configs, key=lambda n: (n != contract.TTS_MODEL, n)):
        info, transcriber = model_info(name, configs[name])
        models.append(info)
        transcribers.append(transcriber)
    return ServerInfo(tuple(models), next((t for t in transcribers if t), ""))


def describe_models(info: ServerInfo) -> str:
    """For the log: each model with its architecture and voices."""
    return "; ".join(
        f"{m.triton_model} ({m.architecture}{', demo' if m.demo_model else ''}; "
        f"voices: {', '.join(m.voices) or 'none'})"
        for m in info.models
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

    async def info(self, refresh: bool = False) -> ServerInfo: ...

    def stream(
        self, text: str, speaker: Speaker, options: SynthesisOptions, model: str = contract.TTS_MODEL
    ) -> AsyncIterator[Piece]: ...

    async def transcribe(
        self,
        audio: np.ndarray,
        sample_rate: int,
        as_reference: bool = True,
        language: str | None = None,
        detect_language: bool = False,
    ) -> Transcription: ...


class Triton:
    def __init__(self, urls: tuple[str, ...], timeout: float, info_ttl: float, refresh_interval: float = 1.0) -> None:
        self.urls = urls
        self.timeout = timeout
        self.info_ttl = info_ttl
        self.refresh_interval = refresh_interval  # info(refresh=True) asks Triton again at most this often
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

    async def info(self, refresh: bool = False) -> ServerInfo:
        """The F5-TTS models on the server (its repository index: every READY model that contract.is_tts_model
        names), each with its registered voices and limits from its config; cached for `info_ttl` seconds, so
        that a model loaded later (or a new export) appears without a restart. `refresh`: ask again now unless
        the cached answer is younger than `refresh_interval` (a request naming a model not known yet)."""
        async with self._info_lock:
            if self._info:
                age = time.monotonic() - self._info[0]
                if age < (self.refresh_interval if refresh else self.info_ttl):
                    return self._info[1]
            failures = []
            for url, c in self._order():
                try:
                    found = await self._discover(c)
                except Exception as e:
                    failures.append(f"{url}: {_message(e)}")
                    continue
                if self._info is None or found != self._info[1]:
                    log.info("models on Triton at %s: %s", url, describe_models(found))
                self._info = (time.monotonic(), found)
                return found
            raise unavailable(
                f"Triton is not reachable or serves no {contract.TTS_MODEL} model: " + "; ".join(failures)
            )

    async def _discover(self, c) -> ServerInfo:
        index = await c.get_model_repository_index(as_json=True, client_timeout=10)
        ready = contract.tts_models_in_index(index)  # with their stream models, which speech goes through
        if contract.TTS_MODEL not in ready:
            raise LookupError(
                f"model {contract.TTS_MODEL} is not ready (F5-TTS models ready: {', '.join(ready) or 'none'})"
            )

        async def config(name: str) -> dict | None:
            try:
                return (await c.get_model_config(name, as_json=True, client_timeout=10))["config"]
            except Exception as e:
                if name == contract.TTS_MODEL:
                    raise
                log.warning("model %s is left out: its config cannot be read (%s)", name, _message(e))
                return None  # unloaded meanwhile: the next look finds out

        configs = dict(zip(ready, await asyncio.gather(*(config(n) for n in ready))))
        return server_info({n: cfg for n, cfg in configs.items() if cfg is not None})

    async def stream(
        self, text: str, speaker: Speaker, options: SynthesisOptions, model: str = contract.TTS_MODEL
    ) -> AsyncIterator[Piece]:
        """The speech's float32 pieces as `model`'s stream model (f5_tts_NAME_stream) sends them, each with
        the captions of the chunks it begins. Raises APIError before the first piece (and after it, should
        the stream break). Closing the generator early cancels the request on Triton."""
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
                model=contract.stream_model_name(model),
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
