"""Thin F5-TTS clients for Triton (gRPC and HTTP): speech, and transcripts. No torch: numpy, soundfile, tritonclient."""

from client.api import (
    SynthesisError,
    SynthesisOptions,
    Transcription,
    list_voices,
    stream_synthesize,
    synthesize,
    synthesize_async,
    transcribe,
    transcribe_async,
)
from client.audio import load_audio, write_wav_atomic

__all__ = [
    "SynthesisError",
    "SynthesisOptions",
    "synthesize",
    "synthesize_async",
    "stream_synthesize",
    "list_voices",
    "transcribe",
    "transcribe_async",
    "Transcription",
    "load_audio",
    "write_wav_atomic",
]
