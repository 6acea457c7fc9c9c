"""Shell entry point: `python -m launcher --model-repository DIR [--http-port N ...]`.

Starts tritonserver, waits until every model is ready, then keeps it in the
foreground until Ctrl-C / SIGTERM. Exits 1 with the model's own error line when a model
fails to load, and 3 when a Python-backend stub dies while serving: Triton 2.51 neither
restarts the stub nor reports the model not ready (every request to that instance fails
with "Stub process ... is not healthy"), so the launcher stops the server and lets the
supervisor (Docker restart policy, Kubernetes) start a fresh one.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path

import contract
from launcher.server import ADMIN_PROTOCOLS, GrpcTls, ServerError, TritonServer

# With a dead stub tritonserver hangs on SIGTERM (it waits for the stub): kill it soon.
STUB_DEATH_GRACE = 3.0

# Exit statuses, for the supervisor above (a restart policy) to tell apart.
EXIT_FAILED = 1  # tritonserver did not start, or exited on its own
EXIT_STUB_DIED = 3  # a Python stub died while serving: only a fresh server serves its model again


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m launcher", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model-repository", type=Path, required=True)
    p.add_argument(
        "--host",
        default="0.0.0.0",
        help="address the HTTP, gRPC and metrics endpoints bind to (default: %(default)s, all interfaces; "
        "127.0.0.1 keeps the server on this machine)",
    )
    p.add_argument("--http-port", type=int, default=contract.HTTP_PORT)
    p.add_argument("--grpc-port", type=int, default=contract.GRPC_PORT)
    p.add_argument("--metrics-port", type=int, default=contract.METRICS_PORT)
    p.add_argument("--log-verbose", type=int, default=0)
    p.add_argument("--ready-timeout", type=float, default=300.0, help="seconds to wait for readiness")
    p.add_argument(
        "--log-file",
        type=Path,
        help="server log (default: a temp file, removed after a clean stop and kept after a failure)",
    )
    p.add_argument("--check", action="store_true", help="exit 0 once ready instead of serving")
    p.add_argument(
        "--admin-key",
        metavar="HEADER=VALUE",
        help=f"require this header for the admin APIs ({', '.join(ADMIN_PROTOCOLS)}); inference, "
        "health, metadata and statistics stay open",
    )
    p.add_argument("--grpc-tls-cert", type=Path, help="server certificate (PEM): serve gRPC over TLS")
    p.add_argument("--grpc-tls-key", type=Path, help="server private key (PEM)")
    p.add_argument("--grpc-tls-root", type=Path, help="CA (PEM) that client certificates must chain to (mutual TLS)")
    p.add_argument("extra", nargs="*", help="extra tritonserver flags after --")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    admin_key = None
    if args.admin_key:
        header, sep, value = args.admin_key.partition("=")
        if not sep or not header or not value:
            p.error("--admin-key must be HEADER=VALUE")
        admin_key = (header, value)
    tls = None
    if args.grpc_tls_cert or args.grpc_tls_key:
        if not (args.grpc_tls_cert and args.grpc_tls_key):
            p.error("--grpc-tls-cert and --grpc-tls-key go together")
        tls = GrpcTls(args.grpc_tls_cert, args.grpc_tls_key, args.grpc_tls_root)
    server = TritonServer(
        args.model_repository,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        log_verbose=args.log_verbose,
        ready_timeout=args.ready_timeout,
        extra_args=tuple(args.extra),
        log_path=args.log_file,
        admin_key=admin_key,
        grpc_tls=tls,
        host=args.host,
    )
    # Before the start: a SIGTERM while the models load (a pod scaled down while starting) stops
    # tritonserver through stop(), not through the kernel's SIGKILL when this process dies.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    try:
        server.start()  # stops the server itself on any exception, KeyboardInterrupt included
    except ServerError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("stopped before tritonserver was ready", file=sys.stderr)
        return 0
    kept = "" if args.log_file else " (removed after a clean stop)"
    print(f"tritonserver ready: pid {server.pid}, {server.bound()}, log {server.log_path}{kept}", flush=True)
    if args.check:
        server.stop()
        return 0
    try:
        while server.process and server.process.poll() is None:
            dead = server.dead_stubs()
            if dead:
                print(
                    f"error: the Python stub of {', '.join(dead)} died; Triton does not restart it and would "
                    f"fail every request to it. Stopping the server (log {server.log_path})",
                    file=sys.stderr,
                )
                server.stop(grace=STUB_DEATH_GRACE)
                return EXIT_STUB_DIED
            time.sleep(1)
        print(
            f"error: tritonserver exited with code {server.process.returncode}; log {server.log_path}", file=sys.stderr
        )
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
