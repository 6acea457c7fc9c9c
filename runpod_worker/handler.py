"""The RunPod job handler: check the job's input, synthesize through the local tritonserver, return a WAV;
or transcribe an audio file with the server's transcriber.

Job input (JSON object), task "synthesize" (the default):
  text               the text to speak (required)
  reference_audio    the reference recording: an audio file's bytes (WAV, FLAC, OGG...), base64
  reference_text     its transcript; absent or empty: the server transcribes the reference (its
                     repository needs the transcriber model: export --asr)
  voice              a voice registered on the server, instead of reference_audio (+ reference_text)
  nfe_step, cfg_strength, sway_sampling_coef, speed, seed, duration, measure_words   optional
                     (see the f5_tts model contract; null or absent leaves the server's default)
  captions           "srt", "vtt" or "json": the captions of the audio too (each text chunk's exact
                     times, its words' estimated ones; contract/captions.py)
  model              the F5-TTS model that speaks, when the repository holds several (export --name
                     NAME): its short name (NAME, or "default") or its Triton name (f5_tts_NAME);
                     absent: the default model, f5_tts. An unknown one is an error listing the models
Output: {"audio_base64": 16-bit PCM WAV, "sample_rate", "duration_seconds", "timings_ms"}, and with
captions {"captions": the file's text, "captions_format"}.

Job input with "task": "transcribe" (the transcriber model: Whisper, as f5-tts transcribes references):
  reference_audio    the audio file's bytes, base64 (required)
  language           Whisper language code to transcribe in (en, zh, ...); absent: detected
  as_reference       true: transcribe only what F5-TTS keeps of it as a reference (clipped at a pause,
                     silence trimmed), the transcript a synthesis job would send with it
Output: {"transcript", "language": asked for or detected, "timings_ms"}.

A bad job is answered in RunPod's error form, {"error": "..."}: the input checks below, or the
server's own INVALID_ARG message (ranges and limits are the server's to enforce).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import io
import time
from dataclasses import dataclass

import numpy as np
import soundfile as sf

import contract
from client.api import SynthesisError, SynthesisOptions, synthesize_async, transcribe_async
from client.captions import render
from client.connection import resolve_endpoint
from contract.request_options import OptionError, boolean, caption_format, sampling_option, string, type_name

TASK_KEY = "task"
SYNTHESIZE, TRANSCRIBE = "synthesize", "transcribe"  # the tasks; a job without "task" synthesizes
TEXT_KEYS = ("text", "reference_audio", "reference_text", "voice")
CAPTIONS_KEY = "captions"
MODEL_KEY = "model"  # which F5-TTS model of the repository speaks (export --name); absent: the default one
MODELS_REFRESH_SECONDS = 1.0  # a job naming a model not seen yet asks Triton's index again, at most this often
# A transcription job's keys: its audio under the transcriber's own input names.
TRANSCRIBE_KEYS = (contract.REFERENCE_AUDIO, contract.LANGUAGE, contract.AS_REFERENCE)
# The sampling options are SynthesisOptions' fields (but the streaming-only one); their JSON types
# follow the contract's dtypes.
OPTION_KEYS = tuple(f.name for f in dataclasses.fields(SynthesisOptions) if f.name != contract.FIRST_CHUNK_CHARS)

# The job's input is malformed; the message says what was wrong and what is allowed.
JobInputError = OptionError


@dataclass(frozen=True)
class Job:
    text: str
    reference_audio: np.ndarray | None  # [channels, samples]
    reference_sample_rate: int | None
    reference_text: str | None
    voice: str | None
    options: SynthesisOptions
    captions: str | None = None  # the captions file format asked for
    model: str = contract.TTS_MODEL  # the Triton model: f5_tts, f5_tts_NAME


@dataclass(frozen=True)
class TranscriptionJob:
    audio: np.ndarray  # [channels, samples]
    sample_rate: int
    language: str | None  # None: detected
    as_reference: bool


def decode_audio(encoded: str) -> tuple[np.ndarray, int]:
    """base64 of an audio file -> float32 [channels, samples], sample rate."""
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as e:
        raise JobInputError(
            f"'reference_audio' is not valid base64 ({e}); send the audio file's bytes base64-encoded"
        ) from None
    try:
        data, rate = sf.read(io.BytesIO(raw), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise JobInputError(
            f"'reference_audio' ({len(raw)} bytes) is not an audio file soundfile can read ({e}); "
            "send WAV, FLAC or OGG bytes"
        ) from None
    return np.ascontiguousarray(data.T), int(rate)


def parse_job(job_input) -> Job | TranscriptionJob:
    if not isinstance(job_input, dict):
        raise JobInputError(f"the job input must be a JSON object, got {type_name(job_input)}")
    task = job_input.get(TASK_KEY)
    if task is None:
        task = SYNTHESIZE
    if string(TASK_KEY, task) not in (SYNTHESIZE, TRANSCRIBE):
        raise JobInputError(f"'{TASK_KEY}' is {task!r}; allowed: {SYNTHESIZE} (the default), {TRANSCRIBE}")
    allowed = (TASK_KEY,) + (
        TRANSCRIBE_KEYS if task == TRANSCRIBE else TEXT_KEYS + OPTION_KEYS + (CAPTIONS_KEY, MODEL_KEY)
    )
    unknown = sorted(set(job_input) - set(allowed))
    if unknown:
        what = f" for the task '{task}'" if task == TRANSCRIBE else ""
        raise JobInputError(
            f"unknown input key(s) {', '.join(map(repr, unknown))}{what}; allowed: {', '.join(allowed)}"
        )
    given = {k: v for k, v in job_input.items() if v is not None and k != TASK_KEY}
    return _transcription_job(given) if task == TRANSCRIBE else _synthesis_job(given)


def _transcription_job(given: dict) -> TranscriptionJob:
    if contract.REFERENCE_AUDIO not in given:
        raise JobInputError(f"'{contract.REFERENCE_AUDIO}' (base64 of the audio file to transcribe) is required")
    audio, rate = decode_audio(string(contract.REFERENCE_AUDIO, given[contract.REFERENCE_AUDIO]))
    language = string(contract.LANGUAGE, given[contract.LANGUAGE]) if contract.LANGUAGE in given else None
    as_reference = boolean(contract.AS_REFERENCE, given.get(contract.AS_REFERENCE, False))
    return TranscriptionJob(audio, rate, language or None, as_reference)


def _synthesis_job(given: dict) -> Job:
    for key in TEXT_KEYS:
        if key in given:
            string(key, given[key])
    if "text" not in given:
        raise JobInputError("'text' (the text to speak) is required")
    if "voice" in given and ("reference_audio" in given or "reference_text" in given):
        raise JobInputError("give either 'voice' or 'reference_audio' (with its 'reference_text'), not both")
    if "voice" not in given and "reference_audio" not in given:
        if "reference_text" in given:
            raise JobInputError("'reference_text' is the transcript of 'reference_audio', which is missing")
        raise JobInputError(
            "give 'reference_audio' (base64 of an audio file) with 'reference_text' (its transcript; absent: "
            "the server transcribes it), or 'voice' (a voice registered on the server)"
        )
    # Ranges, NaN included, are the server's to check: its INVALID_ARG message names the range allowed.
    options = SynthesisOptions(**{k: sampling_option(k, given[k], finite=False) for k in OPTION_KEYS if k in given})
    audio, rate = decode_audio(given["reference_audio"]) if "reference_audio" in given else (None, None)
    captions = caption_format(CAPTIONS_KEY, given[CAPTIONS_KEY]) if CAPTIONS_KEY in given else None
    model = tts_model(given[MODEL_KEY]) if MODEL_KEY in given else contract.TTS_MODEL
    return Job(given["text"], audio, rate, given.get("reference_text"), given.get("voice"), options, captions, model)


def tts_model(value) -> str:
    """The job's `model` (a short name or a Triton name) as the Triton model that serves it."""
    name = contract.parse_model_name(string(MODEL_KEY, value))
    if name is None:
        raise JobInputError(
            f"'{MODEL_KEY}' is {value!r}: give a model's short name (NAME of `export --name NAME`, or "
            f"'{contract.DEFAULT_MODEL_NAME}') or its Triton name ({contract.TTS_MODEL}_NAME); absent: the default "
            "model"
        )
    return name


def encode_wav(waveform: np.ndarray, sample_rate: int) -> str:
    """16-bit PCM WAV (what the project's clients write), base64."""
    buf = io.BytesIO()
    sf.write(buf, np.asarray(waveform, dtype=np.float32), sample_rate, subtype="PCM_16", format="WAV")
    return base64.b64encode(buf.getvalue()).decode("ascii")


class Handler:
    """The job handler, bound to one local tritonserver's gRPC endpoint."""

    def __init__(self, grpc_url: str) -> None:
        self.grpc_url = grpc_url
        # gRPC asyncio channels belong to the event loop that created them; the SDK runs one loop
        # while serving, but its local test modes start their own.
        self._clients: dict[asyncio.AbstractEventLoop, object] = {}
        self._models: tuple[float, tuple[str, ...]] | None = None  # (when asked, the F5-TTS models ready)

    def _client(self):
        import tritonclient.grpc.aio as aio

        loop = asyncio.get_running_loop()
        if loop not in self._clients:
            endpoint = resolve_endpoint(self.grpc_url, "grpc")  # host:port, grpc:// or grpcs://
            self._clients[loop] = aio.InferenceServerClient(endpoint.address, ssl=endpoint.ssl)
        return self._clients[loop]

    async def __call__(self, job: dict) -> dict:
        started = time.perf_counter()
        try:
            parsed = parse_job(job.get("input"))
        except JobInputError as e:
            return {"error": str(e)}
        try:
            if isinstance(parsed, TranscriptionJob):
                return await self._transcribe(parsed, started)
            if parsed.model != contract.TTS_MODEL and (unknown := await self._unknown_model(parsed.model)):
                return {"error": unknown}
            return await self._synthesize(parsed, started)
        except SynthesisError as e:
            if e.invalid_argument:  # the request's fault: the message says why
                return {"error": str(e)}
            what = "transcription" if isinstance(parsed, TranscriptionJob) else "synthesis"
            return {"error": f"{what} failed ({e.status or 'no status'}): {e}"}

    async def models(self, refresh: bool = False) -> tuple[str, ...]:
        """The F5-TTS models the server has ready (its repository index), as Triton names; asked once, and again
        on `refresh` unless asked within MODELS_REFRESH_SECONDS."""
        now = time.monotonic()
        if self._models and (not refresh or now - self._models[0] < MODELS_REFRESH_SECONDS):
            return self._models[1]
        index = await self._client().get_model_repository_index(as_json=True, client_timeout=10)
        ready = tuple(contract.tts_models_in_index(index))
        self._models = (now, ready)
        return ready

    async def _unknown_model(self, model: str) -> str | None:
        """Why the job cannot be sent to `model`, listing the models there are; None when it can (or when the
        index cannot be read: the synthesis then fails with Triton's own words)."""
        try:
            ready = await self.models()
            if model not in ready:
                ready = await self.models(refresh=True)  # loaded since the last look?
        except Exception:  # tritonclient's InferenceServerException, gRPC's own
            return None
        if model in ready:
            return None
        listed = ", ".join(f"{contract.model_short_name(m)} ({m})" for m in ready) or "none"
        return (
            f"unknown model '{contract.model_short_name(model)}' ({model}): this server's models are {listed}; "
            f"give '{MODEL_KEY}' as one of their names, or leave it out for the default model"
        )

    async def _transcribe(self, parsed: TranscriptionJob, started: float) -> dict:
        decoded = time.perf_counter()
        heard = await transcribe_async(
            parsed.audio,
            parsed.sample_rate,
            client=self._client(),
            language=parsed.language,
            as_reference=parsed.as_reference,
        )
        done = time.perf_counter()
        return {
            contract.TRANSCRIPT: heard.text,
            contract.LANGUAGE: heard.language,
            "timings_ms": {
                "input": _ms(decoded - started),
                "transcription": _ms(done - decoded),
                "total": _ms(done - started),
            },
        }

    async def _synthesize(self, parsed: Job, started: float) -> dict:
        decoded = time.perf_counter()
        waveform, rate, cues = await synthesize_async(
            parsed.text,
            parsed.reference_audio,
            parsed.reference_sample_rate,
            parsed.reference_text,
            voice=parsed.voice,
            client=self._client(),
            options=parsed.options,
            captions=True,
            model=parsed.model,
        )
        synthesized = time.perf_counter()
        audio = encode_wav(waveform, rate)
        done = time.perf_counter()
        captions = {}
        if parsed.captions:
            captions = {CAPTIONS_KEY: render(cues, parsed.captions), "captions_format": parsed.captions}
        return {
            **captions,
            "audio_base64": audio,
            "sample_rate": rate,
            "duration_seconds": round(waveform.size / rate, 3),
            "timings_ms": {
                "input": _ms(decoded - started),
                "synthesis": _ms(synthesized - decoded),
                "encode": _ms(done - synthesized),
                "total": _ms(done - started),
            },
        }


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)
