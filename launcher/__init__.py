"""Start, wait for and stop a real tritonserver (the NGC one on PATH, else the bundled one)."""

from launcher.server import ADMIN_PROTOCOLS, GrpcTls, ServerError, TritonServer, find_tritonserver

__all__ = ["ADMIN_PROTOCOLS", "GrpcTls", "ServerError", "TritonServer", "find_tritonserver"]
