"""Time to first audio of the streaming model, from a perf_analyzer profile export.

For a decoupled model, perf_analyzer 2.51 prints "using the first response for measuring
latency" but measures each request to its LAST response (InferenceProfiler::
ValidLatencyMeasurement takes response_timestamps_.back(), or the one before an empty final
response): for f5_tts_stream, the whole stream. Its --profile-export-file records the time of
every response, so this prints the first-response latency (time to first audio) beside the
last-response one, with perf_analyzer's own percentile rule. Standard library only.

  python perf_analyzer_configs/stream_latency.py PROFILE.json [--percentile 95] [--csv OUT.csv]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def percentile(sorted_values: list[float], p: int) -> float:
    """perf_analyzer's rule: index = p/100 * (n - 1), rounded half up."""
    return sorted_values[int(p / 100 * (len(sorted_values) - 1) + 0.5)]


def summarize(profile: dict, p: int = 95) -> list[dict]:
    """Per experiment (concurrency level): first- and last-response latency percentiles, in ms."""
    rows = []
    for experiment in profile["experiments"]:
        first, last, pieces = [], [], []
        for request in experiment["requests"]:
            # responses that carry audio; an empty final response only marks the end
            times = [t for t, out in zip(request["response_timestamps"], request["response_outputs"]) if out]
            if times:
                first.append((times[0] - request["timestamp"]) / 1e6)
                last.append((times[-1] - request["timestamp"]) / 1e6)
                pieces.append(len(times))
        if not first:
            continue
        first.sort()
        last.sort()
        rows.append(
            {
                "concurrency": experiment["experiment"]["value"],
                "requests": len(first),
                "pieces_per_request": sum(pieces) / len(pieces),
                "first_p50_ms": percentile(first, 50),
                f"first_p{p}_ms": percentile(first, p),
                "last_p50_ms": percentile(last, 50),
                f"last_p{p}_ms": percentile(last, p),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("profile", type=Path, help="perf_analyzer --profile-export-file output")
    ap.add_argument("--percentile", type=int, default=95)
    ap.add_argument("--csv", type=Path, help="append one row per concurrency (header when the file is new)")
    args = ap.parse_args(argv)
    rows = summarize(json.loads(args.profile.read_text()), args.percentile)
    if not rows:
        print(f"stream_latency: no responses in {args.profile}", file=sys.stderr)
        return 1
    p = args.percentile
    for r in rows:
        print(
            f"  Concurrency {r['concurrency']}, {r['requests']} streams of {r['pieces_per_request']:.1f} pieces: "
            f"time to first audio p50 {r['first_p50_ms']:.0f} ms, p{p} {r[f'first_p{p}_ms']:.0f} ms; "
            f"whole stream (perf_analyzer's latency) p50 {r['last_p50_ms']:.0f} ms, p{p} {r[f'last_p{p}_ms']:.0f} ms"
        )
    if args.csv:
        new = not args.csv.exists()
        with args.csv.open("a") as out:
            if new:
                out.write(",".join(rows[0]) + "\n")
            for r in rows:
                out.write(",".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in r.values()) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
