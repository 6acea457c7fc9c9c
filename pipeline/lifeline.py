"""A Python-backend stub that outlives its tritonserver exits on its own.

The stub's own check (python_backend's health thread: kill(server_pid, 0) every 300 ms) was seen
to leave one stub of three running 30 s after its server was SIGKILLed, and kill() cannot tell a
dead-but-unreaped server from a live one. The kernel's view is immediate: a process whose parent
died is re-parented at once, so its parent pid changes whether or not anyone has reaped the server.
"""

import os
import sys
import threading
import time

POLL_S = 1.0


def exit_when_orphaned(poll_s: float = POLL_S) -> threading.Thread:
    """Start a daemon thread that ends this process (exit status 1, no clean-up: its server is gone and
    with it every request) once its parent process has died. It says so on stderr, which the server's
    log file still holds open: Triton's logger would need the dead server."""
    server = os.getppid()

    def watch():
        while True:
            time.sleep(poll_s)
            if os.getppid() != server:
                print(
                    f"tritonserver pid {server} is gone; its stub pid {os.getpid()} exits", file=sys.stderr, flush=True
                )
                os._exit(1)

    thread = threading.Thread(target=watch, name="exit-when-orphaned", daemon=True)
    thread.start()
    return thread
