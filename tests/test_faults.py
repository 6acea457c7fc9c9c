"""Faults at run time: a server that goes away mid-request, a server that does not answer in time.

Each waits for a condition it observes, never for a fixed time: the server's pending-request metric
proves a request is in flight before the server is killed, and a frozen server (SIGSTOP) cannot
answer however fast the machine is. Start-up faults (broken repositories, a dead stub) are in
test_launcher.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import LONG_TEXT, SHORT_TEXT, pending_requests, speak, wait_for

import contract
from client import SynthesisError
from export.repository import REFERENCE_TEXT, REFERENCE_WAV

ROOT = Path(__file__).resolve().parent.parent
PROTOCOLS = ("grpc", "http")


def _client(*args):
    return subprocess.Popen(
        [sys.executable, "-m", "client", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def _one_at_a_time(repo: Path, dest: Path) -> Path:
    """A copy of `repo` whose f5_tts executes one request at a time: a second request waits in the
    queue, where the server's pending-request metric counts it."""
    shutil.copytree(repo, dest)
    for p in dest.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    config = dest / contract.TTS_MODEL / contract.MODEL_CONFIG_FILE
    text = config.read_text()
    assert text.count("max_batch_size: 8") == 1
    config.write_text(text.replace("max_batch_size: 8", "max_batch_size: 1"))
    return dest


def test_a_server_killed_mid_request_is_reported_as_gone(tiny_repo, tmp_path, start_server, reference):
    server = start_server(_one_at_a_time(tiny_repo, tmp_path / "repo"))
    killed = threading.Event()

    def keep_busy():  # one request at a time, always one: the instance never idles
        while not killed.is_set():
            try:
                speak(server, reference, LONG_TEXT, nfe_step=64)
            except SynthesisError:
                pass

    busy = threading.Thread(target=keep_busy, daemon=True)
    busy.start()
    outputs = {p: tmp_path / f"{p}.wav" for p in PROTOCOLS}
    clients = {
        p: _client(
            "--protocol",
            p,
            "--url",
            server.grpc_url if p == "grpc" else server.http_url,
            "--reference-audio",
            REFERENCE_WAV,
            "--reference-text",
            REFERENCE_TEXT,
            "--text",
            LONG_TEXT,
            "--nfe-step",
            128,
            "--output",
            outputs[p],
        )
        for p in PROTOCOLS
    }
    try:
        # One request executes; the busy loop has at most one more: two pending are both clients'.
        wait_for(lambda: pending_requests(server) >= len(PROTOCOLS), "both clients' requests in the queue")
        os.killpg(server.pid, signal.SIGKILL)
        killed.set()
        for protocol, client in clients.items():
            _, stderr = client.communicate(timeout=60)
            assert client.returncode == 1, (protocol, stderr)
            assert "client: error:" in stderr and "Traceback" not in stderr, stderr
            # not "Socket closed" / "Connection refused": the connection had been made, then the server went away
            assert "closed the connection during the request and went away" in stderr, (protocol, stderr)
    finally:
        killed.set()
        for client in clients.values():
            if client.poll() is None:
                client.kill()
                client.wait()
        busy.join(timeout=120)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]  # no WAV, no temp file


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_client_timeout(server, tmp_path, reference, protocol):
    """The session's server, frozen: it holds the connection but cannot answer, so the client's timeout
    is what ends the request. Thawed, it serves on."""
    out = tmp_path / "out.wav"
    url = server.grpc_url if protocol == "grpc" else server.http_url
    os.killpg(server.pid, signal.SIGSTOP)
    try:
        client = _client(
            "--protocol",
            protocol,
            "--url",
            url,
            "--reference-audio",
            REFERENCE_WAV,
            "--reference-text",
            REFERENCE_TEXT,
            "--text",
            SHORT_TEXT,
            "--timeout",
            1,
            "--output",
            out,
        )
        _, stderr = client.communicate(timeout=120)
    finally:
        os.killpg(server.pid, signal.SIGCONT)
    assert client.returncode == 1
    assert "client: error: timed out: no answer from the server at" in stderr and "within 1 s" in stderr, stderr
    assert list(tmp_path.iterdir()) == []
    assert speak(server, reference, SHORT_TEXT, protocol=protocol, nfe_step=2).size > 0
