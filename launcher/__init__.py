"""Start, wait for and stop a real tritonserver (the NGC one on PATH, else the bundled one).

A process supervisor on `contract` alone: what runs before a start (the deployments' settings, the
repository's preflight and first-start export) is deploy/'s, above it.
"""

from launcher.server import ADMIN_PROTOCOLS, GrpcTls, ServerError, TritonServer, find_tritonserver

__all__ = ["ADMIN_PROTOCOLS", "GrpcTls", "ServerError", "TritonServer", "find_tritonserver"]
