"""`python -m deploy`: the environment variables each deployment reads, as deploy/settings.py declares them."""

from __future__ import annotations

import sys

from deploy.settings import ContainerSettings, WorkerSettings, help_lines

DEPLOYMENTS = {
    "the Triton image (docker/entrypoint.py)": ContainerSettings,
    "the RunPod worker (python -m runpod_worker; relative paths are inside F5_VOLUME)": WorkerSettings,
}


def main() -> int:
    for title, cls in DEPLOYMENTS.items():
        print(f"Environment of {title}:")
        for line in help_lines(cls):
            print(f"  {line}")
    print("Unset or empty: the default (shell words: empty is none).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
