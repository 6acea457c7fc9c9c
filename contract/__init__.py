"""The serving contract: every tensor name, dtype, default and limit, stated once.

Shared by the Triton models, the export CLI, the clients and perf_analyzer input
generation. Dependency-free on purpose: clients import it without torch or numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

# f5-tts works at 24 kHz with 100-band mels and hop 256 (f5_tts.infer.utils_infer).
SAMPLE_RATE = 24_000
N_MELS = 100
HOP_LENGTH = 256

# Model names inside the exported repository.
TTS_MODEL = "f5_tts"
STREAM_MODEL = "f5_tts_stream"  # decoupled: one response per text chunk, through f5_tts
VOCODER_MODEL = "vocoder"
TRANSCRIBER_MODEL = "transcriber"  # optional (export --asr): Whisper, for references sent without a transcript
DEFAULT_ASR_MODEL = "openai/whisper-large-v3-turbo"  # what f5-tts transcribes references with

# Several F5-TTS models in one repository (`python -m export --name NAME` adds one): model NAME is served
# as f5_tts_NAME, streamed by f5_tts_NAME_stream, and vocoded by `vocoder` unless its Vocos differs
# (then vocoder_NAME). The default model keeps the names above; clients call it "default".
DEFAULT_MODEL_NAME = "default"
MODEL_NAME_PATTERN = r"[a-z0-9][a-z0-9_]{0,31}"  # lower case: Triton model names are directory names
STREAM_SUFFIX = "_stream"


def tts_model_name(name: str | None = None) -> str:
    """The Triton model that serves F5-TTS model `name`: f5_tts for the default (None, "", "default" or
    "f5_tts"), f5_tts_NAME otherwise; a Triton model name (f5_tts_NAME) is returned as it is."""
    if not name or name in (DEFAULT_MODEL_NAME, TTS_MODEL):
        return TTS_MODEL
    return name if name.startswith(TTS_MODEL + "_") else f"{TTS_MODEL}_{name}"


def model_short_name(tts_model: str) -> str:
    """The inverse of tts_model_name: "default" for f5_tts, NAME for f5_tts_NAME."""
    return DEFAULT_MODEL_NAME if tts_model == TTS_MODEL else tts_model.removeprefix(TTS_MODEL + "_")


def stream_model_name(tts_model: str) -> str:
    """The decoupled model that streams `tts_model` (f5_tts -> f5_tts_stream)."""
    return tts_model + STREAM_SUFFIX


def is_tts_model(triton_name: str) -> bool:
    """Whether a Triton model name is an F5-TTS model of the repository (not its stream, vocoder, ...)."""
    return (triton_name == TTS_MODEL or triton_name.startswith(TTS_MODEL + "_")) and not triton_name.endswith(
        STREAM_SUFFIX
    )


def model_name_problem(name: str) -> str | None:
    """Why `name` cannot name an added model (export --name), or None."""
    import re

    if not re.fullmatch(MODEL_NAME_PATTERN, name):
        return f"model name {name!r} must match {MODEL_NAME_PATTERN} (lower-case letters, digits, _; at most 32)"
    if name == DEFAULT_MODEL_NAME or name.startswith(TTS_MODEL) or tts_model_name(name).endswith(STREAM_SUFFIX):
        return (
            f"model name {name!r} is reserved: {DEFAULT_MODEL_NAME!r}, 'stream', names starting {TTS_MODEL!r} and "
            f"names ending {STREAM_SUFFIX!r} are the repository's own (use e.g. a language code: fr, de, ja)"
        )
    return None


def parse_model_name(asked: str | None) -> str | None:
    """The Triton model a request's `model` names (its short name, "default", or its Triton name), or None
    when no model can have that name: the rule `export --name` applies, so a typo is told from a model
    the server lacks without asking it."""
    name = tts_model_name((asked or "").strip())
    short = model_short_name(name)
    return name if short == DEFAULT_MODEL_NAME or model_name_problem(short) is None else None


def tts_models_in_index(index, *, ready_only: bool = True) -> list[str]:
    """The F5-TTS models (Triton names, the default first) of Triton's repository index: a list of
    {"name", "state"} or gRPC's JSON {"models": [...]}. `ready_only`: those Triton serves now, their stream
    model ready too (speech streams through it)."""
    entries = index.get("models", []) if isinstance(index, dict) else list(index)
    ready = {e.get("name") for e in entries if e.get("state") == "READY"}
    names = {e.get("name", "") for e in entries if is_tts_model(e.get("name", ""))}
    if ready_only:
        names = {n for n in names if n in ready and stream_model_name(n) in ready}
    return sorted(names, key=lambda n: (n != TTS_MODEL, n))


def vocoder_model_name(name: str | None = None) -> str:
    """A model's own vocoder, when its Vocos is not the repository's first one."""
    tts = tts_model_name(name)
    return VOCODER_MODEL if tts == TTS_MODEL else f"{VOCODER_MODEL}_{model_short_name(tts)}"


# Files of the exported repository: `python -m export` writes them, the models load them and the
# container's preflight checks them. <model>/config.pbtxt, <model>/1/model.py, and:
MODEL_CONFIG_FILE = "config.pbtxt"
MODEL_CODE_FILE = "model.py"
MODEL_VERSION = "1"
TTS_WEIGHTS_FILE = "model.safetensors"  # f5_tts/1/: the DiT weights
TTS_ARCH_FILE = "model_config.yaml"  # f5_tts/1/: f5-tts's model config
TTS_VOCAB_FILE = "vocab.txt"  # f5_tts/1/
VOCODER_ONNX_FILE = "vocos.onnx"  # vocoder/1/
TORCH_VOCOS_DIR = "vocos"  # vocoder/1/: the PyTorch Vocos for GPU instances of f5_tts, as released:
VOCOS_CONFIG_FILE, VOCOS_WEIGHTS_FILE = "config.yaml", "pytorch_model.bin"  # (also a --vocoder directory)
COMPILE_CACHE_DIR = "compile_cache"  # f5_tts/: TorchInductor's cache of the compiled engine, kept across restarts
WHISPER_DIR = "whisper"  # transcriber/1/: the Whisper's files as released (config, weights, tokenizer)
MANIFEST_FILE = "manifest.json"  # at the repository's root: sources, checksums, options, versions

# Triton's default ports (the launcher, the container, the clients' defaults).
HTTP_PORT, GRPC_PORT, METRICS_PORT = 8000, 8001, 8002

# f5_tts's custom metrics, beside Triton's own on the metrics port.
REFERENCE_CACHE_METRIC = "f5_tts_reference_cache_total"  # {result="hit"|"miss"}: uploaded references prepared once
CANCELLED_METRIC = "f5_tts_cancelled_total"  # requests whose clients gave up mid-synthesis (their work stopped)
# {result="hit"|"miss"}: references sent without a transcript; a miss asks the transcriber, a hit does not
TRANSCRIPTION_CACHE_METRIC = "f5_tts_transcription_cache_total"
# f5_tts_stream's gauge: streams being served now (a cancelled one counts until it has stopped).
STREAMS_ACTIVE_METRIC = "f5_tts_stream_active"

# Precisions the DiT weights can be stored and run in.
DTYPES = ("fp32", "fp16", "bf16")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # Triton dtype name, e.g. "FP32", "BYTES"
    dims: tuple[int, ...]  # per-request dims, without the batch dimension
    optional: bool = False
    ragged: bool = False  # lengths differ between requests of one dynamic batch
    doc: str = ""


# --- f5_tts inputs -----------------------------------------------------------------
REFERENCE_AUDIO = "reference_audio"
REFERENCE_SAMPLE_RATE = "reference_sample_rate"
REFERENCE_TEXT = "reference_text"
REFERENCE_CHANNELS = "reference_channels"
TARGET_TEXT = "target_text"
NFE_STEP = "nfe_step"
CFG_STRENGTH = "cfg_strength"
SWAY_SAMPLING_COEF = "sway_sampling_coef"
SPEED = "speed"
SEED = "seed"
DURATION = "duration"
VOICE = "voice"
FIRST_CHUNK_CHARS = "first_chunk_chars"
CHUNK_INDEX = "chunk_index"
MEASURE_WORDS = "measure_words"

# --- f5_tts outputs ----------------------------------------------------------------
WAVEFORM = "waveform"
SAMPLE_RATE_OUT = "sample_rate"
CHUNK_COUNT = "chunk_count"
SEGMENT_INDEX = "segment_index"
CAPTIONS = "captions"  # JSON (contract/captions.py)
# A chunk answer's captions also say whether the chunk ends its script segment (the stream model joins
# the next one end to end, not cross-faded, and so places the cue's end there).
ENDS_SEGMENT = "ends_segment"
# ... and, with measure_words, the words the transcriber heard in it: [[word, start, end], ...], seconds
# from the chunk's own start, which the stream model places as f5_tts places them.
HEARD = "heard"

# The stream model's first text chunk: short, so that audio starts after a clause or two.
STREAM_FIRST_CHUNK_CHARS = 60
# Model config parameter of f5_tts that lists the registered voices (comma-separated).
VOICES_PARAMETER = "voices"
# What a voice name may look like (registered at export, or in the gateway's voice library); at most
# Limits.max_voice_name_bytes long.
VOICE_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]*"


def format_voice_list(names) -> str:
    return ",".join(sorted(names))


def parse_voice_list(value: str) -> tuple[str, ...]:
    return tuple(sorted(v.strip() for v in value.split(",") if v.strip()))


# --- vocoder tensors ---------------------------------------------------------------
MEL = "mel"

TTS_INPUTS: tuple[TensorSpec, ...] = (
    TensorSpec(
        REFERENCE_AUDIO,
        "FP32",
        (-1, -1),
        optional=True,
        ragged=True,
        doc="reference speech, [channels, samples], any channel count (downmixed); or send `voice`",
    ),
    TensorSpec(
        REFERENCE_SAMPLE_RATE,
        "INT32",
        (1,),
        optional=True,
        doc="sample rate of reference_audio in Hz (resampled to 24000); with reference_audio",
    ),
    TensorSpec(
        REFERENCE_TEXT,
        "BYTES",
        (1,),
        optional=True,
        doc="UTF-8 transcript of the reference audio; empty or absent: transcribed by the "
        f"'{TRANSCRIBER_MODEL}' model (export --asr), once per distinct reference",
    ),
    TensorSpec(
        REFERENCE_CHANNELS,
        "INT32",
        (1,),
        optional=True,
        doc="channel count of reference_audio sent flat, [1, channels * samples], channel after channel "
        "(Triton's generate endpoints take flat lists only); absent = reference_audio's first dimension",
    ),
    TensorSpec(
        VOICE,
        "BYTES",
        (1,),
        optional=True,
        doc="name of a voice registered at export, instead of the three reference inputs",
    ),
    TensorSpec(TARGET_TEXT, "BYTES", (1,), doc="UTF-8 text to speak; long text is chunked"),
    TensorSpec(NFE_STEP, "INT32", (1,), optional=True, doc="ODE steps (function evaluations)"),
    TensorSpec(CFG_STRENGTH, "FP32", (1,), optional=True, doc="classifier-free guidance strength"),
    TensorSpec(SWAY_SAMPLING_COEF, "FP32", (1,), optional=True, doc="sway sampling coefficient"),
    TensorSpec(SPEED, "FP32", (1,), optional=True, doc="speaking rate, 1.0 = natural"),
    TensorSpec(SEED, "INT64", (1,), optional=True, doc="noise seed; -1 or absent = random. Same seed => same audio"),
    TensorSpec(
        DURATION,
        "FP32",
        (1,),
        optional=True,
        doc="total seconds including the reference (f5-tts fix_duration); 0 or absent = estimate",
    ),
    TensorSpec(
        FIRST_CHUNK_CHARS,
        "INT32",
        (1,),
        optional=True,
        doc="at most this many UTF-8 bytes in the first text chunk (split at punctuation); 0 or absent = "
        f"f5-tts's chunking ({STREAM_MODEL}: {STREAM_FIRST_CHUNK_CHARS} when absent)",
    ),
    TensorSpec(
        CHUNK_INDEX,
        "INT32",
        (1,),
        optional=True,
        doc="synthesize only this text chunk (0-based), not cross-faded; what the stream model asks for",
    ),
    TensorSpec(
        MEASURE_WORDS,
        "BOOL",
        (1,),
        optional=True,
        doc=f"true: the captions' word times are measured: the '{TRANSCRIBER_MODEL}' model (export --asr) "
        "hears each generated chunk (one Whisper pass per chunk); absent = false: estimated",
    ),
)
# The stream model takes the same inputs, except that it picks the chunks itself.
STREAM_INPUTS: tuple[TensorSpec, ...] = tuple(s for s in TTS_INPUTS if s.name != CHUNK_INDEX)
TTS_OUTPUTS: tuple[TensorSpec, ...] = (
    TensorSpec(WAVEFORM, "FP32", (-1,), doc="generated speech, mono"),
    TensorSpec(SAMPLE_RATE_OUT, "INT32", (1,), doc="sample rate of waveform (24000)"),
    TensorSpec(CHUNK_COUNT, "INT32", (1,), doc="text chunks the target text was split into"),
    TensorSpec(
        SEGMENT_INDEX,
        "INT32",
        (1,),
        doc="multi-voice scripts: the segment (voice tag, 0-based) of the answer's last chunk; 0 without tags",
    ),
    TensorSpec(
        CAPTIONS,
        "BYTES",
        (1,),
        doc="UTF-8 JSON: each text chunk's exact times in the waveform, its speaker and its words' times "
        "(estimated, and marked so); contract/captions.py",
    ),
)
STREAM_OUTPUTS: tuple[TensorSpec, ...] = (
    TensorSpec(WAVEFORM, "FP32", (-1,), doc="the next piece of speech; the pieces joined are the whole"),
    TensorSpec(SAMPLE_RATE_OUT, "INT32", (1,), doc="sample rate of waveform (24000)"),
    TensorSpec(
        CAPTIONS,
        "BYTES",
        (1,),
        doc="UTF-8 JSON: the captions of the chunks this piece begins to speak (times from the stream's "
        "start; empty list when it begins none), as f5_tts's captions of the whole answer",
    ),
)
VOCODER_INPUTS: tuple[TensorSpec, ...] = (
    TensorSpec(MEL, "FP32", (N_MELS, -1), doc="log-mel spectrogram, [100, frames]"),
)
VOCODER_OUTPUTS: tuple[TensorSpec, ...] = (
    TensorSpec(
        WAVEFORM,
        "FP32",
        (-1,),
        doc="waveform at 24 kHz, (frames - 1) * 256 samples "
        "(Vocos mel-24khz's centred ISTFT, as f5-tts's vocos.decode)",
    ),
)

# --- transcriber: reference audio in, its transcript out ------------------------------
TRANSCRIPT = "transcript"
WORDS = "words"
LANGUAGE = "language"
AS_REFERENCE = "as_reference"
TRANSCRIBER_INPUTS: tuple[TensorSpec, ...] = (
    TensorSpec(
        REFERENCE_AUDIO,
        "FP32",
        (-1, -1),
        ragged=True,
        doc="speech, [channels, samples], any channel count (averaged), as f5_tts's reference_audio",
    ),
    TensorSpec(REFERENCE_SAMPLE_RATE, "INT32", (1,), doc="sample rate of reference_audio in Hz"),
    TensorSpec(
        REFERENCE_CHANNELS,
        "INT32",
        (1,),
        optional=True,
        doc="channel count of reference_audio sent flat (as for f5_tts); absent = its first dimension",
    ),
    TensorSpec(
        LANGUAGE,
        "BYTES",
        (1,),
        optional=True,
        doc="Whisper language code (en, zh, fr, ...) to transcribe in; empty or absent = detected",
    ),
    TensorSpec(
        AS_REFERENCE,
        "BOOL",
        (1,),
        optional=True,
        doc="true: transcribe the audio as f5_tts hears it as a reference (f5-tts's preprocessing: clipped "
        "to 12 s at a pause, silence trimmed), the transcript a voice needs; absent = false, all of it",
    ),
)
TRANSCRIBER_OUTPUTS: tuple[TensorSpec, ...] = (
    TensorSpec(TRANSCRIPT, "BYTES", (1,), doc="UTF-8 transcript, stripped (f5-tts's transcribe)"),
    TensorSpec(
        LANGUAGE,
        "BYTES",
        (1,),
        doc="the language it was transcribed in: the one asked for, or Whisper's detection (computed only "
        "when this output is requested)",
    ),
    TensorSpec(
        WORDS,
        "BYTES",
        (1,),
        doc="UTF-8 JSON [[word, start, end], ...]: Whisper's word timestamps in seconds (transformers' "
        'return_timestamps="word"; computed only when this output is requested)',
    ),
)


@dataclass(frozen=True)
class SamplingDefaults:
    """f5-tts's own inference defaults (f5_tts.infer.utils_infer)."""

    nfe_step: int = 32
    cfg_strength: float = 2.0
    sway_sampling_coef: float = -1.0
    speed: float = 1.0


DEFAULTS = SamplingDefaults()


# The longest text a request may ask to speak, in characters: OpenAI's cap on `input`. UTF-8 needs
# up to 4 bytes a character, so the byte limit below covers it in any script (emoji, CJK extensions).
MAX_TEXT_CHARS = 4096
UTF8_MAX_BYTES_PER_CHAR = 4


@dataclass(frozen=True)
class Limits:
    """What a request may ask for. Each violation is answered with INVALID_ARG.

    max_target_text_bytes, max_reference_seconds and max_audio_seconds can be set at export
    (they become model parameters); the others are fixed.
    """

    max_target_text_bytes: int = MAX_TEXT_CHARS * UTF8_MAX_BYTES_PER_CHAR
    max_reference_text_bytes: int = 1000
    min_reference_seconds: float = 0.3
    max_reference_seconds: float = 30.0  # accepted upload length
    reference_clip_seconds: float = 12.0  # f5-tts clips references to 12 s
    min_sample_rate: int = 4_000
    max_sample_rate: int = 192_000
    max_channels: int = 8
    nfe_step: tuple[int, int] = (1, 128)
    cfg_strength: tuple[float, float] = (0.0, 10.0)
    sway_sampling_coef: tuple[float, float] = (-1.0, 1.0)
    speed: tuple[float, float] = (0.3, 3.0)
    seed: tuple[int, int] = (-1, 2**63 - 1)
    max_audio_seconds: float = 120.0  # the largest `duration`, and the longest text chunk incl. reference
    max_voice_name_bytes: int = 64

    @property
    def duration(self) -> tuple[float, float]:  # seconds; 0 = estimate
        return (0.0, self.max_audio_seconds)

    @property
    def max_total_frames(self) -> int:  # mel frames per chunk, reference included
        return int(self.max_audio_seconds * SAMPLE_RATE // HOP_LENGTH)


LIMITS = Limits()
