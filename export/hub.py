"""Fetch released files the way f5-tts does (hf:// paths through cached_path), failing fast offline."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse


class HubUnavailable(RuntimeError):
    pass


def _hub_reachable(timeout: float = 3.0) -> bool:
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _cached(repo_id: str, filename: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(repo_id, filename)
    return Path(hit) if isinstance(hit, str) else None


def fetch(repo_id: str, filename: str, hint: str) -> Path:
    """A file of a hub repository: from the local cache, else downloaded. `hint` says what to do offline."""
    hit = _cached(repo_id, filename)
    if hit is not None:
        return hit
    if not _hub_reachable():
        raise HubUnavailable(f"hf://{repo_id}/{filename} is not cached and the hub is unreachable (offline?); {hint}")
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id, filename))
    except Exception as e:
        raise HubUnavailable(f"could not fetch hf://{repo_id}/{filename} ({type(e).__name__}: {e}); {hint}") from e


def fetch_uri(uri: str, hint: str) -> Path:
    """hf://OWNER/REPO/path/in/repo -> local file."""
    parts = uri.removeprefix("hf://").split("/")
    if len(parts) < 3:
        raise ValueError(f"{uri!r} is not an hf://OWNER/REPO/FILE path")
    return fetch("/".join(parts[:2]), "/".join(parts[2:]), hint)
