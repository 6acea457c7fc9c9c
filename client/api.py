"""synthesize(): text + reference audio -> (waveform, sample_rate), over gRPC or HTTP."""

from __future__ import annotations

from typing import Mapping

import numpy as np

import contract
from client.request import SynthesisOptions, build_inputs, grpc_inputs, http_inputs

__all__ = ["SynthesisError", "SynthesisOptions", "synthesize", "synthesize_async", "make_client"]


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


def synthesize(text: str, reference_audio: np.ndarray, reference_sample_rate: int, reference_text: str, *,
               url: str = "localhost:8001", protocol: str = "grpc", model: str = contract.TTS_MODEL,
               options: SynthesisOptions = SynthesisOptions(), timeout: float | None = None,
               headers: Mapping[str, str] | None = None, client=None, **client_kwargs) -> tuple[np.ndarray, int]:
    """Synthesize `text` in the voice of the reference; returns (float32 waveform, sample rate)."""
    tensors = build_inputs(reference_audio, reference_sample_rate, reference_text, text, options)
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


async def synthesize_async(text: str, reference_audio: np.ndarray, reference_sample_rate: int, reference_text: str,
                           *, client, model: str = contract.TTS_MODEL,
                           options: SynthesisOptions = SynthesisOptions(), timeout: float | None = None,
                           headers: Mapping[str, str] | None = None) -> tuple[np.ndarray, int]:
    """asyncio gRPC variant; `client` is a tritonclient.grpc.aio.InferenceServerClient."""
    tensors = build_inputs(reference_audio, reference_sample_rate, reference_text, text, options)
    try:
        result = await client.infer(model, grpc_inputs(tensors), headers=dict(headers or {}), client_timeout=timeout)
    except Exception as e:
        raise _wrap(e) from e
    return _result(result)
