"""config.pbtxt generated from one typed spec, through tritonclient's model_config_pb2.

The contract (contract/) names the tensors; ServingOptions holds what the export CLI
lets a user choose. Text is produced by protobuf itself and checked by a parse round trip,
so a config that Triton cannot read is never written.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Sequence

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

import contract
from pipeline.buckets import DEFAULT_LENGTH_BUCKETS, ENGINES, format_buckets
from pipeline.parameters import (DEFAULT_DTYPE, DEFAULT_MAX_BATCH_CHUNKS, DEFAULT_VOCODER_RUNTIME, VOCODER_RUNTIMES,
                                 StreamParameters, TtsParameters, VocoderParameters, to_triton)


@dataclass(frozen=True)
class ServingOptions:
    device: str = "cpu"  # cpu | gpu
    instances: int = 1
    max_batch_size: int = 8
    max_queue_delay_us: int = 5000
    dtype: str | None = None  # None: DEFAULT_DTYPE of the device
    engine: str = TtsParameters.engine  # eager | compiled (torch.compile on length buckets; CUDA graphs on GPU)
    length_buckets: tuple[int, ...] = DEFAULT_LENGTH_BUCKETS  # total frames a chunk is padded to (compiled)
    cuda_graphs: bool = TtsParameters.cuda_graphs  # compiled engine on GPU: a CUDA graph per (batch size, bucket)
    vocoder_runtime: str | None = None  # None: DEFAULT_VOCODER_RUNTIME of the device
    defaults: contract.SamplingDefaults = field(default_factory=contract.SamplingDefaults)
    max_batch_chunks: int | None = None  # None: DEFAULT_MAX_BATCH_CHUNKS of the device
    demo: bool = False
    model_name: str = "F5-TTS"
    warmup: bool = True  # Triton model_warmup with real speech before the model is READY
    limits: contract.Limits = field(default_factory=contract.Limits)
    reference_cache_size: int = TtsParameters.reference_cache_size  # preprocessed references per instance (LRU)

    def __post_init__(self) -> None:
        if self.max_batch_chunks is None:
            object.__setattr__(self, "max_batch_chunks", DEFAULT_MAX_BATCH_CHUNKS.get(self.device, 1))
        if self.dtype is None:
            object.__setattr__(self, "dtype", DEFAULT_DTYPE.get(self.device, "fp32"))
        if self.vocoder_runtime is None:
            object.__setattr__(self, "vocoder_runtime", DEFAULT_VOCODER_RUNTIME.get(self.device, "onnx"))

    def check(self) -> None:
        if self.device not in ("cpu", "gpu"):
            raise ValueError(f"device must be cpu or gpu, got {self.device!r}")
        if self.instances < 1:
            raise ValueError(f"instances must be >= 1, got {self.instances}")
        if not 1 <= self.max_batch_size <= 256:
            raise ValueError(f"max batch size must be in [1, 256], got {self.max_batch_size}")
        limits = self.limits
        if limits.max_target_text_bytes < 1 or limits.max_audio_seconds <= 0:
            raise ValueError("max text bytes and max audio seconds must be positive")
        if not limits.min_reference_seconds < limits.max_reference_seconds:
            raise ValueError(f"max reference seconds must exceed {limits.min_reference_seconds}")
        if self.max_batch_chunks < 1:
            raise ValueError(f"max batch chunks must be >= 1, got {self.max_batch_chunks}")
        if self.dtype not in contract.DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(contract.DTYPES)}, got {self.dtype!r}")
        if self.dtype != "fp32" and self.device == "cpu":
            raise ValueError(f"dtype {self.dtype} needs --device gpu: on CPU, half precision measured no faster than "
                             "fp32 and far from its audio (docs/benchmarks.md, section 6)")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if not self.length_buckets or min(self.length_buckets) < 1:
            raise ValueError(f"length buckets must be positive frame counts, got {self.length_buckets}")
        if self.vocoder_runtime not in VOCODER_RUNTIMES:
            raise ValueError(f"vocoder runtime must be one of {', '.join(VOCODER_RUNTIMES)}, "
                             f"got {self.vocoder_runtime!r}")
        for name, (low, high) in [("nfe_step", limits.nfe_step), ("cfg_strength", limits.cfg_strength),
                                  ("sway_sampling_coef", limits.sway_sampling_coef), ("speed", limits.speed)]:
            value = getattr(self.defaults, name)
            if not low <= value <= high:
                raise ValueError(f"--{name.replace('_', '-')} {value} is outside [{low}, {high}]")


_TYPES = {"FP32": pb.TYPE_FP32, "INT32": pb.TYPE_INT32, "INT64": pb.TYPE_INT64, "BYTES": pb.TYPE_STRING}

# Warm-up request made from real speech (the reference audio shipped with f5-tts).
WARMUP_NAME = "real_speech"
WARMUP_TARGET_TEXT = "Warming up the model."
WARMUP_NFE_STEP = 2  # warm-up primes kernels and allocators; the step count does not matter


def _io(spec: contract.TensorSpec, cls):
    msg = cls(name=spec.name, data_type=_TYPES[spec.dtype], dims=list(spec.dims))
    if cls is pb.ModelInput:
        msg.optional = spec.optional
        msg.allow_ragged_batch = spec.ragged
    return msg


def _instance_group(options: ServingOptions) -> pb.ModelInstanceGroup:
    kind = pb.ModelInstanceGroup.KIND_GPU if options.device == "gpu" else pb.ModelInstanceGroup.KIND_CPU
    return pb.ModelInstanceGroup(count=options.instances, kind=kind)


def _python_model(name: str, inputs, outputs, options: ServingOptions, parameters: dict[str, str]) -> pb.ModelConfig:
    cfg = pb.ModelConfig(
        name=name, backend="python", max_batch_size=options.max_batch_size,
        input=[_io(s, pb.ModelInput) for s in inputs],
        output=[_io(s, pb.ModelOutput) for s in outputs],
        instance_group=[_instance_group(options)],
        dynamic_batching=pb.ModelDynamicBatching(max_queue_delay_microseconds=options.max_queue_delay_us),
    )
    for key, value in parameters.items():
        cfg.parameters[key].string_value = value
    return cfg


def tts_config(options: ServingOptions, warmup_dims: dict[str, list[int]] | None,
               voices: Sequence[str] = ()) -> pb.ModelConfig:
    d, limits = options.defaults, options.limits
    parameters = TtsParameters(
        dtype=options.dtype, max_batch_chunks=options.max_batch_chunks, demo_model=options.demo,
        f5_model_name=options.model_name, default_nfe_step=d.nfe_step, default_cfg_strength=d.cfg_strength,
        default_sway_sampling_coef=d.sway_sampling_coef, default_speed=d.speed,
        max_target_text_bytes=limits.max_target_text_bytes, max_reference_seconds=limits.max_reference_seconds,
        max_audio_seconds=limits.max_audio_seconds, reference_cache_size=options.reference_cache_size,
        engine=options.engine, length_buckets=format_buckets(options.length_buckets), cuda_graphs=options.cuda_graphs,
        vocoder_runtime=options.vocoder_runtime,
        voices=contract.format_voice_list(voices))
    cfg = _python_model(contract.TTS_MODEL, contract.TTS_INPUTS, contract.TTS_OUTPUTS, options,
                        to_triton(parameters, omit_empty=(contract.VOICES_PARAMETER,)))
    if warmup_dims is not None and options.warmup:
        warm = pb.ModelWarmup(name=WARMUP_NAME, batch_size=1)
        for spec in contract.TTS_INPUTS:
            if spec.name in warmup_dims:
                warm.inputs[spec.name].CopyFrom(pb.ModelWarmup.Input(
                    data_type=_TYPES[spec.dtype], dims=warmup_dims[spec.name], input_data_file=spec.name))
        cfg.model_warmup.append(warm)
    return cfg


def stream_config(options: ServingOptions) -> pb.ModelConfig:
    """Decoupled and weightless: one CPU instance whose threads feed f5_tts chunk by chunk."""
    cfg = _python_model(contract.STREAM_MODEL, contract.STREAM_INPUTS, contract.STREAM_OUTPUTS,
                        dataclasses.replace(options, device="cpu", instances=1, max_queue_delay_us=0),
                        to_triton(StreamParameters()))
    cfg.model_transaction_policy.decoupled = True
    return cfg


def vocoder_config(options: ServingOptions) -> pb.ModelConfig:
    return _python_model(contract.VOCODER_MODEL, contract.VOCODER_INPUTS, contract.VOCODER_OUTPUTS, options,
                         to_triton(VocoderParameters()))


def to_pbtxt(config: pb.ModelConfig) -> str:
    text = text_format.MessageToString(config)
    parsed = text_format.Parse(text, pb.ModelConfig())
    if parsed != config:  # never write what Triton would read differently
        raise AssertionError(f"config.pbtxt for {config.name} does not round-trip through model_config_pb2")
    return text
