"""Text + reference audio (or a registered voice) -> speech, over gRPC or HTTP; audio -> its transcript.

synthesize(): the whole waveform at once. stream_synthesize(): an iterator over pieces of
it as the server finishes each text chunk (gRPC stream or HTTP server-sent events). A reference
sent without its transcript is transcribed by the server (a repository exported with --asr).
transcribe(): the server's transcriber model (Whisper) on any audio.

A repository may serve several F5-TTS models (`python -m export --name fr` adds f5_tts_fr and its
stream f5_tts_fr_stream beside the default f5_tts): `model=` takes a model's short name ("fr",
"default") or a Triton name (f5_tts_fr, f5_tts_fr_stream); list_models() says which the server has.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Iterator, Mapping, NamedTuple

import numpy as np

import contract
from client.audio import load_audio
from client.connection import (
    INVALID_ARGUMENT_STATUSES,
    Endpoint,
    describe_error,
    make_client,
    resolve_endpoint,
    ssl_context,
)
from client.request import (
    SynthesisOptions,
    build_inputs,
    generate_body,
    grpc_inputs,
    http_inputs,
    transcription_inputs,
    triton_dtype,
)
from contract.captions import Cue
from contract.captions import loads as loads_cues
from contract.errors import GRPC_DEADLINE_EXCEEDED
from contract.parameters import TtsParameters

__all__ = [
    "SynthesisError",
    "UnknownModelError",
    "SynthesisOptions",
    "ServedModel",
    "synthesize",
    "synthesize_async",
    "stream_synthesize",
    "stream_synthesize_async",
    "list_models",
    "list_voices",
    "transcribe",
    "transcribe_async",
    "Transcription",
    "make_client",
]

log = logging.getLogger("client")


class SynthesisError(RuntimeError):
    """The server refused or failed the request; `status` is Triton's code (e.g. INVALID_ARG)."""

    def __init__(self, message: str, status: str | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def invalid_argument(self) -> bool:
        """The server refused the request itself (gRPC INVALID_ARGUMENT, HTTP 400): the message says why."""
        return self.status in INVALID_ARGUMENT_STATUSES


class UnknownModelError(SynthesisError):
    """The server has no model of the name asked for. `model`: that name, as given; `available`: the short
    names of the F5-TTS models the server has (default first), or None when they could not be listed.
    `status` stays Triton's (gRPC NOT_FOUND, HTTP 404; None on a gRPC stream)."""

    def __init__(self, message: str, status: str | None, model: str, available: list[str] | None) -> None:
        super().__init__(message, status)
        self.model = model
        self.available = available


# --- model names --------------------------------------------------------------------------------


def tts_model(model: str | None = None) -> str:
    """The Triton model that answers a whole request for `model`: a short name ("fr"; None, "" or "default":
    the default model), a Triton name (f5_tts_fr) or its stream's (f5_tts_fr_stream: its unary model)."""
    model = (model or "").strip()
    if model.endswith(contract.STREAM_SUFFIX):
        model = model.removesuffix(contract.STREAM_SUFFIX)
    # a name no model can have goes to Triton as it is, which answers that it has no such model
    return contract.parse_model_name(model) or contract.tts_model_name(model)


def stream_model(model: str | None = None) -> str:
    """The decoupled Triton model that streams `model` (named as for tts_model): fr -> f5_tts_fr_stream;
    f5_tts_stream and f5_tts_fr_stream are returned as they are."""
    return contract.stream_model_name(tts_model(model))


def index_entries(index) -> list[dict]:
    """Triton's repository index as a list of {"name", "state", ...} (gRPC's JSON wraps it in "models")."""
    return list(index.get("models", [])) if isinstance(index, dict) else list(index)


def model_names(entries: list[dict]) -> list[str]:
    """The short names of the F5-TTS models of a repository index, the default first."""
    return [contract.model_short_name(n) for n in contract.tts_models_in_index(entries, ready_only=False)]


def _is_unknown_model(e: SynthesisError, triton_model: str) -> bool:
    """Triton's "Request for unknown model: 'f5_tts_xx' is not found" about `triton_model` (or, for a
    stream, the model it streams): not another model's (a transcriber the request needed)."""
    text = str(e)
    return "unknown model" in text.lower() and any(f"'{m}'" in text for m in {triton_model, tts_model(triton_model)})


def _unknown_model(
    e: SynthesisError, asked: str | None, triton_model: str, available: list[str] | None, url: str | None
) -> UnknownModelError:
    """Triton's "unknown model" said as which models the server has, and where to see them."""
    asked = asked or contract.DEFAULT_MODEL_NAME
    where = f"the server at {url}" if url else "the server"
    short = contract.model_short_name(tts_model(triton_model))
    if available is None:
        message = f"unknown model {asked!r}: {where} has no {triton_model} (python -m client --list-models)"
    elif short in available:  # the model is there, this one of its Triton models is not (its stream)
        message = f"model {asked!r} has no {triton_model} on {where} (python -m client --list-models)"
    elif available:
        message = f"unknown model {asked!r}: {where} has {', '.join(available)} (python -m client --list-models)"
    else:
        message = f"unknown model {asked!r}: {where} serves no F5-TTS model (python -m client --list-models)"
    return UnknownModelError(message, e.status, asked, available)


def _served_names(endpoint: Endpoint, headers, client_kwargs, client=None) -> list[str] | None:
    """The short names of the server's F5-TTS models; None when the server cannot say."""
    own = client is None
    try:
        if own:
            client = make_client(endpoint.url, **client_kwargs)
        if endpoint.protocol == "grpc":
            index = client.get_model_repository_index(headers=dict(headers or {}), as_json=True)
        else:
            index = client.get_model_repository_index(headers=dict(headers or {}))
        return model_names(index_entries(index))
    except Exception:
        return None
    finally:
        if own and client is not None:
            client.close()


def _named(e: SynthesisError, asked, triton_model, endpoint: Endpoint, headers, client_kwargs, client=None):
    """`e`, or the UnknownModelError it means (which asks the server for its models)."""
    if isinstance(e, UnknownModelError) or not _is_unknown_model(e, triton_model):
        return e
    available = _served_names(endpoint, headers, client_kwargs, client)
    return _unknown_model(e, asked, triton_model, available, endpoint.url)


async def _named_async(e: SynthesisError, asked, triton_model, client, headers):
    """_named over an asyncio gRPC client."""
    if isinstance(e, UnknownModelError) or not _is_unknown_model(e, triton_model):
        return e
    try:
        index = await client.get_model_repository_index(headers=dict(headers or {}), as_json=True)
        available = model_names(index_entries(index))
    except Exception:
        available = None
    return _unknown_model(e, asked, triton_model, available, None)


def _error(
    e: BaseException, endpoint: Endpoint | None, timeout: float | None = None, connected: bool = False
) -> SynthesisError:
    message, status = describe_error(e, endpoint, timeout, connected)
    return SynthesisError(message, status)


@contextlib.contextmanager
def _reported(endpoint: Endpoint, timeout: float | None, connected: bool = False):
    """Any failure inside becomes a SynthesisError saying what was reached and what to try; one that
    is already a SynthesisError passes as it is."""
    try:
        yield
    except SynthesisError:
        raise
    except Exception as e:
        raise _error(e, endpoint, timeout, connected) from None


def _endpoint(url: str | None, protocol: str | None, client_kwargs: dict) -> Endpoint:
    """The endpoint, with TLS from the URL's scheme written back into the client options."""
    try:
        endpoint = resolve_endpoint(url, protocol, client_kwargs.get("ssl", False))
    except ValueError as e:
        raise SynthesisError(str(e)) from None
    client_kwargs["ssl"] = endpoint.ssl
    return endpoint


def _summary(tensors: Mapping[str, np.ndarray]) -> str:
    """name dtype [shape] of each tensor: what -v shows instead of megabytes of audio."""
    return ", ".join(f"{name} {triton_dtype(name)} {list(a.shape)}" for name, a in tensors.items())


def _result(result) -> tuple[np.ndarray, int]:
    waveform = result.as_numpy(contract.WAVEFORM)
    sample_rate = result.as_numpy(contract.SAMPLE_RATE_OUT)
    return waveform.reshape(-1).astype(np.float32), int(sample_rate.reshape(-1)[0])


def _captioned_result(result) -> tuple[np.ndarray, int, list[Cue]]:
    return (*_result(result), _cues(result.as_numpy(contract.CAPTIONS)))


def _cues(tensor) -> list[Cue]:
    """The cues of a `captions` output (a BYTES tensor, or the string an SSE event carries)."""
    if tensor is None:
        return []
    raw = tensor if isinstance(tensor, (str, bytes)) else np.asarray(tensor).reshape(-1)[0]
    return loads_cues(raw)


def synthesize(
    text: str,
    reference_audio: np.ndarray | None = None,
    reference_sample_rate: int | None = None,
    reference_text: str | None = None,
    *,
    voice: str | None = None,
    url: str | None = None,
    protocol: str | None = None,
    model: str | None = None,
    options: SynthesisOptions = SynthesisOptions(),
    timeout: float | None = None,
    headers: Mapping[str, str] | None = None,
    client=None,
    captions: bool = False,
    **client_kwargs,
) -> tuple[np.ndarray, int] | tuple[np.ndarray, int, list[Cue]]:
    """Synthesize `text` in the voice of the reference (or of a registered `voice`);
    returns (float32 waveform, sample rate), and with `captions=True` (waveform, sample rate, cues):
    each text chunk's exact times and its words' (contract/captions.py; client/captions.py writes
    SRT and WebVTT). `reference_text` None or "": the server transcribes the reference (once per
    distinct audio; it needs a transcriber model, `export --asr`).

    `url`: host:port or http:// https:// grpc:// grpcs:// host:port (the scheme sets the protocol
    and TLS); default localhost:8001 for gRPC, localhost:8000 for HTTP. `protocol`: grpc (the
    default without a scheme) or http. `model`: which of the server's F5-TTS models speaks: its short
    name ("fr"; None or "default": the default model) or its Triton name (f5_tts_fr); one the server
    does not have raises UnknownModelError naming those it has.
    """
    tensors = build_inputs(reference_audio, reference_sample_rate, reference_text, text, options, voice)
    endpoint = _endpoint(url, protocol, client_kwargs)
    read = _captioned_result if captions else _result
    triton_model = tts_model(model)
    try:
        answer = _unary(tensors, triton_model, None, read, endpoint, timeout, headers, client, client_kwargs)
    except SynthesisError as e:
        raise _named(e, model, triton_model, endpoint, headers, client_kwargs, client) from None
    log.debug("%s %s response: waveform [%d] at %d Hz", endpoint.url, triton_model, len(answer[0]), answer[1])
    return answer


def _unary(tensors, model, outputs, read, endpoint, timeout, headers, client, client_kwargs):
    """One infer call with `client` (or a client of its own, closed after); returns read(result).
    `outputs`: the output names to ask for (None: all). Any failure is a SynthesisError."""
    own = client is None
    if own:
        try:
            client = make_client(endpoint.url, timeout=timeout, **client_kwargs)
        except ValueError as e:  # our own checks (TLS files)
            raise SynthesisError(str(e)) from None
    connected = False
    try:
        log.debug("%s %s request: %s", endpoint.url, model, _summary(tensors))
        if endpoint.protocol == "grpc":
            result = client.infer(
                model,
                grpc_inputs(tensors),
                outputs=_grpc_outputs(outputs),
                headers=dict(headers or {}),
                client_timeout=timeout,
            )
        else:
            import tritonclient.http as httpclient

            if own:
                # HTTP retries a request whose connection broke on a new one; a server that went away
                # then reads as "connection refused". Having connected once tells the two apart.
                client.is_server_live(headers=dict(headers or {}))
                connected = True
            requested = None if outputs is None else [httpclient.InferRequestedOutput(o) for o in outputs]
            result = client.infer(model, http_inputs(tensors), outputs=requested, headers=dict(headers or {}))
        return read(result)
    except Exception as e:
        raise _error(e, endpoint, timeout, connected) from None
    finally:
        if own:
            client.close()


def _grpc_outputs(outputs):
    if outputs is None:
        return None
    import tritonclient.grpc as grpcclient

    return [grpcclient.InferRequestedOutput(o) for o in outputs]


async def synthesize_async(
    text: str,
    reference_audio: np.ndarray | None = None,
    reference_sample_rate: int | None = None,
    reference_text: str | None = None,
    *,
    client,
    voice: str | None = None,
    model: str | None = None,
    options: SynthesisOptions = SynthesisOptions(),
    timeout: float | None = None,
    headers: Mapping[str, str] | None = None,
    captions: bool = False,
) -> tuple[np.ndarray, int] | tuple[np.ndarray, int, list[Cue]]:
    """asyncio gRPC variant; `client` is a tritonclient.grpc.aio.InferenceServerClient. `model` and
    `captions` as for synthesize()."""
    tensors = build_inputs(reference_audio, reference_sample_rate, reference_text, text, options, voice)
    triton_model = tts_model(model)
    try:
        result = await client.infer(
            triton_model, grpc_inputs(tensors), headers=dict(headers or {}), client_timeout=timeout
        )
    except Exception as e:
        raise await _named_async(_error(e, None, timeout), model, triton_model, client, headers) from None
    return _captioned_result(result) if captions else _result(result)


async def stream_synthesize_async(
    text: str,
    reference_audio: np.ndarray | None = None,
    reference_sample_rate: int | None = None,
    reference_text: str | None = None,
    *,
    client,
    voice: str | None = None,
    model: str | None = None,
    options: SynthesisOptions = SynthesisOptions(),
    timeout: float | None = None,
    headers: Mapping[str, str] | None = None,
    captions: bool = False,
) -> AsyncIterator[np.ndarray] | AsyncIterator[tuple[np.ndarray, list[Cue]]]:
    """asyncio gRPC variant of stream_synthesize; `client` is a tritonclient.grpc.aio.InferenceServerClient.
    With `captions=True` it yields (piece, cues), as stream_synthesize does; `model` as there.

    Closing the generator before its end (`aclose()`, or cancelling the task that iterates it)
    cancels the request on the server. A connection failure raises SynthesisError with status
    "StatusCode.UNAVAILABLE"; a refused request, the server's message (no status: Triton's gRPC
    stream carries none). `timeout` bounds the whole stream.
    """
    import grpc
    from tritonclient.grpc._utils import get_error_grpc

    tensors = build_inputs(reference_audio, reference_sample_rate, reference_text, text, options, voice)
    triton_model = stream_model(model)

    async def requests():
        yield {
            "model_name": triton_model,
            "inputs": grpc_inputs(tensors),
            "parameters": {"triton_enable_empty_final_response": True},
        }

    responses = client.stream_infer(requests(), stream_timeout=timeout, headers=dict(headers or {}))
    finished = ended = False
    try:
        async for result, error in responses:
            if finished:  # past the final response: nothing more is sent, the call is about to end
                continue
            if error is not None:
                raise await _named_async(_error(error, None, timeout), model, triton_model, client, headers)
            params = result.get_response().parameters
            finished = "triton_final_response" in params and params["triton_final_response"].bool_param
            wave = result.as_numpy(contract.WAVEFORM)
            wave = np.zeros(0, np.float32) if wave is None else wave.reshape(-1).astype(np.float32)
            if captions:
                cues = _cues(result.as_numpy(contract.CAPTIONS))
                if wave.size or cues:
                    yield wave, cues
            elif wave.size:
                yield wave
        ended = True
        if not finished:
            raise SynthesisError("the stream ended before its final response")
    except grpc.RpcError as e:
        raise _error(get_error_grpc(e), None, timeout) from None
    finally:
        if not finished:
            responses.cancel()  # synchronous: safe inside a cancelled task
        elif not ended:  # closed at its last piece
            await _read_to_the_end(responses)


async def _read_to_the_end(responses, wait_s: float = 10.0) -> None:
    """Read a finished stream's call to its end, which the server sends once its final response is out (our
    request stream has ended). A call left open is cancelled when its channel closes, after the request
    completed, and tritonserver 2.51 then keeps the stream model referenced: it never unloads, and the
    server's stop runs into its exit timeout. (The sync client's stop_stream reads to the end too.)"""

    async def drain():
        async for _ in responses:
            pass

    try:
        await asyncio.wait_for(drain(), wait_s)
    except asyncio.CancelledError:
        responses.cancel()
        raise
    except Exception:  # a server that does not end the call: the audio is whole, the call is given up
        responses.cancel()


def stream_synthesize(
    text: str,
    reference_audio: np.ndarray | None = None,
    reference_sample_rate: int | None = None,
    reference_text: str | None = None,
    *,
    voice: str | None = None,
    url: str | None = None,
    protocol: str | None = None,
    model: str | None = None,
    options: SynthesisOptions = SynthesisOptions(),
    timeout: float | None = None,
    headers: Mapping[str, str] | None = None,
    captions: bool = False,
    **client_kwargs,
) -> Iterator[np.ndarray] | Iterator[tuple[np.ndarray, list[Cue]]]:
    """Yield float32 pieces of the speech (24 kHz) as the server finishes each text chunk; with
    `captions=True`, (piece, cues): the cues of the chunks that piece begins to speak, with times
    from the stream's start, equal to the whole answer's (synthesize(captions=True)).

    The pieces joined are the whole waveform. Closing the iterator early (leaving a `for`
    loop over it, or `close()`; use `contextlib.closing` when you keep a reference) cancels the
    request on the server, so the remaining chunks are not synthesized. `timeout` bounds the
    wait for each piece. `url` and `protocol` as for synthesize(). HTTP uses Triton's
    generate_stream (SSE), which takes one flat list per input: reference audio travels as its
    samples, channel after channel, with the channel count beside them, so the server prepares
    it exactly as it prepares a gRPC request. Errors raise SynthesisError with the server's
    message; its `status` is the HTTP code when the server refuses the request before
    streaming, else None (Triton's gRPC stream carries no code). `model`: as for synthesize() (the
    stream of "fr" is f5_tts_fr_stream); a stream model's Triton name (f5_tts_fr_stream) works too.
    """
    tensors = build_inputs(reference_audio, reference_sample_rate, reference_text, text, options, voice)
    endpoint = _endpoint(url, protocol, client_kwargs)
    asked = (model, stream_model(model))
    if endpoint.protocol == "grpc":
        pieces = _grpc_stream(tensors, endpoint, asked, timeout, headers, client_kwargs)
    else:
        pieces = _http_stream(tensors, endpoint, asked, timeout, headers, client_kwargs)
    return pieces if captions else _audio_only(pieces)


def _audio_only(pieces: Iterator[tuple[np.ndarray, list[Cue]]]) -> Iterator[np.ndarray]:
    try:
        for wave, _ in pieces:
            if wave.size:
                yield wave
    finally:
        pieces.close()  # now, not when collected: closing early cancels the request on the server


def _grpc_stream(tensors, endpoint, asked, timeout, headers, client_kwargs) -> Iterator[tuple[np.ndarray, list[Cue]]]:
    """`asked`: (the model as the caller named it, the stream model's Triton name)."""
    named, model = asked
    try:
        client = make_client(endpoint.url, **client_kwargs)
    except ValueError as e:
        raise SynthesisError(str(e)) from None
    responses: queue.Queue = queue.Queue()
    finished = False
    try:
        with _reported(endpoint, timeout):
            log.debug("%s %s stream request: %s", endpoint.url, model, _summary(tensors))
            client.start_stream(
                callback=lambda result, error: responses.put((result, error)), headers=dict(headers or {})
            )
            client.async_stream_infer(model, grpc_inputs(tensors), enable_empty_final_response=True)
            while not finished:
                try:
                    result, error = responses.get(timeout=timeout)
                except queue.Empty:
                    raise SynthesisError(
                        f"timed out: no audio from the server at {endpoint.url} within "
                        f"{timeout:g} s; the request was abandoned",
                        GRPC_DEADLINE_EXCEEDED,
                    ) from None
                if error is not None:
                    failure = _error(error, endpoint, timeout, connected=True)
                    raise _named(failure, named, model, endpoint, headers, client_kwargs, client)
                params = result.get_response().parameters
                finished = "triton_final_response" in params and params["triton_final_response"].bool_param
                wave = result.as_numpy(contract.WAVEFORM)
                cues = _cues(result.as_numpy(contract.CAPTIONS))
                if (wave is not None and wave.size) or cues:
                    wave = np.zeros(0, np.float32) if wave is None else wave.reshape(-1).astype(np.float32)
                    log.debug("%s %s piece: waveform [%d]", endpoint.url, model, wave.size)
                    yield wave, cues
    finally:
        try:
            client.stop_stream(cancel_requests=not finished)  # a consumer that stopped early cancels the rest
        finally:
            client.close()


def _http_stream(tensors, endpoint, asked, timeout, headers, client_kwargs) -> Iterator[tuple[np.ndarray, list[Cue]]]:
    """`asked`: (the model as the caller named it, the stream model's Triton name)."""
    import urllib.error
    import urllib.request

    named, model = asked
    scheme = "https" if endpoint.ssl else "http"
    context = None
    if endpoint.ssl:
        try:
            context = ssl_context(
                client_kwargs.get("root_certificates"),
                client_kwargs.get("private_key"),
                client_kwargs.get("certificate_chain"),
            )
        except ValueError as e:
            raise SynthesisError(str(e)) from None
    body = generate_body(tensors)
    log.debug("%s %s generate_stream request: %s", endpoint.url, model, _summary(tensors))
    request = urllib.request.Request(
        f"{scheme}://{endpoint.address}/v2/models/{model}/generate_stream",
        data=json.dumps(body).encode("utf-8"),
        headers={"Content-Type": "application/json", **dict(headers or {})},
    )
    with _reported(endpoint, timeout):  # a port that does not speak HTTP, a timeout
        try:
            response = urllib.request.urlopen(request, timeout=timeout, context=context)
        except urllib.error.HTTPError as e:
            with e:  # an unclosed HTTPError keeps its connection open, and a stopping server waits for it
                message = _sse_error(e.read()) or f"HTTP {e.code} {e.reason}"
            raise _named(SynthesisError(message, str(e.code)), named, model, endpoint, headers, client_kwargs) from None
        except urllib.error.URLError as e:
            raise e.reason if isinstance(e.reason, BaseException) else OSError(str(e.reason)) from None
    with response, _reported(endpoint, timeout, connected=True):  # connection lost mid-stream, a timeout
        for line in response:
            if line.startswith(b"data:"):
                wave, cues = _sse_piece(line[5:], endpoint)
                log.debug("%s %s piece: waveform [%d]", endpoint.url, model, wave.size)
                yield wave, cues


def _sse_piece(data: bytes, endpoint: Endpoint) -> tuple[np.ndarray, list[Cue]]:
    """One server-sent event's audio and cues; the server's error, or a malformed event, as SynthesisError."""
    try:
        event = json.loads(data)
        if "error" in event:
            raise SynthesisError(event["error"])
        return np.asarray(event[contract.WAVEFORM], dtype=np.float32).reshape(-1), _cues(event.get(contract.CAPTIONS))
    except (ValueError, KeyError, TypeError) as e:
        raise SynthesisError(f"the stream from {endpoint.url} broke off: {type(e).__name__}: {e}") from None


def _sse_error(body: bytes) -> str | None:
    """The message of an error answer, which may come as JSON or as one server-sent event."""
    body = body.strip()
    if body.startswith(b"data:"):
        body = body[5:]
    try:
        return json.loads(body).get("error")
    except (ValueError, AttributeError):
        return body.decode("utf-8", "replace") or None


def list_voices(
    url: str | None = None,
    protocol: str | None = None,
    *,
    model: str | None = None,
    headers: Mapping[str, str] | None = None,
    **client_kwargs,
) -> list[str]:
    """Names of the voices registered on the server for `model` (named as for synthesize(); its config
    parameter `voices`)."""
    endpoint = _endpoint(url, protocol, client_kwargs)
    triton_model = tts_model(model)
    try:
        client = make_client(endpoint.url, **client_kwargs)
    except ValueError as e:
        raise SynthesisError(str(e)) from None
    try:
        try:
            config = _config(client, endpoint, triton_model, headers)
        except Exception as e:
            raise _named(_error(e, endpoint), model, triton_model, endpoint, headers, client_kwargs, client) from None
        try:
            return list(_parameters(config).voice_names)
        except ValueError as e:
            raise SynthesisError(f"{triton_model}'s config: {e}") from None
    finally:
        client.close()


def _config(client, endpoint: Endpoint, triton_model: str, headers) -> dict:
    """A model's config as a dict (gRPC's JSON and HTTP's answer have the same fields)."""
    if endpoint.protocol == "grpc":
        return client.get_model_config(triton_model, headers=dict(headers or {}), as_json=True)["config"]
    return client.get_model_config(triton_model, headers=dict(headers or {}))


def _parameters(config: dict) -> TtsParameters:
    """An F5-TTS model's parameters from its config, as the model reads them; a server exported by another
    version may have other knobs, which are ignored."""
    return TtsParameters.from_triton(config.get("parameters", {}), strict=False)


READY = "READY"  # Triton's repository-index state of a loaded model


@dataclass(frozen=True)
class ServedModel:
    """One F5-TTS model of the server, as list_models() finds it."""

    name: str  # the short name that `model=` and --model take: "default", or NAME (export --name NAME)
    triton_model: str  # the unary model: f5_tts, f5_tts_NAME
    stream_model: str | None  # the streaming one: f5_tts_stream, f5_tts_NAME_stream; None when not served
    state: str  # Triton's state of triton_model: READY, LOADING, UNAVAILABLE, ...
    stream_state: str | None  # of stream_model
    architecture: str  # f5-tts's config name of the checkpoint (F5TTS_v1_Base, F5TTS_Base...); "unknown"
    voices: tuple[str, ...]  # registered at export, for this model
    demo_model: bool  # exported with --demo-tiny: random weights, noise

    @property
    def ready(self) -> bool:
        """Both the unary model and its stream answer requests."""
        return self.state == READY and self.stream_state in (None, READY)


def list_models(
    url: str | None = None,
    protocol: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    **client_kwargs,
) -> list[ServedModel]:
    """The server's F5-TTS models (the default first, then by name), from Triton's repository index and each
    model's config; its streams, vocoders and transcriber are not listed on their own. A model that is not
    loaded is listed with its state, and with architecture "unknown" and no voices when its config cannot
    be read. `url`, `protocol` and the connection options as for synthesize()."""
    endpoint = _endpoint(url, protocol, client_kwargs)
    try:
        client = make_client(endpoint.url, **client_kwargs)
    except ValueError as e:
        raise SynthesisError(str(e)) from None
    try:
        try:
            if endpoint.protocol == "grpc":
                index = client.get_model_repository_index(headers=dict(headers or {}), as_json=True)
            else:
                index = client.get_model_repository_index(headers=dict(headers or {}))
        except Exception as e:
            raise _error(e, endpoint) from None
        states = {e["name"]: e.get("state") or "UNKNOWN" for e in index_entries(index) if "name" in e}
        models = []
        for name in model_names([{"name": n} for n in states]):
            triton_model = contract.tts_model_name(name)
            stream = contract.stream_model_name(triton_model)
            try:
                parameters = _parameters(_config(client, endpoint, triton_model, headers))
                architecture, voices, demo = parameters.f5_model_name, parameters.voice_names, parameters.demo_model
            except Exception:  # not loaded (its state says so)
                architecture, voices, demo = "unknown", (), False
            models.append(
                ServedModel(
                    name,
                    triton_model,
                    stream if stream in states else None,
                    states[triton_model],
                    states.get(stream),
                    architecture,
                    voices,
                    demo,
                )
            )
        return models
    finally:
        client.close()


# --- transcription -------------------------------------------------------------------------------


class Transcription(NamedTuple):
    """What the server's transcriber heard."""

    text: str  # stripped, as f5-tts's transcribe returns it; empty when it heard no speech
    language: str | None  # the Whisper code asked for or detected; None when neither was asked for


def transcribe(
    audio: np.ndarray | str | Path,
    sample_rate: int | None = None,
    *,
    language: str | None = None,
    as_reference: bool = False,
    detect_language: bool = True,
    url: str | None = None,
    protocol: str | None = None,
    model: str = contract.TRANSCRIBER_MODEL,
    timeout: float | None = None,
    headers: Mapping[str, str] | None = None,
    client=None,
    **client_kwargs,
) -> Transcription:
    """Transcribe `audio` with the server's transcriber model (Whisper, as f5-tts transcribes references;
    a repository exported with --asr); returns Transcription(text, language).

    `audio`: an audio file's path (WAV, FLAC, OGG...), or float samples [channels, samples] or
    [samples] with their `sample_rate`. `language`: a Whisper code (en, zh, fr...); None: detected.
    `as_reference`: transcribe only what f5_tts keeps of it as a reference (clipped to 12 s at a pause,
    silence trimmed): the transcript a synthesis request sends. `detect_language=False` skips the
    detection (a decoder pass) when no language is given; the language is then None. `url`,
    `protocol` and the connection options as for synthesize(). Errors raise SynthesisError.
    """
    tensors = _transcription_tensors(audio, sample_rate, language, as_reference)
    outputs = _transcription_outputs(language, detect_language)
    endpoint = _endpoint(url, protocol, client_kwargs)
    try:
        heard = _unary(tensors, model, outputs, _transcription, endpoint, timeout, headers, client, client_kwargs)
    except SynthesisError as e:
        raise _no_model(e, model, endpoint.url) from None
    log.debug("%s %s response: %r", endpoint.url, model, heard)
    return heard


async def transcribe_async(
    audio: np.ndarray | str | Path,
    sample_rate: int | None = None,
    *,
    client,
    language: str | None = None,
    as_reference: bool = False,
    detect_language: bool = True,
    model: str = contract.TRANSCRIBER_MODEL,
    timeout: float | None = None,
    headers: Mapping[str, str] | None = None,
) -> Transcription:
    """asyncio gRPC variant of transcribe; `client` is a tritonclient.grpc.aio.InferenceServerClient."""
    tensors = _transcription_tensors(audio, sample_rate, language, as_reference)
    outputs = _transcription_outputs(language, detect_language)
    try:
        result = await client.infer(
            model,
            grpc_inputs(tensors),
            outputs=_grpc_outputs(outputs),
            headers=dict(headers or {}),
            client_timeout=timeout,
        )
        return _transcription(result)
    except Exception as e:
        raise _no_model(_error(e, None, timeout), model, None) from None


def _transcription_tensors(audio, sample_rate, language, as_reference) -> dict[str, np.ndarray]:
    if isinstance(audio, (str, Path)):
        if sample_rate is not None:
            raise ValueError("an audio file carries its own sample rate; give sample_rate with samples only")
        audio, sample_rate = load_audio(audio, what="audio")
    return transcription_inputs(audio, sample_rate, language, as_reference)


def _transcription_outputs(language: str | None, detect_language: bool) -> list[str]:
    # The language output costs a detection pass unless a language was given: asked for only when wanted.
    return [contract.TRANSCRIPT, contract.LANGUAGE] if language or detect_language else [contract.TRANSCRIPT]


def _transcription(result) -> Transcription:
    def text(name: str) -> str | None:
        value = result.as_numpy(name)
        return None if value is None else value.reshape(-1)[0].decode("utf-8")

    return Transcription(text(contract.TRANSCRIPT), text(contract.LANGUAGE))


def _no_model(e: SynthesisError, model: str, url: str | None) -> SynthesisError:
    """Triton's "unknown model" said as what to do: a repository exported without --asr has none."""
    if "unknown model" not in str(e).lower():
        return e
    where = f"the server at {url}" if url else "the server"
    return SynthesisError(
        f"{where} has no '{model}' model to transcribe with: export the repository with "
        "`python -m export ... --asr` (Whisper, as f5-tts transcribes references)",
        e.status,
    )
