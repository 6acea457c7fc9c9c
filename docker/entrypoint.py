"""Container entrypoint: check (or build) the model repository, say what was found, exec tritonserver.

Settings come from the environment: `python3 docker/entrypoint.py --help` lists them (declared in
deploy/settings.py, ContainerSettings). MODEL_REPOSITORY (default /models) is a volume; when it
holds no repository, one is exported into it on first start (F5_CHECKPOINT, else the released
checkpoint of F5_MODEL_CONFIG from the Hugging Face cache or hub, as `python -m export` does).
Every failure, a bad variable included, exits 2 with one line naming the cause. tritonserver then
runs as this process (exec), with the launcher's flags: --exit-on-error, --strict-readiness, model
control none; a model that fails to load makes it exit 1 with the model's error in its log. With
STUB_WATCHDOG=1 the launcher runs it instead, and exits 3 when a Python stub dies (Triton 2.5x
neither restarts a dead stub nor reports the model unready), so the restart policy replaces it.
"""

from __future__ import annotations

import os
import sys

import contract
from deploy.preflight import RepositoryError, check_repository, describe, export_on_first_start, gpu_name
from deploy.settings import ContainerSettings, help_lines, read
from launcher.server import ServerError, TritonServer, find_tritonserver, python_stub_env


class EntrypointError(RuntimeError):
    pass


def main(env: dict[str, str] | None = None, argv: list[str] | None = None) -> int:
    if {"-h", "--help"} & set(sys.argv[1:] if argv is None else argv):
        print(__doc__.split("\n", 1)[0] + "\n\nEnvironment (unset or empty: the default; empty shell words: none):")
        print("\n".join(f"  {line}" for line in help_lines(ContainerSettings)))
        return 0
    env = dict(os.environ if env is None else env)
    try:
        settings = read(ContainerSettings, env)
        repo = settings.repository
        if not repo.is_dir():
            raise EntrypointError(f"MODEL_REPOSITORY={repo} is not a directory (mount the model volume there)")
        gpu = gpu_name()
        if not (repo / contract.TTS_MODEL / contract.MODEL_CONFIG_FILE).is_file():
            try:
                export_on_first_start(repo, settings.export, gpu)
            except RepositoryError as e:
                raise EntrypointError(
                    f"MODEL_REPOSITORY={repo} holds no model repository "
                    f"({contract.TTS_MODEL}/{contract.MODEL_CONFIG_FILE} is missing); {e}"
                ) from None
        found = check_repository(repo, gpu)
        print(f"entrypoint: {describe(found, gpu)}", flush=True)
        server = TritonServer(repo, admin_key=settings.admin_key, **settings.triton.server_options())
        binary = find_tritonserver()
    except (EntrypointError, RepositoryError, ServerError, ValueError) as e:  # SettingError is a ValueError
        print(f"entrypoint: error: {e}", file=sys.stderr, flush=True)
        return 2
    cmd = server.command(binary)
    if settings.stub_watchdog:
        # The launcher gets the ports the server was given, 0s already replaced by free ones.
        watchdog = [
            sys.executable,
            "-m",
            "launcher",
            "--model-repository",
            str(repo),
            "--http-port",
            str(server.http_port),
            "--grpc-port",
            str(server.grpc_port),
            "--metrics-port",
            str(server.metrics_port),
            "--log-verbose",
            str(server.log_verbose),
        ]
        if settings.admin_key:
            watchdog += ["--admin-key", "=".join(settings.admin_key)]
        watchdog += ["--", *server.extra_args] if server.extra_args else []
        print("entrypoint: exec (with stub watchdog) " + " ".join(cmd), flush=True)
        os.execve(sys.executable, watchdog, env)
    print("entrypoint: exec " + " ".join(cmd), flush=True)
    os.execve(cmd[0], cmd, python_stub_env(binary, env))
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
