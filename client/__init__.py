"""Thin F5-TTS clients for Triton (gRPC and HTTP). No torch: numpy, soundfile, tritonclient."""

from client.api import SynthesisError, SynthesisOptions, list_voices, stream_synthesize, synthesize, synthesize_async
from client.audio import load_audio, write_wav_atomic

__all__ = [
    "SynthesisError",
    "SynthesisOptions",
    "synthesize",
    "synthesize_async",
    "stream_synthesize",
    "list_voices",
    "load_audio",
    "write_wav_atomic",
]
