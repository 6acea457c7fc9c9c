"""Faults: broken repositories at start, a server that dies or is slow mid-request, a dead stub.

Observed with the bundled Triton 2.51: when a Python stub dies, the server neither restarts
it nor reports the model not ready; every request to that instance fails with INTERNAL
"Stub process '<instance>' is not healthy" and SIGTERM then hangs. The launcher's watchdog
therefore stops the server and exits 3, so a supervisor starts a fresh one.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from client import SynthesisError
from export.repository import REFERENCE_TEXT, REFERENCE_WAV
from launcher import ServerError, TritonServer
from launcher.server import free_port

from conftest import LONG_TEXT, SHORT_TEXT, speak

ROOT = Path(__file__).resolve().parent.parent
START_BOUND_S = 120


def _copy(repo: Path, dest: Path) -> Path:
    shutil.copytree(repo, dest)
    for p in dest.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dest


def _corrupt_weights(repo):
    (repo / "f5_tts/1/model.safetensors").write_bytes(b"\x00\x01garbage" * 100)
    return "f5_tts/1/model.safetensors", "is not a readable safetensors file"


def _wrong_vocab(repo):
    vocab = repo / "f5_tts/1/vocab.txt"
    vocab.write_text("".join(vocab.read_text().splitlines(keepends=True)[:100]))
    return "f5_tts/1/vocab.txt", "vocab size mismatch: the weights were trained with 2545 tokens, the vocab file has 100"


def _missing_vocoder(repo):
    (repo / "vocoder/1/vocos.onnx").unlink()
    return "vocoder/1/vocos.onnx", "is missing"


def _corrupt_vocoder(repo):
    (repo / "vocoder/1/vocos.onnx").write_bytes(b"not onnx")
    return "vocoder/1/vocos.onnx", "vocos.onnx"


@pytest.mark.parametrize("breakage", [_corrupt_weights, _wrong_vocab, _missing_vocoder, _corrupt_vocoder],
                         ids=["corrupt_weights", "wrong_vocab_size", "missing_vocoder", "corrupt_vocoder"])
def test_broken_repository_fails_the_start_naming_the_file(tiny_repo, tmp_path, breakage):
    repo = _copy(tiny_repo, tmp_path / "repo")
    rel, problem = breakage(repo)
    started = time.monotonic()
    with pytest.raises(ServerError) as err:
        TritonServer(repo, ready_timeout=START_BOUND_S).start()
    assert time.monotonic() - started < START_BOUND_S
    message = str(err.value)
    assert "exited with code" in message, message  # a load failure, never a readiness timeout
    assert str(repo / rel) in message and problem in message, message


def _client(*args, timeout=120):
    return subprocess.Popen([sys.executable, "-m", "client", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_server_killed_mid_request(tiny_repo, tmp_path, protocol):
    out = tmp_path / "out.wav"
    server = TritonServer(tiny_repo).start()
    try:
        url = server.grpc_url if protocol == "grpc" else server.http_url
        client = _client("--protocol", protocol, "--url", url, "--reference-audio", REFERENCE_WAV,
                         "--reference-text", REFERENCE_TEXT, "--text", LONG_TEXT, "--nfe-step", 128, "--output", out)
        time.sleep(2.0)  # the request is in flight: 3 chunks x 128 steps take far longer
        assert client.poll() is None
        os.killpg(server.pid, signal.SIGKILL)
        _, stderr = client.communicate(timeout=60)
    finally:
        server.stop()
    assert client.returncode == 1
    assert "client: error:" in stderr and "Traceback" not in stderr
    # not "Socket closed" / "Connection refused": the connection had been made, then the server went away
    assert "closed the connection during the request and went away" in stderr, stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_client_timeout(server, tmp_path, protocol):
    out = tmp_path / "out.wav"
    url = server.grpc_url if protocol == "grpc" else server.http_url
    client = _client("--protocol", protocol, "--url", url, "--reference-audio", REFERENCE_WAV, "--reference-text",
                     REFERENCE_TEXT, "--text", LONG_TEXT, "--nfe-step", 128, "--timeout", 1, "--output", out)
    started = time.monotonic()
    _, stderr = client.communicate(timeout=120)
    assert client.returncode == 1
    assert time.monotonic() - started < 30
    assert "client: error: timed out: no answer from the server at" in stderr and "within 1 s" in stderr, stderr
    assert list(tmp_path.iterdir()) == []


def test_dead_stub_fails_requests_and_the_launcher_restarts_nothing_but_exits(tiny_repo, reference):
    http, grpc, metrics = free_port(), free_port(), free_port()
    launcher = subprocess.Popen(
        [sys.executable, "-m", "launcher", "--model-repository", str(tiny_repo), "--http-port", str(http),
         "--grpc-port", str(grpc), "--metrics-port", str(metrics)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True)
    try:
        server = TritonServer(tiny_repo, http_port=http, grpc_port=grpc, metrics_port=metrics)
        assert "tritonserver ready" in launcher.stdout.readline()  # the launcher has seen its stubs
        triton = subprocess.run(["pgrep", "-P", str(launcher.pid)], capture_output=True, text=True).stdout.split()
        assert len(triton) == 1
        stubs = [int(p) for p in subprocess.run(["pgrep", "-P", triton[0], "-f", "f5_tts/1/model.py"],
                                               capture_output=True, text=True).stdout.split()]
        assert len(stubs) == 1
        os.kill(stubs[0], signal.SIGKILL)
        with pytest.raises(SynthesisError) as err:  # reported per request, with the instance named
            speak(server, reference, SHORT_TEXT)
        assert "f5_tts_0_0" in str(err.value) and "not healthy" in str(err.value)
        _, stderr = launcher.communicate(timeout=60)
        assert launcher.returncode == 3
        assert "the Python stub of f5_tts_0_0 died" in stderr
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()
    assert subprocess.run(["pgrep", "-f", f"tritonserver.*--http-port={http}"]).returncode == 1
