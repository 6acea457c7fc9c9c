"""A request's options and reference, checked once for every door: the gateway's JSON body, the RunPod
job's JSON input and the server's input tensors (pipeline/requests.py).

Each check states the option's type or range and raises OptionError with the message sent back: what
was wrong and what is allowed. The caller says how the option is named where it came from (`'speed'`
in JSON, `input 'speed'` for a tensor, `the uploaded audio 'ref.wav'` for a file) and turns the error
into its own answer (a 400, a job error, INVALID_ARG).

Dependency-free at import, as the rest of `contract` (clients import it without numpy); numpy is
imported only where reference samples are looked at.
"""

from __future__ import annotations

import math
import re
from typing import Any

from contract import LIMITS, TTS_INPUTS, VOICE_NAME_PATTERN, Limits

# The model's inputs by name: the JSON type of a sampling option follows its tensor's dtype.
DTYPES = {s.name: s.dtype for s in TTS_INPUTS}
INTEGER_RANGES = {"INT32": (-(2**31), 2**31 - 1), "INT64": (-(2**63), 2**63 - 1)}
_VOICE_NAME = re.compile(VOICE_NAME_PATTERN)


class OptionError(ValueError):
    """An option or reference that cannot be used. `name`: the option it is about, where one is."""

    def __init__(self, message: str, name: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.name = name
        self.code = code  # a machine-readable reason where the caller's API has one (OpenAI's codes)


def type_name(value: Any) -> str:
    """A value's type as JSON names it."""
    return {
        dict: "object",
        list: "array",
        str: "string",
        bool: "boolean",
        int: "integer",
        float: "number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


# --- JSON values -----------------------------------------------------------------------------------


def string(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise OptionError(f"'{name}' must be a string, got {type_name(value)}", name)
    return value


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise OptionError(f"'{name}' must be true or false, got {type_name(value)} {value!r}", name)
    return value


def number(name: str, value: Any, *, finite: bool = True) -> float:
    """A JSON number (not a boolean). finite=False leaves NaN and infinities to a range check further on
    (the server's, for the RunPod worker), which names them with the range allowed."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (finite and not math.isfinite(value)):
        raise OptionError(
            f"'{name}' must be a {'finite ' if finite else ''}number, got {type_name(value)} {value!r}", name
        )
    return float(value)


def integer(name: str, value: Any, dtype: str) -> int:
    """A JSON integer within the range of the tensor dtype it is sent as."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise OptionError(f"'{name}' must be an integer, got {type_name(value)} {value!r}", name)
    low, high = INTEGER_RANGES[dtype]
    if not low <= value <= high:
        raise OptionError(f"'{name}' is {value}, outside the {dtype} range [{low}, {high}]", name)
    return value


def sampling_option(name: str, value: Any, *, finite: bool = True) -> int | float:
    """One of the model's sampling options (nfe_step, seed, speed...) as JSON carries it: typed as its
    tensor is. Its range is the server's to check: an export may change it."""
    dtype = DTYPES[name]
    if dtype == "BOOL":
        return boolean(name, value)
    return integer(name, value, dtype) if dtype in INTEGER_RANGES else number(name, value, finite=finite)


# --- ranges and texts, however the option arrived ---------------------------------------------------


def caption_format(name: str, value: Any) -> str:
    """Which captions file a JSON request asks for beside its audio (contract/captions.py)."""
    from contract.captions import FORMATS

    if value not in FORMATS:
        raise OptionError(f"'{name}' is {value!r}; allowed: {', '.join(map(repr, FORMATS))}", name)
    return value


def check_range(subject: str, value, bounds: tuple, *, unit: str = "", name: str | None = None):
    """`subject` is value[unit]; allowed range is [low, high]. NaN is outside every range."""
    low, high = bounds
    if not (isinstance(value, int) or math.isfinite(value)) or not low <= value <= high:
        raise OptionError(f"{subject} is {value}{unit}; allowed range is [{low}, {high}]", name)
    return value


def check_not_blank(subject: str, text: str, *, hint: str = "", name: str | None = None) -> str:
    if not text.strip():
        raise OptionError(f"{subject} is empty or whitespace only{f'; {hint}' if hint else ''}", name)
    return text


def check_bytes(subject: str, size: int, max_bytes: int, *, name: str | None = None) -> None:
    """A text's UTF-8 size, the unit the server limits (a character takes 1 to 4 bytes)."""
    if size > max_bytes:
        raise OptionError(f"{subject} is {size} bytes; at most {max_bytes} bytes of UTF-8 are allowed", name)


def check_characters(subject: str, text: str, max_chars: int, *, hint: str = "", name: str | None = None) -> str:
    if len(text) > max_chars:
        raise OptionError(
            f"{subject} is {len(text)} characters; at most {max_chars} are allowed{f' ({hint})' if hint else ''}",
            name,
            "string_above_max_length",
        )
    return text


# --- voice names ---------------------------------------------------------------------------------


def voice_name_rule(limits: Limits = LIMITS) -> str:
    # The pattern is ASCII, so a name's characters are its bytes: the byte limit reads as characters.
    return (
        f"letters, digits, '_', '.' or '-', starting with a letter or digit, at most "
        f"{limits.max_voice_name_bytes} characters"
    )


def is_voice_name(name: str, limits: Limits = LIMITS) -> bool:
    """What a voice may be called, registered at export or stored in the gateway's library (where the
    name is a directory: no '/', no leading '.')."""
    return bool(_VOICE_NAME.fullmatch(name)) and len(name.encode("utf-8")) <= limits.max_voice_name_bytes


def check_voice_name(name: str, limits: Limits = LIMITS, *, param: str | None = "name") -> str:
    if not is_voice_name(name, limits):
        raise OptionError(f"voice name {name!r} is not allowed: use {voice_name_rule(limits)}", param)
    return name


# --- reference audio ------------------------------------------------------------------------------


def sample_rate_range(limits: Limits = LIMITS) -> tuple[int, int]:
    return (limits.min_sample_rate, limits.max_sample_rate)


def _seconds(seconds: float) -> str:
    return f"{seconds:.2f}" if seconds >= 0.01 else f"{seconds:.3f}"


def check_reference(subject: str, audio, sample_rate: int, limits: Limits = LIMITS) -> None:
    """Reference audio, float [channels, samples] at `sample_rate`, within the reference limits: what
    the server accepts, and so what the gateway's library stores."""
    low, high = sample_rate_range(limits)
    if not low <= sample_rate <= high:
        raise OptionError(f"{subject} has a sample rate of {sample_rate} Hz; allowed range is [{low}, {high}]")
    channels, samples = audio.shape
    if not 1 <= channels <= limits.max_channels:
        raise OptionError(f"{subject} has {channels} channels; 1 to {limits.max_channels} are allowed")
    seconds = samples / sample_rate
    shortest, longest = limits.min_reference_seconds, limits.max_reference_seconds
    allowed = f"{subject} is {_seconds(seconds)} s long; {shortest:g} to {longest:g} s are allowed"
    if seconds < shortest:
        raise OptionError(f"{allowed} (at least {shortest} s of reference speech is needed)")
    if seconds > longest:
        raise OptionError(
            f"{allowed} (at most {longest} s is accepted; F5-TTS uses up to "
            f"{limits.reference_clip_seconds:g} s of it, clipped at a pause)"
        )
    import numpy as np  # here only: the module imports without numpy

    if not np.isfinite(audio).all():
        raise OptionError(f"{subject} contains NaN or Inf samples")
    if not np.any(audio):
        raise OptionError(f"{subject} is silent (all samples are zero)")
