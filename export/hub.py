"""Fetch released files from the Hugging Face hub, as f5-tts does (hf:// paths), through huggingface_hub.

huggingface_hub brings what real users rely on: its cache (HF_HOME, HF_HUB_CACHE), offline
mode (HF_HUB_OFFLINE), mirrors (HF_ENDPOINT), proxies (HTTPS_PROXY), tokens and timeouts
(HF_HUB_ETAG_TIMEOUT). Two choices on top:
- a file already in the cache is used without asking the hub (released files never change);
- before a download, one metadata request without retries says whether the hub answers:
  `hf_hub_download` retries a failed connection for about 25 s before giving up.
"""

from __future__ import annotations

from pathlib import Path

from export.errors import ExportError


class HubUnavailable(ExportError):
    """The file is not cached and the hub cannot be reached (no network, offline mode, proxy or hub down)."""


class HubFileError(ExportError):
    """The hub answered but will not give the file (not found, gated, unauthorised)."""


def _unavailable(error: BaseException) -> bool:
    """A network-level failure, or an answer that says to come back later (5xx, 429)."""
    import httpx
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(error, HfHubHTTPError) and error.response is not None:
        return error.response.status_code >= 500 or error.response.status_code == 429
    return isinstance(error, (httpx.TransportError, ConnectionError, TimeoutError))


def _ask_hub(uri: str, call, hint: str):
    """call() -> its result; a failure becomes HubUnavailable or HubFileError naming the cause."""
    from huggingface_hub import constants

    try:
        return call()
    except Exception as e:  # huggingface_hub and httpx raise many types: _unavailable sorts them
        cause = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        if _unavailable(e):
            raise HubUnavailable(
                f"{uri} is not cached and the hub at {constants.ENDPOINT} is unreachable ({cause}); {hint}"
            ) from e
        raise HubFileError(f"the hub at {constants.ENDPOINT} refused {uri} ({cause}); {hint}") from e


def fetch(repo_id: str, filename: str, hint: str) -> Path:
    """A file of a hub repository: from the local cache, else downloaded. `hint` says what to do instead."""
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url, try_to_load_from_cache

    uri = f"hf://{repo_id}/{filename}"
    hit = try_to_load_from_cache(repo_id, filename)
    if isinstance(hit, str):
        return Path(hit)
    if constants.is_offline_mode():
        raise HubUnavailable(
            f"{uri} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE "
            f"is set, so the hub is not asked; {hint}"
        )
    _ask_hub(uri, lambda: get_hf_file_metadata(hf_hub_url(repo_id, filename)), hint)
    return Path(_ask_hub(uri, lambda: hf_hub_download(repo_id, filename), hint))


def fetch_uri(uri: str, hint: str) -> Path:
    """hf://OWNER/REPO/path/in/repo -> local file."""
    parts = uri.removeprefix("hf://").split("/")
    if len(parts) < 3:
        raise ExportError(f"{uri!r} is not an hf://OWNER/REPO/FILE path")
    return fetch("/".join(parts[:2]), "/".join(parts[2:]), hint)
