"""A Python-backend stub that outlives its tritonserver is killed.

The stub's own check (python_backend's health thread: kill(server_pid, 0) every 300 ms, then a
clean-up that takes the GIL) was seen to leave f5_tts's stub running 30 s after its server was
SIGKILLed: kill() cannot tell a dead-but-unreaped server from a live one, and a stub whose main
thread waits on its dead server while holding the GIL (request.is_cancelled() is such a call, made
between ODE steps) cannot run any clean-up of its own, nor a watcher thread. So the watcher is a
separate process: a shell loop, started at load, that reads the stub's parent from the kernel
(which re-parents the stub the moment its server dies, reaped or not) and SIGKILLs the stub then.
It exits on its own once the stub is gone, and lives in the server's process group, so stopping
the server stops it too.
"""

from __future__ import annotations

import os
import subprocess

POLL_S = 1.0

# $1 stub pid, $2 its server's pid, $3 poll seconds. /proc/PID/stat: "pid (comm) state ppid ...";
# the stub's comm has no spaces.
_WATCH = """
while kill -0 "$1" 2>/dev/null; do
    read -r _ _ _ parent _ < "/proc/$1/stat" || exit 0
    if [ "$parent" != "$2" ]; then
        echo "tritonserver pid $2 is gone; killing its stub pid $1" >&2
        kill -9 "$1"
        exit 0
    fi
    sleep "$3"
done
"""


def exit_when_orphaned(poll_s: float = POLL_S) -> subprocess.Popen:
    """Start the watcher of this process (the stub) and its parent (the server); returns it."""
    return subprocess.Popen(
        ["/bin/sh", "-c", _WATCH, "stub-lifeline", str(os.getpid()), str(os.getppid()), f"{poll_s:g}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        close_fds=True,
    )
