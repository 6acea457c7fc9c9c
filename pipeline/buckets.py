"""The engine names and the shapes the compiled DiT runs on; torch-free (model parameters import it)."""

from __future__ import annotations

ENGINES = ("eager", "compiled")
# Total frames (reference + generated) a chunk is padded up to. f5-tts's chunking keeps
# reference + chunk near 22 s (2063 frames); steps of 256 frames (2.7 s) bound the padding,
# and 2304 frames (24.6 s) leaves room for fast speakers. Longer chunks (an explicit
# `duration`) run eagerly.
DEFAULT_LENGTH_BUCKETS = tuple(range(256, 2304 + 1, 256))


class EngineError(ValueError):
    """A setup the chosen engine cannot run, with what to do instead."""


def parse_buckets(text: str) -> tuple[int, ...]:
    """'256,512,...' -> sorted unique frame counts, each > 0."""
    try:
        buckets = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise EngineError(f"length buckets must be comma-separated frame counts, got {text!r}") from None
    if not buckets or buckets[0] < 1:
        raise EngineError(f"length buckets must be positive frame counts, got {text!r}")
    return tuple(buckets)


def format_buckets(buckets: tuple[int, ...]) -> str:
    return ",".join(str(b) for b in buckets)


def graph_batch_sizes(max_batch: int) -> tuple[int, ...]:
    """Batch sizes captured as CUDA graphs: powers of two up to max_batch, and max_batch itself."""
    sizes = {max_batch}
    size = 1
    while size < max_batch:
        sizes.add(size)
        size *= 2
    return tuple(sorted(sizes))
