"""`python -m gateway [--triton-url HOST:PORT ...] [--host H] [--port P]`: serve the speech API.

A start-up failure (an unusable voices directory, a port in use) exits 2 with one line naming the
cause. Triton need not be up yet: requests are answered 503 until it is ready.
"""

from __future__ import annotations

import logging
import sys

from gateway.settings import parse_args


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    logging.basicConfig(
        level=settings.log_level.upper(), stream=sys.stderr, format="%(asctime)s gateway %(levelname)s: %(message)s"
    )
    import uvicorn

    from gateway.app import create_app

    try:
        app = create_app(settings)
    except OSError as e:
        print(f"gateway: error: {e}", file=sys.stderr, flush=True)
        return 2
    logging.getLogger("gateway").info(
        "serving http://%s:%d (Triton %s; API key %s)",
        settings.host,
        settings.port,
        ", ".join(settings.triton_urls),
        "required" if settings.api_key else "not required",
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            access_log=settings.log_level == "debug",
            timeout_graceful_shutdown=10,
        )
    )
    try:
        server.run()
    except SystemExit:  # uvicorn exits when it cannot start (a port in use), after logging why
        pass
    if not server.started:
        print(
            f"gateway: error: could not serve on {settings.host}:{settings.port} (a port in use? see the log above)",
            file=sys.stderr,
            flush=True,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
