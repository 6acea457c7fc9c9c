"""config.pbtxt generated from one typed spec, through tritonclient's model_config_pb2.

The contract (contract/) names the tensors and declares the models' parameters; ServingOptions
holds what the export CLI lets a user choose. Text is produced by protobuf itself and checked by a
parse round trip, so a config that Triton cannot read is never written.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

import contract
from contract.parameters import DEVICES, StreamParameters, TranscriberParameters, TtsParameters, VocoderParameters


@dataclass(frozen=True)
class ServingOptions:
    """What Triton itself is told (instance group, dynamic batching, warm-up) and, whole, f5_tts's
    parameters (contract/parameters.py declares each with its flag, default and range)."""

    device: str = "cpu"  # cpu | gpu: the instance kind
    instances: int = 1
    max_batch_size: int = 8
    max_queue_delay_us: int = 5000
    warmup: bool = True  # Triton model_warmup with real speech before the model is READY
    tts: TtsParameters | None = None  # None: the declared defaults for `device`

    def __post_init__(self) -> None:
        if self.tts is None:
            object.__setattr__(self, "tts", TtsParameters.for_device(self.device if self.device in DEVICES else "cpu"))

    @classmethod
    def create(cls, device: str = "cpu", **values) -> "ServingOptions":
        """Triton-level fields by their names here, f5_tts's parameters by theirs (None: the device's default)."""
        own = {f.name for f in dataclasses.fields(cls)} - {"device", "tts"}
        triton = {k: values.pop(k) for k in list(values) if k in own}
        return cls(
            device=device, tts=TtsParameters.for_device(device if device in DEVICES else "cpu", **values), **triton
        )

    def check(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"device must be cpu or gpu, got {self.device!r}")
        if self.instances < 1:
            raise ValueError(f"instances must be >= 1, got {self.instances}")
        if not 1 <= self.max_batch_size <= 256:
            raise ValueError(f"max batch size must be in [1, 256], got {self.max_batch_size}")
        self.tts.check()
        if self.tts.dtype != "fp32" and self.device == "cpu":
            raise ValueError(
                f"dtype {self.tts.dtype} needs --device gpu: on CPU, half precision measured no faster "
                "than fp32 and far from its audio (docs/benchmarks.md, section 6)"
            )

    def manifest(self) -> dict:
        """Every option, flat, as the manifest records them."""
        return {
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "tts"},
            **dataclasses.asdict(self.tts),
        }


_TYPES = {
    "BOOL": pb.TYPE_BOOL,
    "FP32": pb.TYPE_FP32,
    "INT32": pb.TYPE_INT32,
    "INT64": pb.TYPE_INT64,
    "BYTES": pb.TYPE_STRING,
}

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
        name=name,
        backend="python",
        max_batch_size=options.max_batch_size,
        input=[_io(s, pb.ModelInput) for s in inputs],
        output=[_io(s, pb.ModelOutput) for s in outputs],
        instance_group=[_instance_group(options)],
        dynamic_batching=pb.ModelDynamicBatching(max_queue_delay_microseconds=options.max_queue_delay_us),
    )
    for key, value in parameters.items():
        cfg.parameters[key].string_value = value
    return cfg


def tts_config(
    options: ServingOptions,
    warmup_dims: dict[str, list[int]] | None,
    voices: Sequence[str] = (),
    name: str = contract.TTS_MODEL,
) -> pb.ModelConfig:
    parameters = dataclasses.replace(options.tts, voices=contract.format_voice_list(voices))
    cfg = _python_model(
        name,
        contract.TTS_INPUTS,
        contract.TTS_OUTPUTS,
        options,
        parameters.to_triton(omit_empty=(contract.VOICES_PARAMETER, "transcriber_model")),
    )
    if warmup_dims is not None and options.warmup:
        warm = pb.ModelWarmup(name=WARMUP_NAME, batch_size=1)
        for spec in contract.TTS_INPUTS:
            if spec.name in warmup_dims:
                warm.inputs[spec.name].CopyFrom(
                    pb.ModelWarmup.Input(
                        data_type=_TYPES[spec.dtype], dims=warmup_dims[spec.name], input_data_file=spec.name
                    )
                )
        cfg.model_warmup.append(warm)
    return cfg


def stream_config(options: ServingOptions, tts_model: str = contract.TTS_MODEL) -> pb.ModelConfig:
    """Decoupled and weightless: one CPU instance whose threads feed `tts_model` chunk by chunk."""
    cfg = _python_model(
        contract.stream_model_name(tts_model),
        contract.STREAM_INPUTS,
        contract.STREAM_OUTPUTS,
        dataclasses.replace(options, device="cpu", instances=1, max_queue_delay_us=0),
        StreamParameters(tts_model=tts_model).to_triton(),
    )
    cfg.model_transaction_policy.decoupled = True
    return cfg


def vocoder_config(options: ServingOptions, name: str = contract.VOCODER_MODEL) -> pb.ModelConfig:
    return _python_model(
        name,
        contract.VOCODER_INPUTS,
        contract.VOCODER_OUTPUTS,
        options,
        VocoderParameters().to_triton(),
    )


def transcriber_config(options: ServingOptions, asr_source: str) -> pb.ModelConfig:
    """On the export's device (Whisper fp16 on GPU, as f5-tts runs it), one instance: f5_tts asks it
    only for references it has not heard before."""
    parameters = TranscriberParameters(asr_model=asr_source, max_reference_seconds=options.tts.max_reference_seconds)
    return _python_model(
        contract.TRANSCRIBER_MODEL,
        contract.TRANSCRIBER_INPUTS,
        contract.TRANSCRIBER_OUTPUTS,
        dataclasses.replace(options, instances=1),
        parameters.to_triton(),
    )


def to_pbtxt(config: pb.ModelConfig) -> str:
    text = text_format.MessageToString(config)
    parsed = text_format.Parse(text, pb.ModelConfig())
    if parsed != config:  # never write what Triton would read differently
        raise AssertionError(f"config.pbtxt for {config.name} does not round-trip through model_config_pb2")
    return text
