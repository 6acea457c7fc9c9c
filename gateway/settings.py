"""The gateway's options, from the command line (and the environment for the API key)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from contract import GRPC_PORT

API_KEY_ENV = "F5_GATEWAY_API_KEY"
# The model ids a request may name; operators may add aliases (e.g. tts-1) for clients that hardcode one.
DEFAULT_MODEL_ID = "f5-tts"
# OpenAI's own cap on `input`; the server's byte limit (an export parameter) applies as well.
OPENAI_MAX_INPUT_CHARS = 4096


@dataclass(frozen=True)
class Settings:
    triton_urls: tuple[str, ...] = (f"localhost:{GRPC_PORT}",)
    host: str = "127.0.0.1"
    port: int = 8080
    api_key: str | None = None
    voices_dir: Path = Path("voices")
    model_ids: tuple[str, ...] = (DEFAULT_MODEL_ID,)
    max_input_chars: int = OPENAI_MAX_INPUT_CHARS
    max_concurrency: int = 64
    max_upload_bytes: int = 20 * 1024 * 1024
    timeout: float = 600.0
    server_info_ttl: float = 30.0
    log_level: str = "info"


def parse_args(argv: list[str] | None = None, env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ) if env is None else env
    p = argparse.ArgumentParser(prog="python -m gateway", description=__doc__.split("\n")[0] + " (see README)")
    p.add_argument("--triton-url", action="append", metavar="HOST:PORT",
                   help="Triton's gRPC endpoint; repeat for several servers (round robin, failover when one is "
                        f"unreachable). Default: {Settings.triton_urls[0]}")
    p.add_argument("--host", default=Settings.host, help="address to listen on (default %(default)s: this machine "
                   "only; 0.0.0.0 for all interfaces)")
    p.add_argument("--port", type=int, default=Settings.port, help="default %(default)s")
    p.add_argument("--api-key", help=f"require 'Authorization: Bearer KEY' on /v1 (default: ${API_KEY_ENV}, else "
                   "no key; prefer the variable: arguments are visible to other users in ps)")
    p.add_argument("--voices-dir", type=Path, default=Settings.voices_dir,
                   help="the voice library: uploaded voices are stored here (default ./%(default)s)")
    p.add_argument("--model-id", action="append", metavar="ID",
                   help=f"a model id clients may name; repeat for aliases (default {DEFAULT_MODEL_ID})")
    p.add_argument("--max-input-chars", type=int, default=Settings.max_input_chars,
                   help="longest `input` in characters (default %(default)s, OpenAI's)")
    p.add_argument("--max-concurrency", type=int, default=Settings.max_concurrency,
                   help="speech requests in flight; more are answered 429 (default %(default)s)")
    p.add_argument("--max-upload-mb", type=float, default=Settings.max_upload_bytes / 2**20,
                   help="largest voice upload in MiB (default %(default)s)")
    p.add_argument("--timeout", type=float, default=Settings.timeout,
                   help="seconds one synthesis may take on Triton (default %(default)s)")
    p.add_argument("--log-level", default=Settings.log_level, choices=["debug", "info", "warning", "error"])
    a = p.parse_args(argv)
    for name in ("port", "max_input_chars", "max_concurrency", "max_upload_mb", "timeout"):
        if getattr(a, name) <= 0 and not (name == "port" and a.port == 0):
            p.error(f"--{name.replace('_', '-')} must be positive, got {getattr(a, name)}")
    return Settings(
        triton_urls=tuple(a.triton_url or Settings.triton_urls), host=a.host, port=a.port,
        api_key=a.api_key or env.get(API_KEY_ENV) or None, voices_dir=a.voices_dir,
        model_ids=tuple(a.model_id or Settings.model_ids), max_input_chars=a.max_input_chars,
        max_concurrency=a.max_concurrency, max_upload_bytes=int(a.max_upload_mb * 2**20), timeout=a.timeout,
        log_level=a.log_level)
