"""Thin F5-TTS clients for Triton (gRPC and HTTP): speech, and transcripts. No torch: numpy, soundfile, tritonclient."""

from client.api import (
    ServedModel,
    SynthesisError,
    SynthesisOptions,
    Transcription,
    UnknownModelError,
    list_models,
    list_voices,
    stream_synthesize,
    stream_synthesize_async,
    synthesize,
    synthesize_async,
    transcribe,
    transcribe_async,
)
from client.audio import load_audio, write_wav_atomic

__all__ = [
    "SynthesisError",
    "UnknownModelError",
    "SynthesisOptions",
    "synthesize",
    "synthesize_async",
    "stream_synthesize",
    "stream_synthesize_async",
    "list_models",
    "ServedModel",
    "list_voices",
    "transcribe",
    "transcribe_async",
    "Transcription",
    "load_audio",
    "write_wav_atomic",
]
