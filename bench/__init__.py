"""Benchmarks: the serving pipeline side by side with f5-tts's own inference, and Triton's cost."""
