"""Batched F5-TTS synthesis over f5-tts's own model, tokenizer and text chunking.

For each dynamic batch: every request's target text is split with f5-tts's
`chunk_text`, all chunks of all requests with the same sampling options go through one
batched ODE solve of f5-tts's DiT, mels are vocoded and each request's chunks are
cross-faded as f5-tts's `infer_batch_process` does.

`_sample` follows `CFM.sample` step for step. It exists because CFM.sample draws the
noise of every batch item from one seed; here each request draws from its own
generator, in chunk order, exactly the values f5-tts draws after `seed_everything(seed)`,
so a request's audio does not depend on its neighbours in the batch.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import math
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pad_sequence

import contract
from contract.captions import dumps as dumps_cues
from contract.parameters import DEFAULT_LENGTH_BUCKETS, TtsParameters, format_buckets
from pipeline.captions import ChunkText, place_all
from pipeline.engine import DitEngine
from pipeline.f5_model import DTYPES, ModelConfig, build_cfm, load_vocab, state_dict_problems
from pipeline.reference import TARGET_RMS, Reference, prepare_reference
from pipeline.requests import Cancelled, RequestError, SynthesisRequest
from pipeline.script import is_script, locate_chunk, segment_requests, split_script
from pipeline.streaming import CROSS_FADE_SAMPLES, CROSS_FADE_SECONDS, cross_fade
from pipeline.transcripts import Transcribe, TranscriptCache
from pipeline.voices import VOICES_DIR, load_voices

# Generated chunks (float32 at 24 kHz) -> for each, the words heard in it as (word, start s, end s), or the
# error hearing it earned.
Hear = Callable[[Sequence[np.ndarray]], "list[Sequence[tuple[str, float, float]] | Exception]"]

log = logging.getLogger(__name__)

MAX_CHARS_WINDOW_SECONDS = 22  # infer_process: max_chars = text rate * (22 - reference seconds) * speed
SLOW_CHUNK_BYTES = 10  # infer_batch_process speaks chunks shorter than this at speed 0.3
SLOW_CHUNK_SPEED = 0.3
# How often, at most, the ODE loop asks Triton whether a request was cancelled (one IPC round trip per
# request in the Python backend): a cancelled request costs at most this much more work.
CANCEL_POLL_SECONDS = TtsParameters.cancel_poll_ms / 1000

# mels [100, frames] (fp32 tensors on the synthesizer's device) -> waveforms (float32 numpy), one per mel:
# pipeline.vocoder's OnnxVocoder (CPU, onnxruntime) or TorchVocoder (PyTorch Vocos where the mels are)
Vocode = Callable[[Sequence[torch.Tensor]], list[np.ndarray]]


@dataclass
class _Chunk:
    request_index: int
    text: list[str]  # tokens (pinyin for Chinese)
    reference: Reference
    cond: torch.Tensor  # reference mel [frames, 100]
    reference_frames: int  # frames cut off the generated mel (f5-tts: samples // hop)
    duration: int  # total frames incl. reference
    noise: torch.Tensor  # [duration, 100]
    spoken: str  # the chunk's text, as its caption shows it


@functools.lru_cache(maxsize=4096)
def text_tokens(text: str) -> list[str]:
    """f5-tts's tokens of a text (infer_batch_process's convert_char_to_pinyin: pinyin for Chinese, one
    token per other character); cached: a stream asks for the same chunks again and again."""
    from f5_tts.model.utils import convert_char_to_pinyin

    return convert_char_to_pinyin([text])[0]


def text_ids(tokens: Sequence[list[str]], vocab_char_map: dict[str, int]) -> torch.Tensor:
    """The DiT's text input for rows of tokens, as CFM.sample makes it (f5-tts's list_str_to_idx):
    [rows, longest] ids, -1 past a row's end; a token missing from the vocab gets id 0."""
    from f5_tts.model.utils import list_str_to_idx

    return list_str_to_idx(list(tokens), vocab_char_map)


@dataclass(frozen=True)
class Speech:
    waveform: np.ndarray  # float32 at 24 kHz: the whole text, or the one chunk asked for
    chunk_count: int  # chunks the target text was split into (all segments of a script)
    segment_index: int = 0  # the script segment of the answer's last chunk (0 without voice tags)
    # Each chunk of the answer and its samples before joining: the captions' facts.
    chunks: tuple[tuple[ChunkText, int], ...] = ()

    def cues(self) -> list:
        return place_all(list(self.chunks), CROSS_FADE_SAMPLES)

    def outputs(self) -> dict[str, np.ndarray]:
        """The f5_tts output tensors of this answer (contract.TTS_OUTPUTS), batch dimension first."""
        captions = json.loads(dumps_cues(self.cues()))
        if len(self.chunks) == 1:  # a chunk answer: what the stream model needs to place it in the stream
            captions[contract.ENDS_SEGMENT] = self.chunks[0][0].ends_segment
            if self.chunks[0][0].heard is not None:
                captions[contract.HEARD] = [list(w) for w in self.chunks[0][0].heard]
        return {
            contract.WAVEFORM: self.waveform[None].astype(np.float32),
            contract.SAMPLE_RATE_OUT: np.array([[contract.SAMPLE_RATE]], dtype=np.int32),
            contract.CHUNK_COUNT: np.array([[self.chunk_count]], dtype=np.int32),
            contract.SEGMENT_INDEX: np.array([[self.segment_index]], dtype=np.int32),
            contract.CAPTIONS: np.array([[json.dumps(captions, ensure_ascii=False).encode("utf-8")]], dtype=object),
        }


def split_text(text: str, max_chars: int, first_chunk_chars: int = 0) -> list[str]:
    """f5-tts's chunk_text; with first_chunk_chars, its first chunk is cut short at a punctuation mark.

    Only the first chunk changes: the remainder of it becomes the second chunk and every
    later chunk is exactly f5-tts's, so a short first chunk costs one extra chunk at most.
    Neither part is left under SLOW_CHUNK_BYTES, which f5-tts would speak at speed 0.3.
    """
    from f5_tts.infer.utils_infer import chunk_text

    chunks = chunk_text(text, max_chars=max_chars)
    if not first_chunk_chars or not chunks or len(chunks[0].encode("utf-8")) <= first_chunk_chars:
        return chunks
    whole = chunks[0]
    end = 0  # the first part is a prefix of the whole chunk: pieces[0], then more pieces while it is too short
    for piece in chunk_text(whole, max_chars=first_chunk_chars):
        start = whole.find(piece, end)
        if start < 0:  # not a plain prefix split (unexpected whitespace): keep f5-tts's chunk
            return chunks
        end = start + len(piece)
        if len(whole[:end].encode("utf-8")) >= SLOW_CHUNK_BYTES:
            break
    first, rest = whole[:end].strip(), whole[end:].strip()
    if len(rest.encode("utf-8")) < SLOW_CHUNK_BYTES:
        return chunks
    return [first, rest, *chunks[1:]]


class Synthesizer:
    def __init__(
        self,
        cfm,
        vocode: Vocode,
        *,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
        max_batch_chunks: int = TtsParameters.max_batch_chunks,
        limits: contract.Limits = contract.LIMITS,
        reference_cache_size: int = TtsParameters.reference_cache_size,
        voices: dict[str, Reference] | None = None,
        engine: str = TtsParameters.engine,
        length_buckets: tuple[int, ...] = DEFAULT_LENGTH_BUCKETS,
        cuda_graphs: bool = TtsParameters.cuda_graphs,
        cancel_poll_seconds: float = CANCEL_POLL_SECONDS,
        transcribe: Transcribe | None = None,
        hear: Hear | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.cancel_poll_seconds = cancel_poll_seconds
        self.dtype = dtype
        # The mel front end stays fp32 whatever the DiT dtype (its STFT needs it).
        self.cfm = cfm.eval().to(self.device)
        self.cfm.transformer.to(dtype)
        self.vocode = vocode
        self.max_batch_chunks = max_batch_chunks
        self.engine = DitEngine(
            self.cfm.transformer,
            engine=engine,
            device=self.device,
            dtype=dtype,
            buckets=length_buckets,
            max_batch=max_batch_chunks,
            cuda_graphs=cuda_graphs,
        )
        self.limits = limits
        # Preprocessed references by content: a speaker who sends the same reference again
        # skips f5-tts's silence trimming, resampling and the mel front end.
        self._references: OrderedDict[str, tuple[Reference, torch.Tensor]] = OrderedDict()
        self.reference_cache_size = reference_cache_size
        self.reference_cache_hits = 0  # uploaded references found prepared (the model exports these as a metric)
        self.reference_cache_misses = 0
        # References sent without a transcript: transcribed once each (None: no transcriber to ask).
        self.transcripts = TranscriptCache(transcribe, reference_cache_size)
        # Generated chunks heard by the transcriber, for measured caption word times (None: none to ask).
        self.hear = hear
        self.cancelled_requests = 0  # requests whose clients gave up mid-work (the model exports these as a metric)
        # Registered voices: prepared at export, their mels computed once here.
        self.voices = {name: (ref, self._mel(ref)) for name, ref in (voices or {}).items()}

    def warm_up(self) -> float:
        """Compile the DiT (and capture its CUDA graphs) now, not on a request; seconds spent (eager: 0)."""
        return self.engine.warm_up()

    @classmethod
    def from_directory(
        cls,
        model_dir: Path,
        vocode: Vocode,
        *,
        device: str = "cpu",
        parameters: TtsParameters | None = None,
        transcribe: Transcribe | None = None,
        hear: Hear | None = None,
        **overrides,
    ) -> "Synthesizer":
        """Load weights exported by `python -m export` (model.safetensors, model_config.yaml, vocab.txt) and
        run them as `parameters` (f5_tts's, as config.pbtxt gives them) say; `overrides` replace fields of
        them by name (tests and benchmarks; `length_buckets` may be a tuple)."""
        from safetensors.torch import load_file

        if isinstance(overrides.get("length_buckets"), tuple):
            overrides["length_buckets"] = format_buckets(overrides["length_buckets"])
        p = dataclasses.replace(parameters or TtsParameters(), **overrides)
        p.check()

        model_dir = Path(model_dir)
        weights, arch, vocab = (
            model_dir / contract.TTS_WEIGHTS_FILE,
            model_dir / contract.TTS_ARCH_FILE,
            model_dir / contract.TTS_VOCAB_FILE,
        )
        for path in (weights, arch, vocab):
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing; re-run `python -m export`")
        vocab_map, vocab_size = load_vocab(vocab)
        cfm = build_cfm(ModelConfig.load(arch), vocab_map)
        try:
            state = load_file(str(weights), device="cpu")
        except Exception as e:
            raise ValueError(f"{weights} is not a readable safetensors file ({e}); re-run `python -m export`") from e
        problems = state_dict_problems(state, cfm, vocab_size)
        if problems:
            raise ValueError(f"{weights} does not fit {arch} and {vocab}: " + "; ".join(problems))
        cfm.load_state_dict(state, strict=False)
        voices = load_voices(model_dir / VOICES_DIR) if (model_dir / VOICES_DIR).is_dir() else {}
        return cls(
            cfm,
            vocode,
            device=device,
            dtype=DTYPES[p.dtype],
            voices=voices,
            max_batch_chunks=p.max_batch_chunks,
            limits=p.limits,
            reference_cache_size=p.reference_cache_size,
            engine=p.engine,
            length_buckets=p.buckets,
            cuda_graphs=p.cuda_graphs,
            cancel_poll_seconds=p.cancel_poll_ms / 1000,
            transcribe=transcribe,
            hear=hear,
        )

    # --- planning: everything f5-tts computes before CFM.sample ------------------------
    def _plan(self, index: int, request: SynthesisRequest) -> tuple[list[_Chunk], int]:
        """The request's chunks to sample (all, or the one asked for) and how many the text has.

        A chunk request plans the whole text (chunk k's noise follows every earlier chunk's);
        the reference cache and the token cache keep that cheap for a stream's repeated plans.
        """
        if request.measure_words and self.hear is None:
            raise RequestError(
                f"input '{contract.MEASURE_WORDS}' asks for word times heard by the '{contract.TRANSCRIBER_MODEL}' "
                "model, which this repository does not have: re-export with --asr, or leave it out for "
                "estimated word times"
            )
        ref, cond = self._reference(request)
        if ref.clipped and request.voice is None and not request.chunk_index:  # once per stream
            log.info(
                "request %d: reference of %.1f s clipped to %.1f s at a pause, as f5-tts does",
                index,
                request.reference_seconds,
                ref.seconds,
            )
        if request.duration is not None and request.duration <= ref.seconds:
            raise RequestError(
                f"input '{contract.DURATION}' is {request.duration} s but must exceed the reference "
                f"length after preprocessing ({ref.seconds:.2f} s): it is the total length, "
                "reference included"
            )
        texts = self._chunk_texts(request, ref)
        ref_text = ref.text + " " if len(ref.text[-1].encode("utf-8")) == 1 else ref.text
        ref_frames = ref.audio.shape[-1] // contract.HOP_LENGTH

        durations = self._fix_durations(request, texts, ref_frames)
        generator = torch.Generator(self.device)
        generator.manual_seed(request.seed if request.seed is not None else secrets.randbits(63))
        chunks = []
        for text, fix_duration in zip(texts, durations):
            tokens = text_tokens(ref_text + text)
            if fix_duration is not None:
                duration = int(fix_duration * contract.SAMPLE_RATE / contract.HOP_LENGTH)
            else:
                speed = SLOW_CHUNK_SPEED if len(text.encode("utf-8")) < SLOW_CHUNK_BYTES else request.speed
                duration = ref_frames + int(
                    ref_frames / len(ref_text.encode("utf-8")) * len(text.encode("utf-8")) / speed
                )
            # CFM.sample: at least text/reference length plus one frame.
            duration = max(max(len(tokens), cond.shape[0]) + 1, duration)
            if duration > self.limits.max_total_frames:
                seconds = duration * contract.HOP_LENGTH / contract.SAMPLE_RATE
                raise RequestError(
                    f"a text chunk would need {seconds:.1f} s of audio; at most "
                    f"{self.limits.max_audio_seconds:g} s per chunk is allowed (lower "
                    f"'{contract.DURATION}' or raise '{contract.SPEED}')"
                )
            # Drawn in fp32 whatever the DiT dtype: the same seed gives the same noise in fp32, fp16 and bf16
            # (torch.randn draws other values in half precision on CPU).
            noise = torch.randn(duration, contract.N_MELS, generator=generator, device=self.device).to(self.dtype)
            chunks.append(_Chunk(index, tokens, ref, cond, ref_frames, duration, noise, text))
        if request.chunk_index is not None:
            # Every chunk's noise is drawn above, so chunk k gets the values it gets in a whole-text request.
            if request.chunk_index >= len(chunks):
                raise RequestError(
                    f"input '{contract.CHUNK_INDEX}' is {request.chunk_index}; the text has "
                    f"{len(chunks)} chunk(s), so 0 to {len(chunks) - 1} are allowed"
                )
            return [chunks[request.chunk_index]], len(chunks)
        return chunks, len(chunks)

    def _chunk_texts(self, request: SynthesisRequest, ref: Reference | None = None) -> list[str]:
        """f5-tts's chunking of the request's text for its reference (infer_process's max_chars)."""
        ref = ref or self._reference(request)[0]
        ref_bytes = len(ref.text.encode("utf-8"))
        max_chars = int(ref_bytes / ref.seconds * (MAX_CHARS_WINDOW_SECONDS - ref.seconds) * request.speed)
        texts = split_text(request.target_text, max_chars, request.first_chunk_chars)
        if not texts:
            raise RequestError(f"input '{contract.TARGET_TEXT}' has nothing to speak after text chunking")
        return texts

    def _mel(self, ref: Reference) -> torch.Tensor:
        with torch.no_grad():
            return self.cfm.mel_spec(ref.audio.to(self.device))[0].T

    def _reference(self, request: SynthesisRequest) -> tuple[Reference, torch.Tensor]:
        """The prepared reference and its mel [frames, 100]: a registered voice, or the upload (LRU cache)."""
        if request.voice is not None:  # parse_request checked the name against self.voices
            return self.voices[request.voice]
        audio = np.ascontiguousarray(request.reference_audio)
        key = hashlib.sha256(
            b"%d|%s|%d|" % (request.reference_sample_rate, str(audio.shape).encode(), len(request.reference_text))
            + request.reference_text.encode("utf-8")
            + audio.tobytes()
        ).hexdigest()
        hit = self._references.get(key)
        if hit is not None:
            self._references.move_to_end(key)
            self.reference_cache_hits += 1
            return hit
        self.reference_cache_misses += 1
        ref = prepare_reference(audio, request.reference_sample_rate, request.reference_text)
        cond = self._mel(ref)
        if self.reference_cache_size > 0:
            self._references[key] = (ref, cond)
            while len(self._references) > self.reference_cache_size:
                self._references.popitem(last=False)
        return ref, cond

    @staticmethod
    def _fix_durations(request: SynthesisRequest, texts: list[str], ref_frames: int) -> list[float | None]:
        """f5-tts's split of a fixed total duration across chunks (infer_batch_process)."""
        if request.duration is None or len(texts) == 1:
            return [request.duration] * len(texts)
        ref_sec = ref_frames * contract.HOP_LENGTH / contract.SAMPLE_RATE
        weights = [len(t.encode("utf-8")) for t in texts]
        allocatable = request.duration - ref_sec + CROSS_FADE_SECONDS * (len(texts) - 1)
        return [ref_sec + allocatable * w / sum(weights) for w in weights]

    # --- sampling ------------------------------------------------------------------------
    @torch.inference_mode()
    def _sample(
        self, chunks: list[_Chunk], steps: int, cfg_strength: float, sway: float, watch: "CancelWatch | None" = None
    ) -> list[torch.Tensor | None]:
        """Batched CFM.sample; returns each chunk's generated mel [100, frames] (fp32, on the device).

        The engine may pad the batch: total frames up to a length bucket, and rows (copies of the
        last chunk) up to a captured batch size; padded frames are masked, padded rows dropped.

        The solve runs one Euler step at a time (torchdiffeq's odeint over each step of the grid:
        the same arithmetic as one call over the whole grid). Between steps, `watch` says which
        requests were cancelled: their rows leave the batch (None in the result) and the others
        go on from where they are; when every row has left, the solve stops.
        """
        from f5_tts.model.utils import get_epss_timesteps

        # The time grid stays fp32 (the DiT gets t in its own dtype): in bf16, f5-tts's grid has
        # neighbouring steps that round to the same value, which torchdiffeq refuses.
        t = get_epss_timesteps(steps, device=self.device, dtype=torch.float32)
        if sway is not None:
            t = t + sway * (torch.cos(torch.pi / 2 * t) - 1 + t)
        states = [c.noise for c in chunks]  # each chunk's x at the current step, [duration, 100]
        alive = list(range(len(chunks)))
        step = 0
        while alive and step < steps:
            step, reached = self._solve(
                [chunks[i] for i in alive], [states[i] for i in alive], t, step, cfg_strength, watch
            )
            for i, x in zip(alive, reached):
                states[i] = x
            if watch is not None:
                alive = [i for i in alive if not watch.cancelled(chunks[i].request_index)]
        mels: list[torch.Tensor | None] = [None] * len(chunks)
        for i in alive:
            c, x = chunks[i], states[i].clone()
            x[: c.cond.shape[0]] = c.cond.to(x.dtype)  # CFM.sample: the reference frames are the condition
            mels[i] = x.float()[c.reference_frames : c.duration].T
        return mels

    def _solve(
        self,
        chunks: list[_Chunk],
        states: list[torch.Tensor],
        t: torch.Tensor,
        step: int,
        cfg_strength: float,
        watch: "CancelWatch | None",
    ) -> tuple[int, list[torch.Tensor]]:
        """Euler steps on one batch from `step` until the grid ends or a row's request is cancelled:
        the step reached and each chunk's state there."""
        from f5_tts.model.utils import lens_to_mask
        from torchdiffeq import odeint

        cfm, device = self.cfm, self.device
        shape = self.engine.shape(len(chunks), max(c.duration for c in chunks))
        rows = chunks + [chunks[-1]] * (shape.rows - len(chunks))
        lens = torch.tensor([c.cond.shape[0] for c in rows], device=device)
        duration = torch.tensor([c.duration for c in rows], device=device)
        cond = pad_sequence([c.cond for c in rows], batch_first=True).to(self.dtype)
        cond = F.pad(cond, (0, 0, 0, shape.frames - cond.shape[1]), value=0.0)
        text = text_ids([c.text for c in rows], cfm.vocab_char_map).to(device)
        cond_mask = lens_to_mask(lens, length=shape.frames).unsqueeze(-1)
        step_cond = torch.where(cond_mask, cond, torch.zeros_like(cond))
        # As CFM.sample: no mask for a single exact row (f5-tts's unmasked path); the compiled DiT always takes one.
        mask = lens_to_mask(duration, length=shape.frames) if shape.compiled or len(rows) > 1 else None
        y = pad_sequence(states + [states[-1]] * (shape.rows - len(chunks)), batch_first=True)
        y = F.pad(y, (0, 0, 0, shape.frames - y.shape[1]), value=0.0)
        requests, first = {c.request_index for c in chunks}, step
        with self.engine.velocity(shape, text, step_cond, mask, duration, cfg_strength) as flow:
            while step < len(t) - 1:
                y = odeint(flow, y, t[step : step + 2], **cfm.odeint_kwargs)[-1]
                step += 1
                if watch is not None and step < len(t) - 1 and watch.any_cancelled(requests):
                    break
        if watch is not None:
            watch.ran([c.request_index for c in chunks], step - first)
        return step, [y[r, : c.duration] for r, c in enumerate(chunks)]

    def synthesize(
        self, requests: Sequence[SynthesisRequest], is_cancelled: Callable[[int], bool] | None = None
    ) -> list[Speech | Exception]:
        """One Speech per request, or the error that request earned (RequestError: its fault; Cancelled;
        another exception: its transcription failed).

        A request without a transcript gets one first. A multi-voice script (pipeline/script.py) becomes
        one request per segment, all synthesized in this batch; each segment's chunks are cross-faded
        and the segments joined end to end, as f5-tts's CLI joins them.
        """
        results: list[Speech | Exception | None] = [None] * len(requests)
        requests = list(requests)
        if any(r.voice is None and not r.reference_text for r in requests):
            for i, filled in enumerate(self.transcripts.fill(requests)):
                if isinstance(filled, Exception):
                    results[i] = filled
                else:
                    requests[i] = filled
        flat: list[SynthesisRequest] = []
        owners: list[tuple[int, int]] = []  # flat request -> (request, segment)
        totals: dict[int, int] = {}  # a script's chunk request -> chunks in all its segments
        speakers: dict[int, list[str]] = {}  # a script -> each segment's voice tag
        firsts: dict[int, list[int]] = {}  # a script's chunk request -> each segment's first chunk
        for i, request in enumerate(requests):
            if results[i] is not None:
                continue
            try:
                segments = segment_requests(request, self.voices)
                if is_script(request.target_text):
                    speakers[i] = [s.voice for s in split_script(request.target_text)]
                if request.chunk_index is not None and len(segments) > 1:
                    counts = [len(self._chunk_texts(segment)) for segment in segments]
                    j, local = locate_chunk(request.chunk_index, counts)
                    totals[i] = sum(counts)
                    firsts[i] = [sum(counts[:k]) for k in range(len(counts))]
                    segments = {j: dataclasses.replace(segments[j], chunk_index=local)}
                else:
                    segments = dict(enumerate(segments))
            except RequestError as e:
                results[i] = e
                continue
            for j, segment in segments.items():
                flat.append(segment)
                owners.append((i, j))
        answers = self._synthesize_segments(
            flat, None if is_cancelled is None else (lambda k: is_cancelled(owners[k][0]))
        )
        parts: dict[int, list[tuple[int, Speech | Exception]]] = {}
        for (i, j), answer in zip(owners, answers):
            parts.setdefault(i, []).append((j, answer))
        for i, pieces in parts.items():
            failed = [a for _, a in pieces if isinstance(a, Exception)]
            if failed:
                results[i] = next((a for a in failed if isinstance(a, Cancelled)), failed[0])
                continue
            results[i] = Speech(
                np.concatenate([a.waveform for _, a in pieces]).astype(np.float32),
                totals.get(i, sum(a.chunk_count for _, a in pieces)),
                pieces[-1][0],
                _script_chunks(pieces, speakers.get(i), firsts.get(i)),
            )
        self.cancelled_requests += sum(isinstance(r, Cancelled) for r in results)
        return results  # type: ignore[return-value]

    def _synthesize_segments(
        self, requests: Sequence[SynthesisRequest], is_cancelled: Callable[[int], bool] | None = None
    ) -> list[Speech | Exception]:
        """One Speech per request (each one voice, one text), or the RequestError or Cancelled it earned.

        is_cancelled(i): whether request i's client gave up (Triton's request.is_cancelled()). It is
        asked between ODE steps (at most every CANCEL_POLL_SECONDS), between sub-batches and before
        the vocoder; a cancelled request's chunks leave the work there and it gets Cancelled.
        """
        results: list[Speech | Exception | None] = [None] * len(requests)
        watch = CancelWatch(is_cancelled, self.cancel_poll_seconds) if is_cancelled is not None else None
        planned: list[_Chunk] = []
        chunk_counts: dict[int, int] = {}
        for i, request in enumerate(requests):
            if results[i] is not None:
                continue
            try:
                chunks, chunk_counts[i] = self._plan(i, request)
                planned.extend(chunks)
            except RequestError as e:
                results[i] = e
        mels: dict[int, torch.Tensor | None] = {}
        groups: dict[tuple, list[int]] = {}
        for j, chunk in enumerate(planned):
            groups.setdefault(requests[chunk.request_index].sampling_key, []).append(j)
        if watch is not None:
            watch.plan(planned, {i: requests[i].nfe_step for i in chunk_counts})
        for (steps, cfg, sway), members in groups.items():
            members.sort(key=lambda j: planned[j].duration)  # less padding per sub-batch
            for start in range(0, len(members), self.max_batch_chunks):
                batch = members[start : start + self.max_batch_chunks]
                if watch is not None:
                    watch.poll({planned[j].request_index for j in batch}, force=True)
                    batch = [j for j in batch if not watch.cancelled(planned[j].request_index)]
                    if not batch:
                        continue
                for j, mel in zip(batch, self._sample([planned[j] for j in batch], steps, cfg, sway, watch)):
                    mels[j] = mel
        if watch is not None and planned:
            watch.poll({c.request_index for c in planned}, force=True)
        keep = [
            j
            for j in range(len(planned))
            if mels.get(j) is not None and not (watch and watch.cancelled(planned[j].request_index))
        ]
        waves = dict(zip(keep, self.vocode([mels[j] for j in keep]))) if keep else {}
        per_request: dict[int, list[np.ndarray]] = {}
        spoken: dict[int, list[str]] = {}
        for j, chunk in enumerate(planned):
            if j not in waves:
                continue
            wave = waves[j]
            if chunk.reference.rms < TARGET_RMS:
                wave = wave * chunk.reference.rms / TARGET_RMS
            per_request.setdefault(chunk.request_index, []).append(wave)
            spoken.setdefault(chunk.request_index, []).append(chunk.spoken)
        heard = self._hear({i: waves for i, waves in per_request.items() if requests[i].measure_words})
        for i, chunk_waves in per_request.items():
            if isinstance(heard.get(i), Exception):
                results[i] = heard[i]
                continue
            first = requests[i].chunk_index or 0
            chunks = tuple(
                (
                    ChunkText(
                        first + k,
                        text,
                        None,
                        ends_segment=first + k == chunk_counts[i] - 1,
                        heard=heard[i][k] if i in heard else None,
                    ),
                    len(wave),
                )
                for k, (text, wave) in enumerate(zip(spoken[i], chunk_waves))
            )
            results[i] = Speech(cross_fade(chunk_waves), chunk_counts[i], chunks=chunks)
        if watch is not None:
            for i, done, total in watch.report():
                results[i] = Cancelled(f"cancelled by its client; stopped after {done} of {total} ODE steps")
                log.info(
                    "request %d cancelled by its client: stopped after %d of %d ODE steps of its %d chunk(s)",
                    i,
                    done,
                    total,
                    chunk_counts[i],
                )
        return results  # type: ignore[return-value]

    def _hear(self, waves: dict[int, list[np.ndarray]]) -> dict[int, list | Exception]:
        """What the transcriber heard in each chunk of the requests that measure their words, in one call."""
        if not waves:
            return {}
        flat = [(i, wave) for i, chunk_waves in waves.items() for wave in chunk_waves]
        answers = self.hear([wave for _, wave in flat])
        out: dict[int, list | Exception] = {}
        for (i, _), answer in zip(flat, answers):
            if isinstance(answer, Exception):
                out[i] = answer
            elif not isinstance(out.get(i), Exception):
                out.setdefault(i, []).append(tuple(answer))
        return out


class CancelWatch:
    """Which requests of one batch their clients cancelled, and how far their work got.

    Polling asks Triton once per request (an IPC round trip in the Python backend), so between
    ODE steps it asks at most every `interval` seconds; a cancelled request stays cancelled.
    """

    def __init__(self, is_cancelled: Callable[[int], bool], interval: float) -> None:
        self._is_cancelled, self._interval = is_cancelled, interval
        self._cancelled: set[int] = set()
        self._last_poll = -math.inf
        self._total: dict[int, int] = {}  # request -> its chunks' ODE steps (chunks x NFE)
        self._done: dict[int, int] = {}

    def plan(self, chunks: Sequence[_Chunk], steps: dict[int, int]) -> None:
        for c in chunks:
            self._total[c.request_index] = self._total.get(c.request_index, 0) + steps[c.request_index]
            self._done.setdefault(c.request_index, 0)

    def cancelled(self, request: int) -> bool:
        return request in self._cancelled

    def poll(self, requests: set[int], force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_poll < self._interval:
            return
        self._last_poll = now
        self._cancelled.update(i for i in requests - self._cancelled if self._is_cancelled(i))

    def any_cancelled(self, requests: set[int]) -> bool:
        self.poll(requests)
        return not requests.isdisjoint(self._cancelled)

    def ran(self, requests: Sequence[int], steps: int) -> None:
        """One ODE step count for each chunk (one request index per chunk) of a solve."""
        for i in requests:
            self._done[i] += steps

    def report(self) -> list[tuple[int, int, int]]:
        """(request, ODE steps run, ODE steps planned) for each cancelled request."""
        return [(i, self._done.get(i, 0), self._total.get(i, 0)) for i in sorted(self._cancelled)]


def _script_chunks(
    pieces: list[tuple[int, "Speech"]], speakers: list[str] | None, firsts: list[int] | None
) -> tuple[tuple[ChunkText, int], ...]:
    """A request's chunks from its segments' answers: indices in the whole text, each with its speaker.

    A whole answer holds every segment (their chunks in order); a script's chunk answer holds one
    chunk of one segment (firsts: each segment's first chunk in the whole text)."""
    out, offset = [], 0
    for j, answer in pieces:
        for chunk, samples in answer.chunks:
            index = chunk.index + (firsts[j] if firsts is not None else offset)  # chunk.index: within its segment
            speaker = None if speakers is None else speakers[j]
            out.append((dataclasses.replace(chunk, index=index, speaker=speaker), samples))
        offset += answer.chunk_count
    return tuple(out)
