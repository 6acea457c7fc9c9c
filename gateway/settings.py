"""The gateway's options, from the command line (and the environment for the API key and CORS)."""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from pathlib import Path

import contract
from contract import GRPC_PORT
from contract.request_options import is_voice_name, voice_name_rule

API_KEY_ENV = "F5_GATEWAY_API_KEY"
CORS_ENV = "F5_GATEWAY_CORS_ORIGINS"  # comma-separated, as --cors-origin
# The model ids a request may name for the default model: ours, then OpenAI's, which clients such as Open
# WebUI and Home Assistant hardcode. --model-id adds more. Models added with `export --name NAME` are
# f5-tts-NAME (gateway/model_ids.py).
DEFAULT_MODEL_ID = "f5-tts"
OPENAI_MODEL_IDS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
# OpenAI's cap on `input`, which the server's default byte limit covers in any script (contract).
DEFAULT_MAX_INPUT_CHARS = contract.MAX_TEXT_CHARS
# What a browser sends as Origin: scheme://host[:port], no path; "*" allows any.
_ORIGIN = re.compile(r"https?://[^/\s]+")


@dataclass(frozen=True)
class Settings:
    triton_urls: tuple[str, ...] = (f"localhost:{GRPC_PORT}",)
    host: str = "127.0.0.1"
    port: int = 8080
    api_key: str | None = None
    voices_dir: Path = Path("voices")
    model_ids: tuple[str, ...] = (DEFAULT_MODEL_ID, *OPENAI_MODEL_IDS)
    voice_aliases: tuple[tuple[str, str], ...] = ()  # (alias, voice): e.g. OpenAI's names onto ours
    cors_origins: tuple[str, ...] = ()  # browser origins allowed to call the API; none by default
    max_input_chars: int = DEFAULT_MAX_INPUT_CHARS
    max_concurrency: int = 64
    max_upload_bytes: int = 20 * 1024 * 1024
    timeout: float = 600.0
    server_info_ttl: float = 30.0
    log_level: str = "info"


def parse_args(argv: list[str] | None = None, env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ) if env is None else env
    p = argparse.ArgumentParser(prog="python -m gateway", description=__doc__.split("\n")[0] + " (see docs/gateway.md)")
    p.add_argument(
        "--triton-url",
        action="append",
        metavar="HOST:PORT",
        help="Triton's gRPC endpoint; repeat for several servers (round robin, failover when one is "
        f"unreachable). Default: {Settings.triton_urls[0]}",
    )
    p.add_argument(
        "--host",
        default=Settings.host,
        help="address to listen on (default %(default)s: this machine only; 0.0.0.0 for all interfaces)",
    )
    p.add_argument("--port", type=int, default=Settings.port, help="default %(default)s")
    p.add_argument(
        "--api-key",
        help=f"require 'Authorization: Bearer KEY' on /v1 (default: ${API_KEY_ENV}, else "
        "no key; prefer the variable: arguments are visible to other users in ps)",
    )
    p.add_argument(
        "--voices-dir",
        type=Path,
        default=Settings.voices_dir,
        help="the voice library: uploaded voices are stored here (default ./%(default)s)",
    )
    p.add_argument(
        "--model-id",
        action="append",
        default=[],
        metavar="ID",
        help="another id clients may name for the default model; repeat for more (always served: "
        f"{', '.join(Settings.model_ids)}; a model added with export --name NAME is {DEFAULT_MODEL_ID}-NAME)",
    )
    p.add_argument(
        "--voice-alias",
        action="append",
        default=[],
        metavar="ALIAS=VOICE",
        help="let requests name VOICE (registered or in the library) as ALIAS, e.g. alloy=nature for "
        "clients that only offer OpenAI's voices; repeat for more",
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="let browser pages from ORIGIN (e.g. https://chat.example.com, or * for any) call the API; "
        f"repeat for more (default: ${CORS_ENV}, comma-separated, else none)",
    )
    p.add_argument(
        "--max-input-chars",
        type=int,
        default=Settings.max_input_chars,
        help="longest `input` in characters (default %(default)s, OpenAI's)",
    )
    p.add_argument(
        "--max-concurrency",
        type=int,
        default=Settings.max_concurrency,
        help="speech requests in flight; more are answered 429 (default %(default)s)",
    )
    p.add_argument(
        "--max-upload-mb",
        type=float,
        default=Settings.max_upload_bytes / 2**20,
        help="largest voice upload in MiB (default %(default)s)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=Settings.timeout,
        help="seconds one synthesis may take on Triton (default %(default)s)",
    )
    p.add_argument("--log-level", default=Settings.log_level, choices=["debug", "info", "warning", "error"])
    a = p.parse_args(argv)
    for name in ("port", "max_input_chars", "max_concurrency", "max_upload_mb", "timeout"):
        if getattr(a, name) <= 0 and not (name == "port" and a.port == 0):
            p.error(f"--{name.replace('_', '-')} must be positive, got {getattr(a, name)}")
    model_ids = tuple(dict.fromkeys(Settings.model_ids + tuple(m.strip() for m in a.model_id)))  # added, in order
    if "" in model_ids:
        p.error("--model-id must not be empty")
    origins = a.cors_origin or [o.strip() for o in env.get(CORS_ENV, "").split(",") if o.strip()]
    for origin in origins:
        if origin != "*" and not _ORIGIN.fullmatch(origin):
            p.error(
                f"--cors-origin {origin!r} is not an origin: give scheme://host[:port] as a browser sends it "
                "(e.g. https://chat.example.com, no path or trailing slash), or * for any"
            )
    return Settings(
        triton_urls=tuple(a.triton_url or Settings.triton_urls),
        host=a.host,
        port=a.port,
        api_key=a.api_key or env.get(API_KEY_ENV) or None,
        voices_dir=a.voices_dir,
        model_ids=model_ids,
        voice_aliases=_voice_aliases(p, a.voice_alias),
        cors_origins=tuple(origins),
        max_input_chars=a.max_input_chars,
        max_concurrency=a.max_concurrency,
        max_upload_bytes=int(a.max_upload_mb * 2**20),
        timeout=a.timeout,
        log_level=a.log_level,
    )


def _voice_aliases(p: argparse.ArgumentParser, specs: list[str]) -> tuple[tuple[str, str], ...]:
    """ALIAS=VOICE specs -> (alias, voice) pairs; a bad one stops the start with what was wrong."""
    found: dict[str, str] = {}
    for spec in specs:
        alias, sep, voice = (part.strip() for part in spec.partition("="))
        if not sep or not alias or not voice:
            p.error(f"--voice-alias {spec!r}: expected ALIAS=VOICE, e.g. alloy=nature")
        for name in (alias, voice):
            if not is_voice_name(name):
                p.error(f"--voice-alias {spec!r}: {name!r} is not a voice name ({voice_name_rule()})")
        if alias == voice:
            p.error(f"--voice-alias {spec!r}: an alias must differ from the voice it names")
        if found.get(alias, voice) != voice:
            p.error(f"--voice-alias {spec!r}: {alias!r} is already an alias of {found[alias]!r}")
        found[alias] = voice
    for alias, voice in found.items():
        if voice in found:  # one step only: an alias names a voice, never another alias
            p.error(
                f"--voice-alias {alias}={voice}: {voice!r} is itself an alias (of {found[voice]!r}); name the "
                "voice directly"
            )
    return tuple(found.items())
