"""`python -m runpod_worker [runpod SDK flags]`: warm tritonserver first, then RunPod jobs.

The SDK's own flags pass through: `--test_input '{"input": {...}}'` runs one job and exits,
`--rp_serve_api --rp_api_host 127.0.0.1 --rp_api_port N` serves its local API (POST /runsync).
Start-up settings come from the environment (see runpod_worker/startup.py). A start-up failure
exits 2 with one line on stderr naming the cause; the server never outlives the worker (the
launcher stops it, and the kernel kills it should the worker die first).
"""

from __future__ import annotations

import logging
import os
import sys
import time

from runpod_worker.handler import Handler
from runpod_worker.startup import Settings, WorkerStartError, log, start_server


def main() -> int:
    started = time.monotonic()
    # Progress on stdout; stderr carries only a start-up failure's one line.
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="runpod_worker: %(message)s")
    try:
        # The SDK logs every job's input at DEBUG, its default: base64 audio, and users' data.
        os.environ.setdefault("RUNPOD_LOG_LEVEL", "INFO")
        try:
            import runpod
        except ImportError:
            raise WorkerStartError(
                "the runpod package is not installed: pip install -r requirements/runpod.txt"
            ) from None
        settings = Settings.from_env(dict(os.environ))
        server = start_server(settings)
    except WorkerStartError as e:
        print(f"runpod_worker: error: {e}", file=sys.stderr, flush=True)
        return 2
    try:
        log.info(
            "ready in %.1f s from start: runpod %s, up to %d concurrent jobs",
            time.monotonic() - started,
            runpod.__version__,
            settings.concurrency,
        )
        runpod.serverless.start(
            {
                "handler": Handler(server.grpc_url),
                # Several jobs in flight at once, so that Triton's dynamic batcher can batch them.
                "concurrency_modifier": lambda _current: settings.concurrency,
            }
        )
        return 0
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
