"""How f5-tts's DiT runs inside the ODE solve: eager, or compiled on a bounded set of shapes.

- eager: f5-tts's DiT as it is, on the exact batch (its own text-embedding cache, no CFG
  pass when cfg_strength is 0). The reference path: equal to f5-tts's own inference.
- compiled: the DiT through `torch.compile` (dynamic shapes, one compile for every length),
  total frames rounded up to a length bucket (padding masked, as in f5-tts's batched
  inference), so only a known set of shapes ever runs. On a GPU, each (batch size, bucket)
  is also captured once as a CUDA graph (explicit `torch.cuda.CUDAGraph` capture of the
  compiled DiT; batches padded to the next captured size with copies of a real chunk) and
  then replayed: one launch per DiT call instead of hundreds.

All compiling and capturing happens in `warm_up()` (model initialize); afterwards the
compiled DiT runs under torch.compile's "eager_on_recompile" stance, so an unforeseen
shape runs eagerly instead of compiling on a user's request. A chunk longer than the
largest bucket runs eagerly too.

f5-tts's text-embedding cache (`DiT.text_cond`/`text_uncond`, filled on the first step and
read on every later one) stays in use: the compiled path fills it once per ODE solve,
already padded to the bucket, so the compiled DiT only ever takes the cached branch.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

import contract
from contract.parameters import DEFAULT_LENGTH_BUCKETS, ENGINES, format_buckets
from pipeline.buckets import EngineError, graph_batch_sizes

log = logging.getLogger(__name__)

# f5-tts's configs ship attention without a padding mask; the compiled path needs it.
_MASK_HINT = "build the model with pipeline.f5_model.build_cfm (attention mask on)"


def use_cache_dir(directory: Path) -> Path:
    """Point TorchInductor's on-disk cache (compiled kernels, FX graphs, Triton binaries) at `directory`.

    A directory that survives restarts (inside the model repository or on a volume) lets the
    next start of the same model skip compilation. Unwritable: a temporary one, with a warning.
    """
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=directory, prefix=".write-probe-")
        probe.close()
    except OSError as e:
        fallback = Path(tempfile.gettempdir()) / "f5_tts_compile_cache"
        log.warning(
            "compile cache %s is not writable (%s); using %s, which does not survive a restart", directory, e, fallback
        )
        directory = fallback
        directory.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(directory)
    return directory


def compile_cache_report() -> str:
    """What TorchInductor's FX graph cache did in this process: all hits means nothing was compiled."""
    from torch._dynamo.utils import counters

    inductor = counters["inductor"]
    return (
        f"compile cache {os.environ.get('TORCHINDUCTOR_CACHE_DIR', 'default')}: "
        f"{inductor['fxgraph_cache_hit']} hit(s), {inductor['fxgraph_cache_miss']} miss(es)"
    )


def check_compiler(device: torch.device) -> None:
    """TorchInductor writes C++ (CPU) or Triton (GPU, whose launcher is built with a C compiler)."""
    variable, usual = ("CXX", ["c++", "g++"]) if device.type == "cpu" else ("CC", ["cc", "gcc"])
    names = [os.environ[variable]] if os.environ.get(variable) else usual
    if not any(shutil.which(name) for name in names):
        raise EngineError(
            f"engine 'compiled' on {device.type} needs a C{'++' if device.type == 'cpu' else ''} "
            f"compiler for TorchInductor ({' or '.join(names)} on PATH); install one "
            "(e.g. build-essential) or use engine 'eager'"
        )


@dataclass(frozen=True)
class Shape:
    rows: int  # batch rows the DiT sees (chunks, plus padding copies for a CUDA graph)
    frames: int  # total frames per row
    compiled: bool  # False: the eager DiT on the exact batch


Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (t, x) -> dx/dt, as odeint calls it


class DitEngine:
    # After warm-up: a shape that would need compiling runs eagerly instead (tests use "fail_on_recompile").
    serving_stance = "eager_on_recompile"

    def __init__(
        self,
        transformer: torch.nn.Module,
        *,
        engine: str = "eager",
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        buckets: tuple[int, ...] = DEFAULT_LENGTH_BUCKETS,
        max_batch: int = 16,
        cuda_graphs: bool = True,
        compiler: Callable = torch.compile,
        capture: Callable | None = None,
    ) -> None:
        """Tests on CPU replace `compiler` (compiler(module, **options) -> callable) and `capture`
        (capture(run, pool) -> replay, instead of CUDA graph capture)."""
        if engine not in ENGINES:
            raise EngineError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
        self.transformer, self.engine = transformer, engine
        self.device, self.dtype = torch.device(device), dtype
        self.buckets = tuple(sorted(buckets))
        self.max_batch = max_batch
        self.graphs = engine == "compiled" and (capture is not None or (cuda_graphs and self.device.type == "cuda"))
        self._capture = capture or _cuda_capture
        self._compiled = None
        self._replays: dict[tuple[int, int], Callable[[], torch.Tensor]] = {}
        self._static: _StaticInputs | None = None
        self._warm = False
        if engine == "compiled":
            if not all(hasattr(transformer, a) for a in ("text_embed", "text_cond", "transformer_blocks")):
                raise EngineError(
                    f"engine 'compiled' supports f5-tts's DiT backbone (F5-TTS), not "
                    f"{type(transformer).__name__}; use engine 'eager'"
                )
            blocks = transformer.transformer_blocks
            if not getattr(blocks[0].attn.processor, "attn_mask_enabled", False):
                raise EngineError(
                    f"engine 'compiled' pads chunks to length buckets, which needs the attention "
                    f"padding mask; {_MASK_HINT}"
                )
            check_compiler(self.device)
            # fullgraph: a graph break would silently leave part of the DiT eager; fail at load instead.
            self._compiled = compiler(transformer, dynamic=True, fullgraph=True)

    # --- shapes --------------------------------------------------------------------------
    def shape(self, chunks: int, frames: int) -> Shape:
        """The padded batch for `chunks` chunks whose longest has `frames` total frames."""
        if self.engine == "eager" or frames > self.buckets[-1] or (self.graphs and chunks > self.max_batch):
            if self.engine != "eager":
                log.warning(
                    "a batch of %d chunk(s) up to %d frames is outside the compiled shapes (buckets up to "
                    "%d frames, %d chunks): it runs eagerly",
                    chunks,
                    frames,
                    self.buckets[-1],
                    self.max_batch,
                )
            return Shape(chunks, frames, compiled=False)
        bucket = next(b for b in self.buckets if b >= frames)
        rows = next(b for b in graph_batch_sizes(self.max_batch) if b >= chunks) if self.graphs else chunks
        return Shape(rows, bucket, compiled=True)

    # --- one ODE solve ---------------------------------------------------------------------
    @contextlib.contextmanager
    def velocity(
        self,
        shape: Shape,
        text: torch.Tensor,
        cond: torch.Tensor,
        mask: torch.Tensor | None,
        durations: torch.Tensor,
        cfg_strength: float,
    ) -> Iterator[Velocity]:
        """The guided flow (t, x) -> dx/dt for one solve; inputs already padded to `shape`.

        durations: each row's real total frames (the mask's lengths); mask None only for eager single rows.
        """
        tr = self.transformer
        try:
            if not shape.compiled:
                yield self._eager_velocity(text, cond, mask, cfg_strength)
                return
            # f5-tts's cache, filled as its get_input_embed fills it (per-row lengths), padded to the bucket.
            for drop_text in (False, True):
                embed = tr.text_embed(text, seq_len=durations, drop_text=drop_text)
                embed = F.pad(embed, (0, 0, 0, shape.frames - embed.shape[1]))
                if drop_text:
                    tr.text_uncond = embed
                else:
                    tr.text_cond = embed
            if self.graphs:
                both_of = self._replay(shape, cond, mask)
            else:

                def both_of(t, x):
                    with torch.compiler.set_stance(self.serving_stance):
                        return self._compiled(
                            x=x, cond=cond, text=text, time=t.to(self.dtype), mask=mask, cfg_infer=True, cache=True
                        )

            def flow(t, x):
                pred, null_pred = torch.chunk(both_of(t, x), 2, dim=0)
                return pred + (pred - null_pred) * cfg_strength

            yield flow
        finally:
            tr.clear_cache()

    def _eager_velocity(self, text, cond, mask, cfg_strength) -> Velocity:
        tr = self.transformer

        def flow(t, x):
            t = t.to(self.dtype)
            if cfg_strength < 1e-5:
                return tr(
                    x=x, cond=cond, text=text, time=t, mask=mask, drop_audio_cond=False, drop_text=False, cache=True
                )
            pred, null_pred = torch.chunk(
                tr(x=x, cond=cond, text=text, time=t, mask=mask, cfg_infer=True, cache=True), 2, dim=0
            )
            return pred + (pred - null_pred) * cfg_strength

        return flow

    def _replay(self, shape: Shape, cond, mask) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """(t, x) -> the captured DiT's output; the solve's constant inputs are copied into the graph once."""
        replay = self._replays.get((shape.rows, shape.frames))
        if replay is None:  # warm_up captures every shape(); only a caller skipping warm_up gets here
            replay = self._capture_shape(shape.rows, shape.frames)
        static = self._static.views(shape.rows, shape.frames)
        tr = self.transformer
        static["cond"].copy_(cond)
        static["mask"].copy_(mask)
        static["text_cond"].copy_(tr.text_cond)
        static["text_uncond"].copy_(tr.text_uncond)

        def both_of(t, x):
            static["x"].copy_(x)
            static["time"].copy_(t)
            return replay()

        return both_of

    # --- warm-up -------------------------------------------------------------------------------
    @torch.inference_mode()
    def warm_up(self) -> float:
        """Compile (and on GPU capture every (batch size, bucket)); returns the seconds spent. Eager: nothing."""
        if self.engine == "eager" or self._warm:
            return 0.0
        started = time.monotonic()
        if self.graphs:
            for frames in self.buckets:
                for rows in graph_batch_sizes(self.max_batch):
                    self._capture_shape(rows, frames)
        else:
            # Dynamic shapes: one graph for batch 1 and one for larger batches cover every bucket.
            for rows in sorted({1, min(2, self.max_batch)}):
                inputs = _dummy_inputs(self.transformer, rows, self.buckets[0], self.dtype, self.device)
                self._set_cache(inputs)
                self._compiled(**inputs["kwargs"])
                self.transformer.clear_cache()
        self._warm = True
        seconds = time.monotonic() - started
        log.info(
            "compiled DiT ready in %.1f s (%s, buckets %s frames%s; %s)",
            seconds,
            self.device,
            format_buckets(self.buckets),
            f", CUDA graphs for batch sizes {graph_batch_sizes(self.max_batch)}" if self.graphs else "",
            compile_cache_report(),
        )
        return seconds

    def _set_cache(self, inputs: dict) -> None:
        self.transformer.text_cond, self.transformer.text_uncond = inputs["text_cond"], inputs["text_uncond"]

    def _capture_shape(self, rows: int, frames: int) -> Callable[[], torch.Tensor]:
        if self._static is None:
            self._static = _StaticInputs(
                self.transformer, max(graph_batch_sizes(self.max_batch)), self.buckets[-1], self.dtype, self.device
            )
            self._pool = torch.cuda.graph_pool_handle() if self.device.type == "cuda" else None
        static = self._static.views(rows, frames)
        tr = self.transformer

        def run():
            # The cache attributes point at the static buffers while the graph is recorded.
            tr.text_cond, tr.text_uncond = static["text_cond"], static["text_uncond"]
            return self._compiled(
                x=static["x"],
                cond=static["cond"],
                text=static["text"],
                time=static["time"],
                mask=static["mask"],
                cfg_infer=True,
                cache=True,
            )

        replay = self._capture(run, self._pool)
        tr.clear_cache()
        self._replays[(rows, frames)] = replay
        return replay


def _cuda_capture(run: Callable[[], torch.Tensor], pool) -> Callable[[], torch.Tensor]:
    """Warm `run` up on a side stream (compiles, autotunes), then record it as a CUDA graph in `pool`.

    All graphs share one memory pool: they never run concurrently, and each output is consumed
    before the next replay.
    """
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):
            run()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool):
        out = run()

    def replay() -> torch.Tensor:
        graph.replay()
        return out

    return replay


def _dummy_inputs(transformer, rows: int, frames: int, dtype, device) -> dict:
    text_dim = transformer.text_embed.text_embed.embedding_dim
    x = torch.zeros(rows, frames, contract.N_MELS, dtype=dtype, device=device)
    # text is never read (the cache is filled); width 2, not 1, so that dynamic shapes do not specialise it
    kwargs = dict(
        x=x,
        cond=torch.zeros_like(x),
        text=torch.zeros(rows, 2, dtype=torch.long, device=device),
        time=torch.tensor(0.5, dtype=dtype, device=device),
        mask=torch.ones(rows, frames, dtype=torch.bool, device=device),
        cfg_infer=True,
        cache=True,
    )
    embed = torch.zeros(rows, frames, text_dim, dtype=dtype, device=device)
    return {"kwargs": kwargs, "text_cond": embed, "text_uncond": embed.clone()}


class _StaticInputs:
    """One set of input buffers at the largest captured shape; each graph reads a contiguous prefix of it.

    Contiguous views keep the strides the compiled DiT was traced with, and one set of
    buffers serves every (batch size, bucket) instead of one set per graph.
    """

    def __init__(self, transformer, rows: int, frames: int, dtype, device) -> None:
        text_dim = transformer.text_embed.text_embed.embedding_dim
        n = rows * frames
        self.flat = {
            "x": torch.zeros(n * contract.N_MELS, dtype=dtype, device=device),
            "cond": torch.zeros(n * contract.N_MELS, dtype=dtype, device=device),
            "mask": torch.ones(n, dtype=torch.bool, device=device),
            "text_cond": torch.zeros(n * text_dim, dtype=dtype, device=device),
            "text_uncond": torch.zeros(n * text_dim, dtype=dtype, device=device),
        }
        self.text_dim = text_dim
        self.time = torch.tensor(0.5, dtype=dtype, device=device)
        self.text = torch.zeros(rows, 2, dtype=torch.long, device=device)  # never read: the cache is always filled

    def views(self, rows: int, frames: int) -> dict[str, torch.Tensor]:
        n = rows * frames
        return {
            "x": self.flat["x"][: n * contract.N_MELS].view(rows, frames, contract.N_MELS),
            "cond": self.flat["cond"][: n * contract.N_MELS].view(rows, frames, contract.N_MELS),
            "mask": self.flat["mask"][:n].view(rows, frames),
            "text_cond": self.flat["text_cond"][: n * self.text_dim].view(rows, frames, self.text_dim),
            "text_uncond": self.flat["text_uncond"][: n * self.text_dim].view(rows, frames, self.text_dim),
            "time": self.time,
            "text": self.text[:rows],
        }
