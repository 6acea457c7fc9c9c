"""The CUDA-graph batch sizes and the engine's setup error; torch-free. The engine names and the
length buckets are model parameters: contract/parameters.py declares them."""

from __future__ import annotations


class EngineError(ValueError):
    """A setup the chosen engine cannot run, with what to do instead."""


def graph_batch_sizes(max_batch: int) -> tuple[int, ...]:
    """Batch sizes captured as CUDA graphs: powers of two up to max_batch, and max_batch itself."""
    sizes = {max_batch}
    size = 1
    while size < max_batch:
        sizes.add(size)
        size *= 2
    return tuple(sorted(sizes))
