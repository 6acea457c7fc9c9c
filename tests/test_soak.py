"""Load and soak on loopback: concurrency 16, a few hundred requests, bounded in count and time.

Zero failures, every output equal to the same request served alone, bounded growth of the
server's memory after warm-up, and no process left behind once the server is stopped.
"""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import threading
import time

import pytest
from conftest import assert_same_audio, speak, wait_for

from client.api import make_client
from launcher import TritonServer

CONCURRENCY = 16
REQUESTS = 256
WARMUP_REQUESTS = 128
TIME_BOUND_S = 600
# Measured here after a full-concurrency warm-up: between -61 and +67 MB over 256 requests (allocator and
# arena noise). A leak of one reference or output per request would add 50-400 MB on top.
RSS_GROWTH_BOUND_MB = 150

pytestmark = pytest.mark.slow
TEXTS = [
    "Hello there.",
    "A slightly longer sentence to vary the length.",
    "Short one.",
    "Triton keeps serving under load, request after request.",
]


def group_rss_mb(pgid: int) -> float:
    """Resident memory of the server and its Python stubs."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.getpgid(int(pid)) != pgid:
                continue
            with open(f"/proc/{pid}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            continue
    return total / 1024


def test_soak_at_concurrency_16(tiny_repo, reference):
    server = TritonServer(tiny_repo).start()
    pgid = server.pid
    try:
        jobs = [(TEXTS[i % len(TEXTS)], i % 5) for i in range(REQUESTS)]
        expected = {(t, s): speak(server, reference, t, nfe_step=2, seed=s) for t, s in set(jobs)}
        local = threading.local()

        def one(job):
            if not hasattr(local, "client"):
                local.client = make_client(server.grpc_url, "grpc")
            text, seed = job
            return job, speak(server, reference, text, client=local.client, nfe_step=2, seed=seed)

        with concurrent.futures.ThreadPoolExecutor(CONCURRENCY) as pool:
            # warm-up at full concurrency: batches of every size have been allocated once
            list(pool.map(one, jobs[:WARMUP_REQUESTS], timeout=TIME_BOUND_S))
            rss_before = group_rss_mb(pgid)
            started = time.monotonic()
            results = list(pool.map(one, jobs, timeout=TIME_BOUND_S))
            elapsed = time.monotonic() - started
        for job, wave in results:
            assert_same_audio(wave, expected[job])
        rss_after = group_rss_mb(pgid)
        print(
            f"soak: {REQUESTS} requests at concurrency {CONCURRENCY} in {elapsed:.1f} s, 0 failures; "
            f"server RSS {rss_before:.0f} MB -> {rss_after:.0f} MB (+{rss_after - rss_before:.0f} MB)"
        )
        assert rss_after - rss_before < RSS_GROWTH_BOUND_MB
        assert server.dead_stubs() == []
    finally:
        server.stop()
    # Zombies are not left running: an orphan's (a stub's watcher, pipeline/lifeline.py) is init's to reap.
    wait_for(lambda: not _running_in_group(pgid), f"no process of group {pgid} to be left running", timeout=30)


def _running_in_group(pgid: int) -> list[str]:
    listed = subprocess.run(["ps", "-o", "pid=,stat=", "-g", str(pgid)], capture_output=True, text=True).stdout
    return [line.split()[0] for line in listed.splitlines() if line.split() and not line.split()[1].startswith("Z")]
