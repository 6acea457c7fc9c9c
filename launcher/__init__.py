"""Start, wait for and stop a real tritonserver (the NGC one on PATH, else the bundled one)."""

from launcher.server import ServerError, TritonServer, find_tritonserver

__all__ = ["ServerError", "TritonServer", "find_tritonserver"]
