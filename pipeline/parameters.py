"""Model parameters from config.pbtxt, parsed once into frozen dataclasses.

Triton hands parameters over as strings; an unknown, empty or malformed one fails
initialize() with a message that names it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

import contract
from pipeline.buckets import DEFAULT_LENGTH_BUCKETS, ENGINES, EngineError, format_buckets, parse_buckets

# Parameters Triton itself interprets; allowed beside ours.
_TRITON_RESERVED = {"EXECUTION_ENV_PATH"}

# Text chunks sampled in one DiT call, by device: on CPU, padded batches measured 2-3x slower
# than one chunk at a time (docs/benchmarks.md).
DEFAULT_MAX_BATCH_CHUNKS = {"gpu": 16, "cpu": 1}
# DiT dtype by device: fp16 on GPU, as f5-tts's load_checkpoint runs it on CUDA devices of
# capability >= 7; CPU: see docs/benchmarks.md ("Half precision on CPU").
DEFAULT_DTYPE = {"gpu": "fp16", "cpu": "fp32"}
# f5_tts's in-process vocoder: the ONNX file under onnxruntime, or PyTorch Vocos where the mels
# are (GPU: no host round trip, no onnxruntime-gpu needed).
VOCODER_RUNTIMES = ("onnx", "torch")
DEFAULT_VOCODER_RUNTIME = {"gpu": "torch", "cpu": "onnx"}


class ParameterError(ValueError):
    pass


def _parse(cls, raw: Mapping[str, Any]):
    values = {k: (v.get("string_value", "") if isinstance(v, Mapping) else str(v)) for k, v in raw.items()}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields) - _TRITON_RESERVED)
    if unknown:
        raise ParameterError(f"unknown model parameter(s) {unknown}; known: {sorted(fields)}")
    parsed = {}
    for name, f in fields.items():
        if name not in values:
            continue
        text = values[name].strip()
        if not text:
            raise ParameterError(f"model parameter '{name}' is empty")
        kind = type(f.default)
        try:
            if kind is bool:
                if text.lower() not in ("true", "false"):
                    raise ValueError("expected true or false")
                parsed[name] = text.lower() == "true"
            else:
                parsed[name] = kind(text)
        except ValueError as e:
            raise ParameterError(f"model parameter '{name}' = {text!r} is not a valid {kind.__name__}: {e}") from None
    return cls(**parsed)


def to_triton(params, omit_empty: tuple[str, ...] = ()) -> dict[str, str]:
    """The config.pbtxt parameters that `from_triton` parses back into `params` (the export writes these):
    every field as a string, booleans as true/false; fields named in `omit_empty` only when set."""
    values = {f.name: getattr(params, f.name) for f in dataclasses.fields(params)}
    return {name: str(value).lower() if isinstance(value, bool) else str(value)
            for name, value in values.items() if value != "" or name not in omit_empty}


@dataclass(frozen=True)
class TtsParameters:
    dtype: str = contract.DTYPES[0]
    max_batch_chunks: int = DEFAULT_MAX_BATCH_CHUNKS["gpu"]
    demo_model: bool = False
    f5_model_name: str = "unknown"
    vocoder_file: str = f"../{contract.VOCODER_MODEL}/{contract.MODEL_VERSION}/{contract.VOCODER_ONNX_FILE}"
    vocoder_runtime: str = VOCODER_RUNTIMES[0]  # onnx: vocoder_file | torch: PyTorch Vocos in torch_vocoder_dir
    torch_vocoder_dir: str = f"../{contract.VOCODER_MODEL}/{contract.MODEL_VERSION}/{contract.TORCH_VOCOS_DIR}"
    engine: str = ENGINES[0]  # eager | compiled
    length_buckets: str = format_buckets(DEFAULT_LENGTH_BUCKETS)  # frames, comma-separated (compiled engine)
    cuda_graphs: bool = True  # compiled engine on a GPU instance: CUDA graphs per (batch size, bucket)
    compile_cache_dir: str = contract.COMPILE_CACHE_DIR  # TorchInductor's cache; relative to the model directory
    default_nfe_step: int = contract.DEFAULTS.nfe_step
    default_cfg_strength: float = contract.DEFAULTS.cfg_strength
    default_sway_sampling_coef: float = contract.DEFAULTS.sway_sampling_coef
    default_speed: float = contract.DEFAULTS.speed
    max_target_text_bytes: int = contract.LIMITS.max_target_text_bytes
    max_reference_seconds: float = contract.LIMITS.max_reference_seconds
    max_audio_seconds: float = contract.LIMITS.max_audio_seconds
    reference_cache_size: int = 32  # preprocessed references kept by content hash (LRU); 0 = off
    voices: str = ""  # registered voice names, comma-separated (its name is contract.VOICES_PARAMETER)

    @classmethod
    def from_triton(cls, raw: Mapping[str, Any]) -> "TtsParameters":
        self = _parse(cls, raw)
        if self.dtype not in contract.DTYPES:
            raise ParameterError(f"model parameter 'dtype' = {self.dtype!r}; allowed: {', '.join(contract.DTYPES)}")
        if self.engine not in ENGINES:
            raise ParameterError(f"model parameter 'engine' = {self.engine!r}; allowed: {', '.join(ENGINES)}")
        if self.vocoder_runtime not in VOCODER_RUNTIMES:
            raise ParameterError(f"model parameter 'vocoder_runtime' = {self.vocoder_runtime!r}; "
                                 f"allowed: {', '.join(VOCODER_RUNTIMES)}")
        try:
            parse_buckets(self.length_buckets)
        except EngineError as e:
            raise ParameterError(f"model parameter 'length_buckets': {e}") from None
        for name in ("max_batch_chunks", "max_target_text_bytes", "max_reference_seconds", "max_audio_seconds"):
            if getattr(self, name) <= 0:
                raise ParameterError(f"model parameter '{name}' = {getattr(self, name)}; must be > 0")
        if self.reference_cache_size < 0:
            raise ParameterError(f"model parameter 'reference_cache_size' = {self.reference_cache_size}; "
                                 "must be >= 0")
        return self

    @property
    def buckets(self) -> tuple[int, ...]:
        return parse_buckets(self.length_buckets)

    @property
    def voice_names(self) -> tuple[str, ...]:
        return contract.parse_voice_list(self.voices)

    @property
    def limits(self) -> contract.Limits:
        return dataclasses.replace(contract.LIMITS, max_target_text_bytes=self.max_target_text_bytes,
                                   max_reference_seconds=self.max_reference_seconds,
                                   max_audio_seconds=self.max_audio_seconds)

    @property
    def defaults(self) -> contract.SamplingDefaults:
        return contract.SamplingDefaults(self.default_nfe_step, self.default_cfg_strength,
                                         self.default_sway_sampling_coef, self.default_speed)


@dataclass(frozen=True)
class StreamParameters:
    tts_model: str = contract.TTS_MODEL  # the model each chunk is sent to
    first_chunk_chars: int = contract.STREAM_FIRST_CHUNK_CHARS  # when the request does not say

    @classmethod
    def from_triton(cls, raw: Mapping[str, Any]) -> "StreamParameters":
        self = _parse(cls, raw)
        if self.first_chunk_chars < 0:
            raise ParameterError(f"model parameter 'first_chunk_chars' = {self.first_chunk_chars}; must be >= 0")
        return self


@dataclass(frozen=True)
class VocoderParameters:
    onnx_file: str = contract.VOCODER_ONNX_FILE

    @classmethod
    def from_triton(cls, raw: Mapping[str, Any]) -> "VocoderParameters":
        return _parse(cls, raw)


def instance_device(args: Mapping[str, str]) -> str:
    """torch device string for a Triton model instance (KIND_GPU -> cuda:N)."""
    if args.get("model_instance_kind") == "GPU":
        return f"cuda:{args.get('model_instance_device_id', '0')}"
    return "cpu"
