"""A Hugging Face cache laid out exactly as huggingface_hub writes it, and a network recorder.

Cache layout (what `hf_hub_download` writes and what it reads with HF_HUB_OFFLINE=1):
  $HF_HOME/hub/models--OWNER--NAME/refs/main                 the commit hash, no newline
  $HF_HOME/hub/models--OWNER--NAME/blobs/<etag>              sha256 for LFS files, git blob sha1 otherwise
  $HF_HOME/hub/models--OWNER--NAME/snapshots/<commit>/<path> relative symlink to ../../blobs/<etag>
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import threading
from pathlib import Path

from export.repository import sha256

# Files and key layouts of the releases that `python -m export` fetches by default.
F5_REPO, F5_CHECKPOINT = "SWivid/F5-TTS", "F5TTS_v1_Base/model_1250000.safetensors"
VOCOS_REPO = "charactr/vocos-mel-24khz"


def _git_blob_sha1(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def add_to_cache(
    hf_home: Path,
    repo_id: str,
    path_in_repo: str,
    source: Path,
    *,
    lfs: bool,
    commit: str = "0123456789abcdef0123456789abcdef01234567",
) -> Path:
    """Put `source` into the cache as `repo_id`'s `path_in_repo` at `commit` (moved, not copied)."""
    repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    etag = sha256(source) if lfs else _git_blob_sha1(source)
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    shutil.move(source, repo / "blobs" / etag)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    link = repo / "snapshots" / commit / path_in_repo
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(repo / "blobs" / etag, link.parent))
    return link


def fill_cache(hf_home: Path, checkpoint: Path, vocos_dir: Path) -> dict[str, Path]:
    """The default export's three files in the cache; returns their snapshot paths."""
    return {
        "checkpoint": add_to_cache(hf_home, F5_REPO, F5_CHECKPOINT, checkpoint, lfs=True),
        "vocos_config": add_to_cache(hf_home, VOCOS_REPO, "config.yaml", vocos_dir / "config.yaml", lfs=False),
        "vocos_weights": add_to_cache(
            hf_home, VOCOS_REPO, "pytorch_model.bin", vocos_dir / "pytorch_model.bin", lfs=True
        ),
    }


class NetworkRecorder:
    """A TCP listener on loopback that records the first line of every connection and answers `reply`.

    As HTTPS_PROXY it sees each CONNECT a client makes; as HF_ENDPOINT, each request line.
    """

    def __init__(self, reply: bytes = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"):
        self.reply = reply
        self.lines: list[str] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> "NetworkRecorder":
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        # A close alone does not wake the thread's accept(): it would wait out the join's timeout.
        self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(timeout=5)
        assert not self._thread.is_alive(), "the recorder's thread did not stop"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:  # closed by __exit__
                return
            with conn:
                conn.settimeout(5)
                data = b""
                try:
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    self.lines.append(data.split(b"\r\n", 1)[0].decode("latin-1"))
                    conn.sendall(self.reply)
                except OSError:
                    self.lines.append(data.split(b"\r\n", 1)[0].decode("latin-1"))
