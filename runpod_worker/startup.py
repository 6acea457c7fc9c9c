"""Worker start-up: the weights on the network volume, then a warm tritonserver.

Environment:
  F5_VOLUME          the network volume (default /runpod-volume, where RunPod mounts it)
  MODEL_REPOSITORY   the exported repository (default model_repository, inside the volume)
  F5_CHECKPOINT      exported once into MODEL_REPOSITORY when that holds no repository
                     (default checkpoints/model_1250000.safetensors inside the volume when it
                     exists, else the released F5TTS_v1_Base from the Hugging Face cache or hub)
  F5_VOCODER         local Vocos directory for that export (default checkpoints/vocos-mel-24khz
                     inside the volume when it exists, else the hub)
  F5_MODEL_CONFIG, F5_EXPORT_ARGS   as for the Triton image (docker/entrypoint.py)
  HTTP_PORT, GRPC_PORT, METRICS_PORT (8000, 8001, 8002), LOG_VERBOSE (0), TRITON_ARGS
  F5_READY_TIMEOUT   seconds allowed for loading and warming up the models (default 600)
  F5_CONCURRENCY     jobs this worker runs at once (default 8); they share Triton's batches
Relative paths are taken inside the volume. The repository checks and the export are the Triton
image's own (launcher/preflight.py), so both images accept and refuse the same volumes.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shlex
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import contract
from launcher import preflight
from launcher.server import ServerError, TritonServer, model_error_lines

log = logging.getLogger("runpod_worker")


class WorkerStartError(RuntimeError):
    """The worker cannot serve; the message names the cause and what to change."""


def _int_env(env: dict[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise WorkerStartError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise WorkerStartError(f"{name}={value}; at least {minimum} is allowed")
    return value


@dataclass(frozen=True)
class Settings:
    volume: Path
    repository: Path
    checkpoint: Path | None  # None: the released checkpoint, from the Hugging Face cache or hub
    vocoder: Path | None
    http_port: int
    grpc_port: int
    metrics_port: int
    log_verbose: int
    triton_args: tuple[str, ...]
    ready_timeout: float
    concurrency: int
    env: dict[str, str]

    @classmethod
    def from_env(cls, env: dict[str, str]) -> "Settings":
        volume = Path(env.get("F5_VOLUME", "/runpod-volume"))
        if not volume.is_dir():
            raise WorkerStartError(f"the network volume F5_VOLUME={volume} is not a directory: attach the volume "
                                   "to the endpoint (RunPod mounts it at /runpod-volume) or set F5_VOLUME")
        default_checkpoint = volume / "checkpoints" / "model_1250000.safetensors"
        if env.get("F5_CHECKPOINT"):
            checkpoint = volume / env["F5_CHECKPOINT"]
        else:
            checkpoint = default_checkpoint if default_checkpoint.is_file() else None
        default_vocoder = volume / "checkpoints" / "vocos-mel-24khz"
        vocoder = env.get("F5_VOCODER") or (str(default_vocoder) if default_vocoder.is_dir() else None)
        timeout = env.get("F5_READY_TIMEOUT", "600")
        try:
            ready_timeout = float(timeout)
        except ValueError:
            raise WorkerStartError(f"F5_READY_TIMEOUT={timeout!r} is not a number of seconds") from None
        return cls(
            volume=volume,
            repository=volume / env.get("MODEL_REPOSITORY", "model_repository"),
            checkpoint=checkpoint,
            vocoder=volume / vocoder if vocoder else None,
            http_port=_int_env(env, "HTTP_PORT", contract.HTTP_PORT, 0),
            grpc_port=_int_env(env, "GRPC_PORT", contract.GRPC_PORT, 0),
            metrics_port=_int_env(env, "METRICS_PORT", contract.METRICS_PORT, 0),
            log_verbose=_int_env(env, "LOG_VERBOSE", 0, 0),
            triton_args=tuple(shlex.split(env.get("TRITON_ARGS", ""))),
            ready_timeout=ready_timeout,
            concurrency=_int_env(env, "F5_CONCURRENCY", 8, 1),
            env=env,
        )


def export_once(settings: Settings, gpu: str | None) -> None:
    """Export the volume's checkpoint into the repository, safe against workers starting together.

    Every worker of an endpoint mounts the same volume: each exports into its own directory and
    renames it into place; a worker that loses the race drops its copy and uses the winner's.
    """
    if settings.checkpoint is not None and not settings.checkpoint.is_file():
        config = settings.repository / contract.TTS_MODEL / contract.MODEL_CONFIG_FILE
        raise WorkerStartError(
            f"the volume {settings.volume} holds neither an exported repository ({config} is missing) nor a "
            f"checkpoint ({settings.checkpoint} is missing): upload one of them, or point MODEL_REPOSITORY / "
            "F5_CHECKPOINT at it")
    if not os.access(settings.volume, os.W_OK):
        raise WorkerStartError(
            f"the volume {settings.volume} is not writable by uid {os.getuid()}, so {settings.checkpoint} cannot be "
            f"exported into it: make it writable, or upload an exported repository to {settings.repository}")
    private = settings.volume / f".{settings.repository.name}.{socket.gethostname()}-{os.getpid()}"
    env = dict(settings.env)
    env.pop("F5_CHECKPOINT", None)
    if settings.checkpoint is not None:
        env["F5_CHECKPOINT"] = str(settings.checkpoint)
    if settings.vocoder:
        env["F5_VOCODER"] = str(settings.vocoder)
    started = time.monotonic()
    try:
        preflight.export_on_first_start(private, env, gpu)
    except preflight.RepositoryError as e:
        config = settings.repository / contract.TTS_MODEL / contract.MODEL_CONFIG_FILE
        raise WorkerStartError(f"the volume {settings.volume} holds no exported repository ({config} is missing); "
                               f"{e}") from None
    try:
        os.rename(private, settings.repository)  # replaces an empty directory, refuses a full one
    except OSError as e:
        shutil.rmtree(private, ignore_errors=True)
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise WorkerStartError(f"cannot move the export into {settings.repository}: {e}") from None
        log.info("another worker exported %s first; using that one", settings.repository)
        return
    log.info("exported %s into %s in %.1f s", settings.checkpoint or "the released checkpoint", settings.repository,
             time.monotonic() - started)


def _server_version(server: TritonServer) -> str:
    with server.open_http("/v2", timeout=5) as r:
        return json.load(r).get("version", "?")


def _model_load_line(log_text: str) -> str | None:
    """The f5_tts model's own 'loaded on <device> in <s>' line (model.py logs it after initialize)."""
    found = re.findall(rf"{contract.TTS_MODEL} \([^)]*\) loaded on [^\"\n]*", log_text)
    return found[-1].strip() if found else None


def start_server(settings: Settings) -> TritonServer:
    """Check or export the repository, then start tritonserver and wait until it is warm."""
    try:
        gpu = preflight.gpu_name()
    except preflight.RepositoryError as e:
        raise WorkerStartError(str(e)) from None
    if not (settings.repository / contract.TTS_MODEL / contract.MODEL_CONFIG_FILE).is_file():
        export_once(settings, gpu)
    try:
        found = preflight.check_repository(settings.repository, gpu)
    except preflight.RepositoryError as e:
        raise WorkerStartError(str(e)) from None
    log.info(preflight.describe(found, gpu))

    server = TritonServer(settings.repository, http_port=settings.http_port, grpc_port=settings.grpc_port,
                          metrics_port=settings.metrics_port, log_verbose=settings.log_verbose,
                          ready_timeout=settings.ready_timeout, extra_args=settings.triton_args)
    started = time.monotonic()
    try:
        server.start()
    except ServerError as e:
        headline = str(e).split(";", 1)[0]
        # The model's own error line when one failed to load; else where the log stopped.
        text = server.log_text()
        cause = (model_error_lines(text) or [ln.strip() for ln in text.splitlines() if ln.strip()][-1:]
                 or ["the server log is empty"])[0]
        raise WorkerStartError(f"{headline}: {cause} (server log {server.log_path})") from None
    load_line = _model_load_line(server.log_text())
    log.info("tritonserver %s pid %d ready in %.1f s, models loaded and warmed up%s (gRPC %s, HTTP %s, log %s)",
             _server_version(server), server.pid, time.monotonic() - started,
             f"; {load_line}" if load_line else "", server.grpc_url, server.http_url, server.log_path)
    return server
