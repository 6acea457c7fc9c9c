"""Text + reference audio (or a registered voice) -> speech, over gRPC or HTTP.

synthesize(): the whole waveform at once. stream_synthesize(): an iterator over pieces of
it as the server finishes each text chunk (gRPC stream or HTTP server-sent events).
"""

from __future__ import annotations

import json
import queue
from typing import AsyncIterator, Iterator, Mapping

import numpy as np

import contract
from client.request import SynthesisOptions, build_inputs, generate_body, grpc_inputs, http_inputs

__all__ = ["SynthesisError", "SynthesisOptions", "synthesize", "synthesize_async", "stream_synthesize",
           "list_voices", "make_client"]


class SynthesisError(RuntimeError):
    """The server refused or failed the request; `status` is Triton's code (e.g. INVALID_ARG)."""

    def __init__(self, message: str, status: str | None = None) -> None:
        super().__init__(message)
        self.status = status


def _wrap(e: Exception) -> SynthesisError:
    from tritonclient.utils import InferenceServerException

    if isinstance(e, InferenceServerException):
        return SynthesisError(e.message() or str(e), e.status())
    return SynthesisError(f"{type(e).__name__}: {e}")


def make_client(url: str, protocol: str = "grpc", *, ssl: bool = False, root_certificates: str | None = None,
                private_key: str | None = None, certificate_chain: str | None = None, timeout: float | None = None,
                verbose: bool = False):
    if protocol == "grpc":
        import tritonclient.grpc as grpcclient

        return grpcclient.InferenceServerClient(url, verbose=verbose, ssl=ssl, root_certificates=root_certificates,
                                                private_key=private_key, certificate_chain=certificate_chain)
    if protocol == "http":
        import tritonclient.http as httpclient

        kwargs = {}
        if ssl:
            import gevent.ssl

            ctx = gevent.ssl.create_default_context(cafile=root_certificates)
            if certificate_chain:
                ctx.load_cert_chain(certificate_chain, private_key)
            kwargs = {"ssl": True, "ssl_context_factory": lambda: ctx}
        t = timeout or 600.0
        return httpclient.InferenceServerClient(url, verbose=verbose, connection_timeout=t, network_timeout=t, **kwargs)
    raise ValueError(f"protocol must be grpc or http, got {protocol!r}")


def _result(result) -> tuple[np.ndarray, int]:
    waveform = result.as_numpy(contract.WAVEFORM)
    sample_rate = result.as_numpy(contract.SAMPLE_RATE_OUT)
    return waveform.reshape(-1).astype(np.float32), int(sample_rate.reshape(-1)[0])


def synthesize(text: str, reference_audio: np.ndarray | None = None, reference_sample_rate: int | None = None,
               reference_text: str | None = None, *, voice: str | None = None,
               url: str = "localhost:8001", protocol: str = "grpc", model: str = contract.TTS_MODEL,
               options: SynthesisOptions = SynthesisOptions(), timeout: float | None = None,
               headers: Mapping[str, str] | None = None, client=None, **client_kwargs) -> tuple[np.ndarray, int]:
    """Synthesize `text` in the voice of the reference (or of a registered `voice`);
    returns (float32 waveform, sample rate)."""
    tensors = build_inputs(reference_audio, reference_sample_rate, reference_text, text, options, voice)
    own = client is None
    try:
        if own:
            client = make_client(url, protocol, timeout=timeout, **client_kwargs)
        if protocol == "grpc":
            result = client.infer(model, grpc_inputs(tensors), headers=dict(headers or {}),
                                  client_timeout=timeout)
        else:
            result = client.infer(model, http_inputs(tensors), headers=dict(headers or {}))
        return _result(result)
    except SynthesisError:
        raise
    except Exception as e:
        raise _wrap(e) from e
    finally:
        if own and client is not None:
            client.close()


async def synthesize_async(text: str, reference_audio: np.ndarray | None = None,
                           reference_sample_rate: int | None = None, reference_text: str | None = None, *,
                           client, voice: str | None = None, model: str = contract.TTS_MODEL,
                           options: SynthesisOptions = SynthesisOptions(), timeout: float | None = None,
                           headers: Mapping[str, str] | None = None) -> tuple[np.ndarray, int]:
    """asyncio gRPC variant; `client` is a tritonclient.grpc.aio.InferenceServerClient."""
    tensors = build_inputs(reference_audio, reference_sample_rate, reference_text, text, options, voice)
    try:
        result = await client.infer(model, grpc_inputs(tensors), headers=dict(headers or {}), client_timeout=timeout)
    except Exception as e:
        raise _wrap(e) from e
    return _result(result)


async def stream_synthesize_async(text: str, reference_audio: np.ndarray | None = None,
                                  reference_sample_rate: int | None = None, reference_text: str | None = None, *,
                                  client, voice: str | None = None, model: str = contract.STREAM_MODEL,
                                  options: SynthesisOptions = SynthesisOptions(), timeout: float | None = None,
                                  headers: Mapping[str, str] | None = None) -> AsyncIterator[np.ndarray]:
    """asyncio gRPC variant of stream_synthesize; `client` is a tritonclient.grpc.aio.InferenceServerClient.

    Closing the generator before its end (`aclose()`, or cancelling the task that iterates it)
    cancels the request on the server. A connection failure raises SynthesisError with status
    "StatusCode.UNAVAILABLE"; a refused request, the server's message (no status: Triton's gRPC
    stream carries none). `timeout` bounds the whole stream.
    """
    import grpc
    from tritonclient.grpc._utils import get_error_grpc

    tensors = build_inputs(reference_audio, reference_sample_rate, reference_text, text, options, voice)

    async def requests():
        yield {"model_name": model, "inputs": grpc_inputs(tensors),
               "parameters": {"triton_enable_empty_final_response": True}}

    responses = client.stream_infer(requests(), stream_timeout=timeout, headers=dict(headers or {}))
    finished = False
    try:
        async for result, error in responses:
            if error is not None:
                raise _wrap(error)
            params = result.get_response().parameters
            finished = "triton_final_response" in params and params["triton_final_response"].bool_param
            wave = result.as_numpy(contract.WAVEFORM)
            if wave is not None and wave.size:
                yield wave.reshape(-1).astype(np.float32)
            if finished:
                return
        raise SynthesisError("the stream ended before its final response")
    except grpc.RpcError as e:
        raise _wrap(get_error_grpc(e)) from None
    finally:
        if not finished:
            responses.cancel()  # synchronous: safe inside a cancelled task


def stream_synthesize(text: str, reference_audio: np.ndarray | None = None, reference_sample_rate: int | None = None,
                      reference_text: str | None = None, *, voice: str | None = None,
                      url: str = "localhost:8001", protocol: str = "grpc", model: str = contract.STREAM_MODEL,
                      options: SynthesisOptions = SynthesisOptions(), timeout: float | None = None,
                      headers: Mapping[str, str] | None = None, **client_kwargs) -> Iterator[np.ndarray]:
    """Yield float32 pieces of the speech (24 kHz) as the server finishes each text chunk.

    The pieces joined are the whole waveform. Closing the iterator early (leaving a `for`
    loop over it, or `close()`; use `contextlib.closing` when you keep a reference) cancels the
    request on the server, so the remaining chunks are not synthesized. `timeout` bounds the
    wait for each piece. HTTP uses Triton's generate_stream (SSE), which takes reference audio
    as mono samples. Errors raise SynthesisError with the server's message; its `status` is the
    HTTP code when the server refuses the request before streaming, else None (Triton's gRPC
    stream carries no code).
    """
    tensors = build_inputs(reference_audio, reference_sample_rate, reference_text, text, options, voice)
    if protocol == "grpc":
        return _grpc_stream(tensors, url, model, timeout, headers, client_kwargs)
    if protocol == "http":
        return _http_stream(tensors, url, model, timeout, headers, client_kwargs)
    raise ValueError(f"protocol must be grpc or http, got {protocol!r}")


def _grpc_stream(tensors, url, model, timeout, headers, client_kwargs) -> Iterator[np.ndarray]:
    client = make_client(url, "grpc", **client_kwargs)
    responses: queue.Queue = queue.Queue()
    finished = False
    try:
        client.start_stream(callback=lambda result, error: responses.put((result, error)),
                            headers=dict(headers or {}))
        client.async_stream_infer(model, grpc_inputs(tensors), enable_empty_final_response=True)
        while not finished:
            try:
                result, error = responses.get(timeout=timeout)
            except queue.Empty:
                raise SynthesisError(f"no audio from the server within {timeout} s", "DEADLINE_EXCEEDED") from None
            if error is not None:
                raise _wrap(error)
            params = result.get_response().parameters
            finished = "triton_final_response" in params and params["triton_final_response"].bool_param
            wave = result.as_numpy(contract.WAVEFORM)
            if wave is not None and wave.size:
                yield wave.reshape(-1).astype(np.float32)
    except SynthesisError:
        raise
    except Exception as e:
        raise _wrap(e) from e
    finally:
        try:
            client.stop_stream(cancel_requests=not finished)  # a consumer that stopped early cancels the rest
        finally:
            client.close()


def _http_stream(tensors, url, model, timeout, headers, client_kwargs) -> Iterator[np.ndarray]:
    import ssl as ssl_module
    import urllib.error
    import urllib.request

    scheme = "https" if client_kwargs.get("ssl") else "http"
    context = None
    if scheme == "https":
        context = ssl_module.create_default_context(cafile=client_kwargs.get("root_certificates"))
        if client_kwargs.get("certificate_chain"):
            context.load_cert_chain(client_kwargs["certificate_chain"], client_kwargs.get("private_key"))
    request = urllib.request.Request(f"{scheme}://{url}/v2/models/{model}/generate_stream",
                                     data=json.dumps(generate_body(tensors)).encode("utf-8"),
                                     headers={"Content-Type": "application/json", **dict(headers or {})})
    try:
        response = urllib.request.urlopen(request, timeout=timeout, context=context)
    except urllib.error.HTTPError as e:
        raise SynthesisError(_sse_error(e.read()) or f"HTTP {e.code} {e.reason}", str(e.code)) from None
    except (urllib.error.URLError, OSError) as e:
        raise SynthesisError(f"cannot reach {scheme}://{url}: {getattr(e, 'reason', e)}") from None
    with response:
        try:
            for line in response:
                if not line.startswith(b"data:"):
                    continue
                event = json.loads(line[5:])
                if "error" in event:
                    raise SynthesisError(event["error"])
                yield np.asarray(event[contract.WAVEFORM], dtype=np.float32).reshape(-1)
        except SynthesisError:
            raise
        except Exception as e:  # connection lost mid-stream, a malformed event
            raise SynthesisError(f"the stream from {scheme}://{url} broke off: {type(e).__name__}: {e}") from e


def _sse_error(body: bytes) -> str | None:
    """The message of an error answer, which may come as JSON or as one server-sent event."""
    body = body.strip()
    if body.startswith(b"data:"):
        body = body[5:]
    try:
        return json.loads(body).get("error")
    except (ValueError, AttributeError):
        return body.decode("utf-8", "replace") or None


def list_voices(url: str = "localhost:8001", protocol: str = "grpc", *, model: str = contract.TTS_MODEL,
                headers: Mapping[str, str] | None = None, **client_kwargs) -> list[str]:
    """Names of the voices registered on the server (the f5_tts model config parameter)."""
    client = make_client(url, protocol, **client_kwargs)
    try:
        if protocol == "grpc":
            config = client.get_model_config(model, headers=dict(headers or {}), as_json=True)["config"]
        else:
            config = client.get_model_config(model, headers=dict(headers or {}))
        value = config.get("parameters", {}).get(contract.VOICES_PARAMETER, {}).get("string_value", "")
        return list(contract.parse_voice_list(value))
    except Exception as e:
        raise _wrap(e) from e
    finally:
        client.close()
