"""One request builder for gRPC, HTTP and perf_analyzer JSON: f5_tts's inputs and the transcriber's."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import contract

_NUMPY = {"FP32": np.float32, "INT32": np.int32, "INT64": np.int64, "BYTES": np.object_, "BOOL": np.bool_}
# Every input either model takes, by name: the inputs they share (the reference audio, its rate and
# channels) have one dtype in both.
_SPECS = {s.name: s for s in (*contract.TRANSCRIBER_INPUTS, *contract.TTS_INPUTS)}


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
    measure_words: bool | None = None  # captions: word times heard by the transcriber, not estimated


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
    the name of a voice registered on the server. A reference sent without its transcript (None or
    "") goes without `reference_text`: the server transcribes it (its repository needs a
    transcriber model).
    """
    if (voice is None) == (reference_audio is None):
        raise ValueError("give either reference audio (with its sample rate, and its transcript) or a registered voice")
    if voice is None and sample_rate is None:
        raise ValueError("reference audio needs its sample rate")
    if voice is not None and reference_text:
        raise ValueError("a registered voice has its own transcript; send no reference text with it")
    values = {
        contract.REFERENCE_AUDIO: None if reference_audio is None else _audio(reference_audio),
        contract.REFERENCE_SAMPLE_RATE: None if voice else [sample_rate],
        # Absent rather than empty: one form on the wire for "transcribe it" (the server takes both).
        contract.REFERENCE_TEXT: [reference_text.encode("utf-8")] if reference_text else None,
        contract.VOICE: None if voice is None else [voice.encode("utf-8")],
        contract.TARGET_TEXT: [text.encode("utf-8")],
        contract.NFE_STEP: options.nfe_step,
        contract.CFG_STRENGTH: options.cfg_strength,
        contract.SWAY_SAMPLING_COEF: options.sway_sampling_coef,
        contract.SPEED: options.speed,
        contract.SEED: options.seed,
        contract.DURATION: options.duration,
        contract.FIRST_CHUNK_CHARS: options.first_chunk_chars,
        contract.MEASURE_WORDS: options.measure_words,
    }
    return _tensors(values)


def transcription_inputs(
    audio: np.ndarray, sample_rate: int, language: str | None = None, as_reference: bool = False
) -> dict[str, np.ndarray]:
    """The transcriber's input tensors, batch dimension first. `language`: a Whisper code, None (or
    "") for Whisper's detection; `as_reference`: transcribe the part of the audio f5_tts keeps of a
    reference (clipped at a pause, silence trimmed), the transcript a request would need."""
    if sample_rate is None:
        raise ValueError("audio to transcribe needs its sample rate")
    return _tensors(
        {
            contract.REFERENCE_AUDIO: _audio(audio),
            contract.REFERENCE_SAMPLE_RATE: [sample_rate],
            contract.LANGUAGE: [language.encode("utf-8")] if language else None,
            contract.AS_REFERENCE: [True] if as_reference else None,
        }
    )


def _audio(audio) -> np.ndarray:
    """float32 [channels, samples] (a 1-D array is one channel)."""
    audio = np.asarray(audio, dtype=np.float32)
    return audio[None] if audio.ndim == 1 else audio


def _tensors(values: dict) -> dict[str, np.ndarray]:
    """Each given value as its input's dtype with the leading batch dimension of 1; None: not sent."""
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
