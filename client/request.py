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


def build_inputs(reference_audio: np.ndarray, sample_rate: int, reference_text: str, text: str,
                 options: SynthesisOptions = SynthesisOptions()) -> dict[str, np.ndarray]:
    """Input tensors keyed by contract name, each with the leading batch dimension of 1."""
    audio = np.asarray(reference_audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[None]
    values = {
        contract.REFERENCE_AUDIO: audio,
        contract.REFERENCE_SAMPLE_RATE: [sample_rate],
        contract.REFERENCE_TEXT: [reference_text.encode("utf-8")],
        contract.TARGET_TEXT: [text.encode("utf-8")],
        contract.NFE_STEP: options.nfe_step,
        contract.CFG_STRENGTH: options.cfg_strength,
        contract.SWAY_SAMPLING_COEF: options.sway_sampling_coef,
        contract.SPEED: options.speed,
        contract.SEED: options.seed,
        contract.DURATION: options.duration,
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


def http_json_body(tensors: dict[str, np.ndarray]) -> dict:
    """The KServe v2 JSON body of an HTTP infer request (what `curl -d @request.json` sends)."""
    inputs = []
    for name, array in tensors.items():
        entry = perf_analyzer_entry({name: array})[name]
        inputs.append({"name": name, "shape": list(array.shape), "datatype": triton_dtype(name),
                       "data": entry["content"]})
    return {"inputs": inputs}
