"""One synthesis request: parsed from Triton tensors and validated in one place.

Every rejection raises RequestError with a message naming the input and what is
allowed; model.py turns it into TritonError(INVALID_ARG) for that request alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Collection, Mapping

import numpy as np

import contract
from contract.request_options import (
    OptionError,
    check_bytes,
    check_not_blank,
    check_range,
    check_reference,
    sample_rate_range,
)


class RequestError(ValueError):
    """A request the server refuses; the message is sent back to the client."""


class Cancelled(Exception):
    """The request's client gave up (Triton marked it cancelled): its work stopped at the next check."""


@dataclass(frozen=True)
class SynthesisRequest:
    # Either an uploaded reference (audio, rate, text) or a registered voice.
    reference_audio: np.ndarray | None  # float32 [channels, samples], finite, not silent
    reference_sample_rate: int | None
    reference_text: str | None
    target_text: str
    nfe_step: int
    cfg_strength: float
    sway_sampling_coef: float
    speed: float
    seed: int | None  # None: random
    duration: float | None  # total seconds incl. reference (f5-tts fix_duration); None: estimate
    voice: str | None = None
    first_chunk_chars: int = 0  # 0: f5-tts's chunking
    chunk_index: int | None = None  # only this chunk, not cross-faded (the stream model's requests)
    measure_words: bool = False  # captions' word times heard by the transcriber

    @property
    def reference_seconds(self) -> float:
        if self.reference_audio is None:
            return 0.0
        return self.reference_audio.shape[-1] / self.reference_sample_rate

    @property
    def sampling_key(self) -> tuple[int, float, float]:
        """Requests with equal keys can share one batched ODE solve."""
        return (self.nfe_step, self.cfg_strength, self.sway_sampling_coef)


def _scalar(tensors: Mapping[str, np.ndarray | None], name: str, required: bool):
    value = tensors.get(name)
    if value is None:
        if required:
            raise RequestError(f"missing required input '{name}'")
        return None
    arr = np.asarray(value)
    if arr.size != 1:
        raise RequestError(f"input '{name}' must hold exactly one value per request, got shape {list(arr.shape)}")
    return arr.reshape(-1)[0]


def _text(tensors, name: str, max_bytes: int) -> str:
    raw = _scalar(tensors, name, required=True)
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    if not isinstance(raw, (bytes, np.bytes_)):
        raise RequestError(f"input '{name}' must be BYTES (UTF-8 text), got {type(raw).__name__}")
    check_bytes(f"input '{name}'", len(raw), max_bytes)
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError as e:
        raise RequestError(f"input '{name}' is not valid UTF-8 ({e.reason} at byte {e.start})") from None
    return check_not_blank(f"input '{name}'", text)


def _number(tensors, name: str, default, bounds, kind=float, unit: str = "", required: bool = False):
    raw = _scalar(tensors, name, required)
    if raw is None:
        return default
    return check_range(f"input '{name}'", kind(raw), bounds, unit=unit)


def _reference_audio(tensors, sample_rate: int, limits: contract.Limits) -> np.ndarray:
    name = contract.REFERENCE_AUDIO
    audio = tensors.get(name)
    if audio is None:
        raise RequestError(f"missing required input '{name}'")
    audio = np.asarray(audio)
    if audio.dtype != np.float32:
        raise RequestError(f"input '{name}' must be FP32, got {audio.dtype}")
    if audio.ndim == 3:  # [batch, channels, samples] as sent with max_batch_size > 0
        if audio.shape[0] != 1:
            raise RequestError(
                f"input '{name}' has batch size {audio.shape[0]}; send one request per text "
                "(the server batches concurrent requests itself)"
            )
        audio = audio[0]
    if audio.ndim != 2:
        raise RequestError(f"input '{name}' must be [channels, samples], got shape {list(audio.shape)}")
    audio = _unflatten(audio, _number(tensors, contract.REFERENCE_CHANNELS, None, (1, limits.max_channels), int))
    check_reference(f"input '{name}'", audio, sample_rate, limits)
    return audio


def _unflatten(audio: np.ndarray, channels: int | None) -> np.ndarray:
    """[1, channels * samples] (channel after channel) -> [channels, samples], as a request from
    Triton's generate endpoints sends several channels; the downmix then happens here, after
    f5-tts's silence trimming, as for every other request."""
    if channels is None or audio.shape[0] == channels:
        return audio
    name, count = contract.REFERENCE_AUDIO, contract.REFERENCE_CHANNELS
    if audio.shape[0] != 1:
        raise RequestError(
            f"input '{count}' is {channels} but '{name}' has {audio.shape[0]} channels; send "
            f"'{name}' flat ([1, channels * samples]) with '{count}', or as [channels, samples] alone"
        )
    if audio.shape[1] % channels:
        raise RequestError(
            f"input '{name}' holds {audio.shape[1]} samples, which is not a multiple of "
            f"'{count}' ({channels}); send the channels one after the other, each complete"
        )
    return audio.reshape(channels, -1)


_REFERENCE_INPUTS = (
    contract.REFERENCE_AUDIO,
    contract.REFERENCE_SAMPLE_RATE,
    contract.REFERENCE_TEXT,
    contract.REFERENCE_CHANNELS,
)


def _known(voices: Collection[str]) -> str:
    if not voices:
        return (
            "this model has no registered voices (they are added with `python -m export --voice "
            'NAME=file.wav:"transcript"`, and --name MODEL for an added model)'
        )
    return "known voices: " + ", ".join(sorted(voices))


def _voice(tensors, voices: Collection[str], limits: contract.Limits) -> str:
    sent = [name for name in _REFERENCE_INPUTS if tensors.get(name) is not None]
    if sent:
        raise RequestError(
            f"send either '{contract.VOICE}' or the reference inputs, not both (got '{contract.VOICE}' "
            f"and {', '.join(repr(n) for n in sent)})"
        )
    name = _text(tensors, contract.VOICE, limits.max_voice_name_bytes).strip()
    if name not in voices:
        raise RequestError(f"unknown voice {name!r}; {_known(voices)}")
    return name


def _uploaded_reference(tensors, limits: contract.Limits, voices: Collection[str]):
    if all(tensors.get(name) is None for name in _REFERENCE_INPUTS):
        raise RequestError(
            f"no reference: send '{contract.REFERENCE_AUDIO}', '{contract.REFERENCE_SAMPLE_RATE}' and "
            f"'{contract.REFERENCE_TEXT}', or a registered '{contract.VOICE}' ({_known(voices)})"
        )
    sample_rate = _number(
        tensors, contract.REFERENCE_SAMPLE_RATE, None, sample_rate_range(limits), int, " Hz", required=True
    )
    audio = _reference_audio(tensors, sample_rate, limits)
    # Empty or absent: the synthesizer has the transcriber transcribe it, as f5-tts does.
    reference_text = _optional_text(tensors, contract.REFERENCE_TEXT, limits.max_reference_text_bytes)
    return audio, sample_rate, reference_text


def _optional_text(tensors, name: str, max_bytes: int) -> str:
    """The text of an optional BYTES input; "" when it is absent, empty or only whitespace."""
    raw = _scalar(tensors, name, required=False)
    if raw is None:
        return ""
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    if isinstance(raw, (bytes, np.bytes_)) and len(raw) <= max_bytes:
        try:
            if not bytes(raw).decode("utf-8").strip():
                return ""
        except UnicodeDecodeError:
            pass  # _text says what is wrong
    return _text(tensors, name, max_bytes)


def parse_transcription_request(tensors: Mapping[str, np.ndarray | None], limits: contract.Limits = contract.LIMITS):
    """(audio [channels, samples], sample rate, language or None, as_reference) of a transcriber request."""
    try:
        sample_rate = _number(
            tensors, contract.REFERENCE_SAMPLE_RATE, None, sample_rate_range(limits), int, " Hz", required=True
        )
        audio = _reference_audio(tensors, sample_rate, limits)
        language = _optional_text(tensors, contract.LANGUAGE, 32).strip().lower() or None
        as_reference = _scalar(tensors, contract.AS_REFERENCE, required=False)
    except OptionError as e:
        raise RequestError(str(e)) from None
    return audio, sample_rate, language, bool(as_reference)


def parse_request(
    tensors: Mapping[str, np.ndarray | None],
    defaults: contract.SamplingDefaults = contract.DEFAULTS,
    limits: contract.Limits = contract.LIMITS,
    voices: Collection[str] = (),
) -> SynthesisRequest:
    """Build a validated request from input tensors keyed by contract names (None = absent).

    `voices` are the names of the registered voices a request may choose instead of a reference.
    """
    try:
        return _parse(tensors, defaults, limits, voices)
    except OptionError as e:  # the checks every door shares (contract.request_options)
        raise RequestError(str(e)) from None


def _parse(
    tensors, defaults: contract.SamplingDefaults, limits: contract.Limits, voices: Collection[str]
) -> SynthesisRequest:
    if tensors.get(contract.VOICE) is not None:
        voice = _voice(tensors, voices, limits)
        audio, sample_rate, reference_text = None, None, None
    else:
        voice = None
        audio, sample_rate, reference_text = _uploaded_reference(tensors, limits, voices)
    target_text = _text(tensors, contract.TARGET_TEXT, limits.max_target_text_bytes)
    chunk_index = _number(tensors, contract.CHUNK_INDEX, -1, (0, 2**31 - 1), int)
    seed = _number(tensors, contract.SEED, -1, limits.seed, int)
    duration = _number(tensors, contract.DURATION, 0.0, limits.duration)
    request = SynthesisRequest(
        reference_audio=audio,
        reference_sample_rate=sample_rate,
        reference_text=reference_text,
        target_text=target_text,
        nfe_step=_number(tensors, contract.NFE_STEP, defaults.nfe_step, limits.nfe_step, int),
        cfg_strength=_number(tensors, contract.CFG_STRENGTH, defaults.cfg_strength, limits.cfg_strength),
        sway_sampling_coef=_number(
            tensors, contract.SWAY_SAMPLING_COEF, defaults.sway_sampling_coef, limits.sway_sampling_coef
        ),
        speed=_number(tensors, contract.SPEED, defaults.speed, limits.speed),
        seed=None if seed == -1 else seed,
        duration=duration or None,
        voice=voice,
        first_chunk_chars=_number(tensors, contract.FIRST_CHUNK_CHARS, 0, (0, limits.max_target_text_bytes), int),
        chunk_index=None if chunk_index == -1 else chunk_index,
        measure_words=bool(_scalar(tensors, contract.MEASURE_WORDS, required=False)),
    )
    return request
