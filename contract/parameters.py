"""The served models' parameters: every knob, declared once with its type, default, range and flag.

Each field below is a config.pbtxt parameter, which Triton hands to the model as a string. The
declaration says everything else: the export's CLI flag and help (`add_arguments` derives the
flags), the choices or lower bound (`check`), and a default per device where CPU and GPU differ
(`for_device`). `python -m export` writes a filled-in `TtsParameters` with `to_triton`, the model
parses it back whole with `from_triton` and hands it to the synthesizer, and the gateway reads
the served model's with the same class. A new knob is a field here and the code that uses it.

Dependency-free, as the rest of `contract`: clients import it without torch.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from contract import (
    COMPILE_CACHE_DIR,
    DEFAULTS,
    DTYPES,
    LIMITS,
    MODEL_VERSION,
    STREAM_FIRST_CHUNK_CHARS,
    TORCH_VOCOS_DIR,
    TRANSCRIBER_MODEL,
    TTS_MODEL,
    VOCODER_MODEL,
    VOCODER_ONNX_FILE,
    VOICES_PARAMETER,
    WHISPER_DIR,
    Limits,
    SamplingDefaults,
    parse_voice_list,
)

DEVICES = ("gpu", "cpu")
ENGINES = ("eager", "compiled")
# f5_tts's in-process vocoder: the ONNX file under onnxruntime, or PyTorch Vocos where the mels
# are (GPU: no host round trip, no onnxruntime-gpu needed).
VOCODER_RUNTIMES = ("onnx", "torch")
# Total frames (reference + generated) a chunk is padded up to. f5-tts's chunking keeps
# reference + chunk near 22 s (2063 frames); steps of 256 frames (2.7 s) bound the padding,
# and 2304 frames (24.6 s) leaves room for fast speakers. Longer chunks (an explicit
# `duration`) run eagerly.
DEFAULT_LENGTH_BUCKETS = tuple(range(256, 2304 + 1, 256))

# Parameters Triton itself interprets; allowed beside ours.
_TRITON_RESERVED = {"EXECUTION_ENV_PATH"}


class ParameterError(ValueError):
    pass


def parse_buckets(text: str) -> tuple[int, ...]:
    """'256,512,...' -> sorted unique frame counts, each > 0."""
    try:
        buckets = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise ParameterError(f"length buckets must be comma-separated frame counts, got {text!r}") from None
    if not buckets or buckets[0] < 1:
        raise ParameterError(f"length buckets must be positive frame counts, got {text!r}")
    return tuple(buckets)


def format_buckets(buckets: tuple[int, ...]) -> str:
    return ",".join(str(b) for b in buckets)


def _normalized_buckets(text: str) -> str:
    return format_buckets(parse_buckets(text))


def knob(
    default,
    help: str,
    *,
    flag: str | None = None,
    choices: tuple[str, ...] = (),
    minimum: float | None = None,
    above: float | None = None,
    per_device: Mapping[str, Any] | None = None,
    normalize: Callable[[str], str] | None = None,
    group: str = "serving",
    metavar: str | None = None,
):
    """A parameter the export sets from its CLI. `flag`: the option's name (default: --field-name; a
    boolean that defaults to true gets --no-field-name). `minimum` (>=) or `above` (>) bound a number;
    `per_device` gives the defaults where CPU and GPU differ (the field's default is the GPU one);
    `normalize` checks and canonicalizes a text value."""
    return dataclasses.field(
        default=default,
        metadata=dict(
            help=help,
            flag=flag,
            choices=choices,
            minimum=minimum,
            above=above,
            per_device=per_device,
            normalize=normalize,
            group=group,
            metavar=metavar,
            cli=True,
        ),
    )


def fixed(default, help: str = ""):
    """A parameter the export fills in itself (a path, the model's name), never a flag."""
    return dataclasses.field(default=default, metadata=dict(help=help, cli=False))


class _Parameters:
    """What every parameter set shares: parse from Triton's strings, write them, check the declared bounds."""

    @classmethod
    def from_triton(cls, raw: Mapping[str, Any], *, strict: bool = True):
        """Parse config.pbtxt's parameters (Triton's {"key": {"string_value": ...}} or plain strings). An
        unknown parameter is an error unless not `strict` (a reader of another version's repository)."""
        values = {k: (v.get("string_value", "") if isinstance(v, Mapping) else str(v)) for k, v in raw.items()}
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields) - _TRITON_RESERVED)
        if not strict:
            values = {k: v for k, v in values.items() if k in fields}
        elif unknown:
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
                raise ParameterError(
                    f"model parameter '{name}' = {text!r} is not a valid {kind.__name__}: {e}"
                ) from None
        self = cls(**parsed)
        self.check()
        return self

    def to_triton(self, omit_empty: tuple[str, ...] = ()) -> dict[str, str]:
        """The config.pbtxt parameters that `from_triton` parses back into `self`: every field as a string,
        booleans as true/false; fields named in `omit_empty` only when set."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {
            name: str(value).lower() if isinstance(value, bool) else str(value)
            for name, value in values.items()
            if value != "" or name not in omit_empty
        }

    def check(self) -> None:
        """Raise ParameterError naming the first field outside its declared choices or bounds."""
        for f in dataclasses.fields(self):
            value, meta = getattr(self, f.name), f.metadata
            if meta.get("choices") and value not in meta["choices"]:
                raise ParameterError(f"model parameter '{f.name}' = {value!r}; allowed: {', '.join(meta['choices'])}")
            if meta.get("above") is not None and not value > meta["above"]:
                raise ParameterError(f"model parameter '{f.name}' = {value}; must be > {meta['above']:g}")
            if meta.get("minimum") is not None and not value >= meta["minimum"]:
                raise ParameterError(f"model parameter '{f.name}' = {value}; must be >= {meta['minimum']:g}")
            if meta.get("normalize"):
                try:
                    meta["normalize"](value)
                except ParameterError as e:
                    raise ParameterError(f"model parameter '{f.name}': {e}") from None


@dataclass(frozen=True)
class TtsParameters(_Parameters):
    """f5_tts's parameters."""

    dtype: str = knob(
        DTYPES[0],
        "DiT weights as stored and run: {per_device}; on CPU half precision measured no "
        "faster than fp32 and far from its audio (docs/benchmarks.md)",
        choices=DTYPES,
        per_device={"gpu": "fp16", "cpu": "fp32"},
    )
    max_batch_chunks: int = knob(
        16,
        "text chunks sampled together in one DiT call: {per_device}; on CPU padded "
        "batches measured slower than one chunk at a time (docs/benchmarks.md)",
        minimum=1,
        per_device={"gpu": 16, "cpu": 1},
    )
    reference_cache_size: int = knob(
        32, "preprocessed references kept per instance, by content hash (LRU; 0 = off; default: %(default)s)", minimum=0
    )
    engine: str = knob(
        ENGINES[0],
        "eager: f5-tts's DiT as is; compiled: torch.compile on length buckets, compiled "
        "at model load, with CUDA graphs per (batch size, bucket) on gpu (default: %(default)s)",
        choices=ENGINES,
    )
    length_buckets: str = knob(
        format_buckets(DEFAULT_LENGTH_BUCKETS),
        "compiled engine: total frames (reference + "
        "speech, 93.75 per second) a chunk is padded up to; longer chunks run eagerly "
        "(default: %(default)s)",
        normalize=_normalized_buckets,
        metavar="FRAMES,...",
    )
    cuda_graphs: bool = knob(True, "compiled engine on gpu: no CUDA graph capture")
    vocoder_runtime: str = knob(
        VOCODER_RUNTIMES[0],
        "f5_tts's in-process vocoder: torch (PyTorch Vocos on the "
        f"device) or onnx ({VOCODER_ONNX_FILE} under onnxruntime): {{per_device}}",
        choices=VOCODER_RUNTIMES,
        per_device={"gpu": "torch", "cpu": "onnx"},
    )
    max_target_text_bytes: int = knob(
        LIMITS.max_target_text_bytes,
        "UTF-8 bytes of target text per request (default: %(default)s)",
        flag="--max-text-bytes",
        above=0,
        group="limits",
    )
    max_reference_seconds: float = knob(
        LIMITS.max_reference_seconds,
        f"longest reference upload; it is clipped to {LIMITS.reference_clip_seconds:g} s anyway (default: %(default)s)",
        above=LIMITS.min_reference_seconds,
        group="limits",
    )
    max_audio_seconds: float = knob(
        LIMITS.max_audio_seconds,
        "largest `duration` and longest text chunk, reference included (default: %(default)s)",
        above=0,
        group="limits",
    )
    default_nfe_step: int = knob(
        DEFAULTS.nfe_step, "ODE steps (default: %(default)s)", flag="--nfe-step", group="sampling"
    )
    default_cfg_strength: float = knob(
        DEFAULTS.cfg_strength,
        "classifier-free guidance (default: %(default)s)",
        flag="--cfg-strength",
        group="sampling",
    )
    default_sway_sampling_coef: float = knob(
        DEFAULTS.sway_sampling_coef,
        "sway sampling (default: %(default)s)",
        flag="--sway-sampling-coef",
        group="sampling",
    )
    default_speed: float = knob(DEFAULTS.speed, "speech rate (default: %(default)s)", flag="--speed", group="sampling")
    cancel_poll_ms: float = knob(
        50.0,
        "how often, at most, a batch asks Triton whether its requests were "
        "cancelled, between ODE steps (0 = at every step; default: %(default)s)",
        minimum=0,
    )
    demo_model: bool = fixed(False, "exported with --demo-tiny: random weights, noise")
    f5_model_name: str = fixed("unknown", "f5-tts's config name of the checkpoint")
    vocoder_file: str = fixed(f"../{VOCODER_MODEL}/{MODEL_VERSION}/{VOCODER_ONNX_FILE}")
    torch_vocoder_dir: str = fixed(f"../{VOCODER_MODEL}/{MODEL_VERSION}/{TORCH_VOCOS_DIR}")
    compile_cache_dir: str = fixed(COMPILE_CACHE_DIR, "TorchInductor's cache; relative to the model directory")
    voices: str = fixed("", "registered voice names, comma-separated (its name is contract.VOICES_PARAMETER)")
    transcriber_model: str = fixed(
        "", f"the model that transcribes references sent without a transcript ({TRANSCRIBER_MODEL}); empty: none"
    )

    def check(self) -> None:
        super().check()
        for name, (low, high) in [
            ("nfe_step", LIMITS.nfe_step),
            ("cfg_strength", LIMITS.cfg_strength),
            ("sway_sampling_coef", LIMITS.sway_sampling_coef),
            ("speed", LIMITS.speed),
        ]:
            value = getattr(self, f"default_{name}")
            if not low <= value <= high:
                raise ParameterError(f"--{name.replace('_', '-')} {value} is outside [{low}, {high}]")

    @classmethod
    def for_device(cls, device: str, **values) -> "TtsParameters":
        """The parameters for instances of `device`: the declared per-device defaults where `values`
        gives none (or None)."""
        if device not in DEVICES:
            raise ParameterError(f"device must be cpu or gpu, got {device!r}")
        values = {k: v for k, v in values.items() if v is not None}
        for f in dataclasses.fields(cls):
            if f.metadata.get("per_device") and f.name not in values:
                values[f.name] = f.metadata["per_device"][device]
        return cls(**values)

    @property
    def buckets(self) -> tuple[int, ...]:
        return parse_buckets(self.length_buckets)

    @property
    def voice_names(self) -> tuple[str, ...]:
        return parse_voice_list(self.voices)

    @property
    def limits(self) -> Limits:
        return dataclasses.replace(
            LIMITS,
            max_target_text_bytes=self.max_target_text_bytes,
            max_reference_seconds=self.max_reference_seconds,
            max_audio_seconds=self.max_audio_seconds,
        )

    @property
    def defaults(self) -> SamplingDefaults:
        return SamplingDefaults(
            self.default_nfe_step, self.default_cfg_strength, self.default_sway_sampling_coef, self.default_speed
        )


assert VOICES_PARAMETER in {f.name for f in dataclasses.fields(TtsParameters)}


@dataclass(frozen=True)
class StreamParameters(_Parameters):
    """f5_tts_stream's parameters."""

    tts_model: str = fixed(TTS_MODEL, "the model each chunk is sent to")
    first_chunk_chars: int = fixed(STREAM_FIRST_CHUNK_CHARS, "when the request does not say")

    def check(self) -> None:
        super().check()
        if self.first_chunk_chars < 0:
            raise ParameterError(f"model parameter 'first_chunk_chars' = {self.first_chunk_chars}; must be >= 0")


@dataclass(frozen=True)
class VocoderParameters(_Parameters):
    """vocoder's parameters."""

    onnx_file: str = fixed(VOCODER_ONNX_FILE)


@dataclass(frozen=True)
class TranscriberParameters(_Parameters):
    """transcriber's parameters."""

    whisper_dir: str = fixed(WHISPER_DIR, "the Whisper's files, relative to the version directory")
    asr_model: str = fixed("", "the Whisper exported: a hub name or the local directory it came from")
    max_reference_seconds: float = fixed(LIMITS.max_reference_seconds, "longest audio accepted (f5_tts's limit)")


# --- the export's flags, derived from the declarations -----------------------------------------------

GROUPS = {
    "serving": "serving",
    "limits": "request limits (answered with INVALID_ARG beyond them)",
    "sampling": "default sampling options (requests may override them)",
}


def _flag(f: dataclasses.Field) -> str:
    if f.metadata.get("flag"):
        return f.metadata["flag"]
    name = f.name.replace("_", "-")
    return f"--no-{name}" if f.default is True else f"--{name}"


def flag_of(name: str, cls=TtsParameters) -> str:
    """The export flag that sets parameter `name`."""
    return _flag(next(f for f in dataclasses.fields(cls) if f.name == name))


def _help(f: dataclasses.Field) -> str:
    per_device = f.metadata.get("per_device")
    text = f.metadata["help"]
    if per_device:
        text = text.replace("{per_device}", "default " + ", ".join(f"{v} on {d}" for d, v in per_device.items()))
    return text


def add_arguments(parser: argparse.ArgumentParser, cls=TtsParameters, groups: Mapping[str, Any] | None = None) -> None:
    """One flag per `knob` of `cls`, in its group (`groups` may hand over argument groups the parser already
    has); a flag left out parses as None (the declared default, resolved per device by `for_device`)."""
    groups = {key: (groups or {}).get(key) or parser.add_argument_group(title) for key, title in GROUPS.items()}
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if not meta.get("cli"):
            continue
        group = groups[meta["group"]]
        if isinstance(f.default, bool):
            group.add_argument(
                _flag(f), dest=f.name, action="store_false" if f.default else "store_true", default=None, help=_help(f)
            )
            continue
        kind = type(f.default)

        def parse(text: str, kind=kind, normalize=meta.get("normalize")):
            try:
                return normalize(text) if normalize else kind(text)
            except ValueError as e:
                raise argparse.ArgumentTypeError(str(e)) from None

        parse.__name__ = kind.__name__  # argparse's "invalid int value" message
        group.add_argument(
            _flag(f),
            dest=f.name,
            type=parse,
            default=None,
            choices=meta.get("choices") or None,
            metavar=meta.get("metavar") or _flag(f).lstrip("-").replace("-", "_").upper(),
            help=_help(f).replace("%(default)s", str(f.default)),
        )


def from_arguments(args: argparse.Namespace, cls=TtsParameters) -> dict[str, Any]:
    """The values `add_arguments`' flags were given (None where left out)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if f.metadata.get("cli")}
