"""Benchmarks: the serving pipeline side by side with f5-tts's own inference, and Triton's cost."""

import json
from pathlib import Path


def save_report(directory: Path, name: str, report: dict) -> Path:
    """Write `report` as DIRECTORY/NAME.json (the raw results docs/benchmarks.md cites) and print it."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return path
