"""Thin F5-TTS clients for Triton (gRPC and HTTP). No torch: numpy, soundfile, tritonclient."""

from client.api import SynthesisError, SynthesisOptions, synthesize, synthesize_async
from client.audio import load_audio, write_wav_atomic

__all__ = ["SynthesisError", "SynthesisOptions", "synthesize", "synthesize_async", "load_audio", "write_wav_atomic"]
