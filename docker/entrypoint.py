"""Container entrypoint: check (or build) the model repository, say what was found, exec tritonserver.

Environment:
  MODEL_REPOSITORY   the repository (default /models); a volume
  F5_CHECKPOINT      a checkpoint to export on first start when MODEL_REPOSITORY holds no
                     repository (written into MODEL_REPOSITORY, which must be writable); unset:
                     the released checkpoint of F5_MODEL_CONFIG from the Hugging Face cache
                     (HF_HOME) or hub, as `python -m export` does by default
  F5_MODEL_CONFIG    f5-tts config name or YAML path for that export (default F5TTS_v1_Base)
  F5_VOCODER         local Vocos directory for that export (default: the hub)
  F5_EXPORT_ARGS     extra `python -m export` flags (default: --device gpu when a GPU is visible)
  HTTP_PORT, GRPC_PORT, METRICS_PORT (8000, 8001, 8002), LOG_VERBOSE (0)
  TRITON_ADMIN_KEY   HEADER=VALUE that admin APIs require (see README, Secure setup)
  TRITON_ARGS        extra tritonserver flags
  STUB_WATCHDOG      1: exec the launcher instead, which runs tritonserver with the same flags
                     and exits 3 when a Python stub dies (Triton 2.5x neither restarts a dead
                     stub nor reports the model unready), so the restart policy replaces it
Every failure exits non-zero with one line naming the cause. tritonserver then runs as this
process (exec), with the launcher's flags: --exit-on-error, --strict-readiness, model control
none; a model that fails to load makes it exit 1 with the model's error in its log.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import contract
from launcher.preflight import RepositoryError, check_repository, describe, export_on_first_start, gpu_name
from launcher.server import ServerError, TritonServer, find_tritonserver, python_stub_env


class EntrypointError(RuntimeError):
    pass

def main(env: dict[str, str] | None = None) -> int:
    env = dict(os.environ if env is None else env)
    repo = Path(env.get("MODEL_REPOSITORY", "/models"))
    try:
        if not repo.is_dir():
            raise EntrypointError(f"MODEL_REPOSITORY={repo} is not a directory (mount the model volume there)")
        gpu = gpu_name()
        if not (repo / contract.TTS_MODEL / contract.MODEL_CONFIG_FILE).is_file():
            try:
                export_on_first_start(repo, env, gpu)
            except RepositoryError as e:
                raise EntrypointError(f"MODEL_REPOSITORY={repo} holds no model repository "
                                      f"({contract.TTS_MODEL}/{contract.MODEL_CONFIG_FILE} is missing); {e}") from None
        found = check_repository(repo, gpu)
        print(f"entrypoint: {describe(found, gpu)}", flush=True)
        admin_key = None
        if env.get("TRITON_ADMIN_KEY"):
            header, _, value = env["TRITON_ADMIN_KEY"].partition("=")
            if not header or not value:
                raise EntrypointError("TRITON_ADMIN_KEY must be HEADER=VALUE")
            admin_key = (header, value)
        server = TritonServer(repo, http_port=int(env.get("HTTP_PORT", contract.HTTP_PORT)),
                              grpc_port=int(env.get("GRPC_PORT", contract.GRPC_PORT)),
                              metrics_port=int(env.get("METRICS_PORT", contract.METRICS_PORT)),
                              log_verbose=int(env.get("LOG_VERBOSE", 0)),
                              extra_args=tuple(shlex.split(env.get("TRITON_ARGS", ""))), admin_key=admin_key)
        binary = find_tritonserver()
    except (EntrypointError, RepositoryError, ServerError, ValueError) as e:
        print(f"entrypoint: error: {e}", file=sys.stderr, flush=True)
        return 2
    cmd = server.command(binary)
    if env.get("STUB_WATCHDOG") == "1":
        watchdog = [sys.executable, "-m", "launcher", "--model-repository", str(repo),
                    "--http-port", str(server.http_port), "--grpc-port", str(server.grpc_port),
                    "--metrics-port", str(server.metrics_port), "--log-verbose", str(server.log_verbose)]
        if admin_key:
            watchdog += ["--admin-key", "=".join(admin_key)]
        watchdog += ["--", *server.extra_args] if server.extra_args else []
        print("entrypoint: exec (with stub watchdog) " + " ".join(cmd), flush=True)
        os.execve(sys.executable, watchdog, env)
    print("entrypoint: exec " + " ".join(cmd), flush=True)
    os.execve(cmd[0], cmd, python_stub_env(binary, env))
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
