"""One request builder for gRPC, HTTP and perf_analyzer JSON."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import contract

_NUMPY = {"FP32": np.float32, "INT32": np.int32, "INT64": np.int64, "BYTES": np.object_}
_SPECS = {s.name: s for s in contract.TTS_INPUTS}


@dataclass(frozen=True)
class SynthesisOptions:
    """Per-request sampling options; None leaves the server's default."""

    nfe_step: int | None = None
    cfg_strength: float | None = None
    sway_sampling_coef: float | None = None
    speed: float | None = None
    seed: int | None = None
    duration: float | None = None  # total seconds incl. the reference
    first_chunk_chars: int | None = None  # streaming: UTF-8 bytes of the first text chunk (0 = f5-tts's chunking)


def build_inputs(
    reference_audio: np.ndarray | None,
    sample_rate: int | None,
    reference_text: str | None,
    text: str,
    options: SynthesisOptions = SynthesisOptions(),
    voice: str | None = None,
) -> dict[str, np.ndarray]:
    """Input tensors keyed by contract name, each with the leading batch dimension of 1.

    Either a reference (audio [channels, samples] or [samples], its rate, its transcript) or
    the name of a voice registered on the server.
    """
    if (voice is None) == (reference_audio is None):
        raise ValueError("give either reference audio (with its sample rate and transcript) or a registered voice")
    if voice is None and (sample_rate is None or reference_text is None):
        raise ValueError("reference audio needs its sample rate and its transcript")
    audio = None
    if reference_audio is not None:
        audio = np.asarray(reference_audio, dtype=np.float32)
        if audio.ndim == 1:
            audio = audio[None]
    values = {
        contract.REFERENCE_AUDIO: audio,
        contract.REFERENCE_SAMPLE_RATE: None if voice else [sample_rate],
        contract.REFERENCE_TEXT: None if voice else [reference_text.encode("utf-8")],
        contract.VOICE: None if voice is None else [voice.encode("utf-8")],
        contract.TARGET_TEXT: [text.encode("utf-8")],
        contract.NFE_STEP: options.nfe_step,
        contract.CFG_STRENGTH: options.cfg_strength,
        contract.SWAY_SAMPLING_COEF: options.sway_sampling_coef,
        contract.SPEED: options.speed,
        contract.SEED: options.seed,
        contract.DURATION: options.duration,
        contract.FIRST_CHUNK_CHARS: options.first_chunk_chars,
    }
    tensors = {}
    for name, value in values.items():
        if value is None:
            continue
        if not isinstance(value, (list, np.ndarray)):
            value = [value]
        tensors[name] = np.asarray(value, dtype=_NUMPY[_SPECS[name].dtype])[None]
    return tensors


def triton_dtype(name: str) -> str:
    return _SPECS[name].dtype


def grpc_inputs(tensors: dict[str, np.ndarray]):
    import tritonclient.grpc as grpcclient

    out = []
    for name, array in tensors.items():
        inp = grpcclient.InferInput(name, list(array.shape), triton_dtype(name))
        inp.set_data_from_numpy(array)
        out.append(inp)
    return out


def http_inputs(tensors: dict[str, np.ndarray], binary: bool = True):
    import tritonclient.http as httpclient

    out = []
    for name, array in tensors.items():
        inp = httpclient.InferInput(name, list(array.shape), triton_dtype(name))
        inp.set_data_from_numpy(array, binary_data=binary)
        out.append(inp)
    return out


def perf_analyzer_entry(tensors: dict[str, np.ndarray]) -> dict:
    """One perf_analyzer --input-data entry: floats written as floats, shapes without the batch dim."""
    entry = {}
    for name, array in tensors.items():
        sample = array[0]
        if array.dtype == np.object_:
            content = [v.decode("utf-8") for v in sample.reshape(-1)]
        elif array.dtype == np.float32:
            # shortest decimal that round-trips the float32 value, as a JSON float (1.0, not 1)
            content = [float(np.format_float_positional(v, unique=True)) for v in sample.reshape(-1)]
        else:
            content = [int(v) for v in sample.reshape(-1)]
        entry[name] = {"content": content, "shape": list(sample.shape)}
    return entry


def generate_body(tensors: dict[str, np.ndarray]) -> dict:
    """The JSON body of Triton's generate / generate_stream endpoints: one value per input.

    That endpoint reads a list as a 1-D tensor, so reference audio travels flat, channel after
    channel, with its channel count beside it: the server unflattens it and downmixes after
    f5-tts's silence trimming, as for a gRPC request (averaging here would change the audio).
    """
    body = {}
    for name, array in tensors.items():
        sample = array[0]
        if name == contract.REFERENCE_AUDIO:
            body[name] = [float(np.format_float_positional(v, unique=True)) for v in sample.reshape(-1)]
            if sample.shape[0] > 1:
                body[contract.REFERENCE_CHANNELS] = int(sample.shape[0])
        elif array.dtype == np.object_:
            body[name] = sample.reshape(-1)[0].decode("utf-8")
        else:
            body[name] = sample.reshape(-1)[0].item()
    return body


def http_json_body(tensors: dict[str, np.ndarray]) -> dict:
    """The KServe v2 JSON body of an HTTP infer request (what `curl -d @request.json` sends)."""
    inputs = []
    for name, array in tensors.items():
        entry = perf_analyzer_entry({name: array})[name]
        inputs.append(
            {"name": name, "shape": list(array.shape), "datatype": triton_dtype(name), "data": entry["content"]}
        )
    return {"inputs": inputs}
