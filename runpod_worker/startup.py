"""Worker start-up: the weights on the network volume, then a warm tritonserver.

Settings come from the environment, as deploy/settings.py declares them (WorkerSettings;
`python -m deploy` lists them): F5_VOLUME, MODEL_REPOSITORY inside it, the first-start export's
F5_CHECKPOINT, F5_VOCODER, F5_MODEL_CONFIG and F5_EXPORT_ARGS, tritonserver's ports, LOG_VERBOSE
and TRITON_ARGS, F5_READY_TIMEOUT and F5_CONCURRENCY. Relative paths are taken inside the volume;
unset, F5_CHECKPOINT and F5_VOCODER are the volume's checkpoints/model_1250000.safetensors and
checkpoints/vocos-mel-24khz when it holds them. The settings, the repository checks and the export
are the Triton image's own (deploy/), so both images accept and refuse the same volumes.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import re
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import contract
from contract.errors import LOADED_ON
from deploy import preflight
from deploy.settings import (
    VOLUME_CHECKPOINT,
    VOLUME_VOCODER,
    ExportSettings,
    SettingError,
    TritonSettings,
    WorkerSettings,
    read,
)
from launcher.server import ServerError, TritonServer

log = logging.getLogger("runpod_worker")


class WorkerStartError(RuntimeError):
    """The worker cannot serve; the message names the cause and what to change."""


@dataclass(frozen=True)
class Settings:
    """WorkerSettings with the paths resolved inside the volume."""

    volume: Path
    repository: Path
    export: ExportSettings  # checkpoint and vocoder absolute; checkpoint None: the released one
    triton: TritonSettings
    ready_timeout: float
    concurrency: int

    @property
    def checkpoint(self) -> Path | None:
        return Path(self.export.checkpoint) if self.export.checkpoint else None

    @classmethod
    def from_env(cls, env: dict[str, str]) -> "Settings":
        try:
            given = read(WorkerSettings, env)
        except SettingError as e:
            raise WorkerStartError(str(e)) from None
        volume = given.volume
        if not volume.is_dir():
            raise WorkerStartError(
                f"the network volume F5_VOLUME={volume} is not a directory: attach the volume "
                "to the endpoint (RunPod mounts it at /runpod-volume) or set F5_VOLUME"
            )
        if given.export.checkpoint:
            checkpoint = volume / given.export.checkpoint
        else:
            checkpoint = volume / VOLUME_CHECKPOINT if (volume / VOLUME_CHECKPOINT).is_file() else None
        vocoder = given.export.vocoder or (VOLUME_VOCODER if (volume / VOLUME_VOCODER).is_dir() else None)
        export = dataclasses.replace(
            given.export,
            checkpoint=str(checkpoint) if checkpoint else None,
            vocoder=volume / vocoder if vocoder else None,
        )
        return cls(
            volume=volume,
            repository=volume / given.repository,
            export=export,
            triton=given.triton,
            ready_timeout=given.ready_timeout,
            concurrency=given.concurrency,
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
            "F5_CHECKPOINT at it"
        )
    if not os.access(settings.volume, os.W_OK):
        raise WorkerStartError(
            f"the volume {settings.volume} is not writable by uid {os.getuid()}, so {settings.checkpoint} cannot be "
            f"exported into it: make it writable, or upload an exported repository to {settings.repository}"
        )
    private = settings.volume / f".{settings.repository.name}.{socket.gethostname()}-{os.getpid()}"
    started = time.monotonic()
    try:
        preflight.export_on_first_start(private, settings.export, gpu)
    except preflight.RepositoryError as e:
        config = settings.repository / contract.TTS_MODEL / contract.MODEL_CONFIG_FILE
        raise WorkerStartError(
            f"the volume {settings.volume} holds no exported repository ({config} is missing); {e}"
        ) from None
    try:
        os.rename(private, settings.repository)  # replaces an empty directory, refuses a full one
    except OSError as e:
        shutil.rmtree(private, ignore_errors=True)
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise WorkerStartError(f"cannot move the export into {settings.repository}: {e}") from None
        log.info("another worker exported %s first; using that one", settings.repository)
        return
    log.info(
        "exported %s into %s in %.1f s",
        settings.checkpoint or "the released checkpoint",
        settings.repository,
        time.monotonic() - started,
    )


def _server_version(server: TritonServer) -> str:
    with server.open_http("/v2", timeout=5) as r:
        return json.load(r).get("version", "?")


def _model_load_line(log_text: str) -> str | None:
    """The f5_tts model's own start-up line, "f5_tts (...) loaded on <device> in <s> s" (model.py logs it
    after initialize; contract.errors.LOADED_ON is the phrase both sides share)."""
    found = re.findall(rf"{contract.TTS_MODEL} \([^)]*\) {re.escape(LOADED_ON)} [^\"\n]*", log_text)
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

    server = TritonServer(settings.repository, ready_timeout=settings.ready_timeout, **settings.triton.server_options())
    started = time.monotonic()
    try:
        server.start()
    except ServerError as e:
        if e.log_path is None:  # refused before tritonserver ran: a port in use, no server binary
            raise WorkerStartError(str(e)) from None
        # The model's own error line when one failed to load; else where the log stopped.
        cause = e.causes[0] if e.causes else "the server log is empty"
        raise WorkerStartError(f"{e.headline}: {cause} (server log {e.log_path})") from None
    load_line = _model_load_line(server.log_text())
    log.info(
        "tritonserver %s pid %d ready in %.1f s, models loaded and warmed up%s (gRPC %s, HTTP %s, log %s)",
        _server_version(server),
        server.pid,
        time.monotonic() - started,
        f"; {load_line}" if load_line else "",
        server.grpc_url,
        server.http_url,
        server.log_path,
    )
    return server
