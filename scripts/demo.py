"""The main job, end to end: export a model repository, start tritonserver, synthesize
the example sentence through the gRPC client, write the WAV, stop the server.

  python scripts/demo.py [--ckpt PATH] [--vocoder DIR] [--output-wav demo.wav] [--text TEXT]

The speech is streamed (f5_tts_stream, with f5-tts's own text chunking: the same audio as one
whole-text request), so a line per text chunk shows progress as its audio arrives: on 2 CPU
cores the full-size model needs about 17 s per second of speech (README.md, "The two commands").

The released F5TTS_v1_Base is exported from the Hugging Face cache or hub (or --ckpt). Only
when it is neither cached nor reachable does the demo fall back to the tiny demo model, whose
WAV is noise (said loudly); any other export error stops the demo with that error.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from pathlib import Path

import numpy as np

import contract
from client import SynthesisError, SynthesisOptions, load_audio, stream_synthesize, write_wav_atomic
from export.api import ExportRequest, export_model
from export.demo import DEMO_NOTICE
from export.errors import ExportError
from export.hub import HubUnavailable
from export.repository import REFERENCE_TEXT, REFERENCE_WAV
from launcher import ServerError, TritonServer

ROOT = Path(__file__).resolve().parent.parent

TEXT = "I don't really care what you call me. I've been a silent spectator, watching species evolve."
STILL_WORKING_SECONDS = 30  # a line this often while a chunk is being synthesized (minutes on CPU)


def chunk_count(text: str, audio: np.ndarray, sample_rate: int) -> int:
    """How many chunks the server splits `text` into with this reference: f5-tts's chunking as the
    pipeline plans it (pipeline/synthesizer.py), to number the progress lines."""
    from pipeline.reference import prepare_reference
    from pipeline.synthesizer import MAX_CHARS_WINDOW_SECONDS, split_text

    ref = prepare_reference(audio, sample_rate, REFERENCE_TEXT)
    max_chars = int(len(ref.text.encode("utf-8")) / ref.seconds * (MAX_CHARS_WINDOW_SECONDS - ref.seconds))
    return len(split_text(text, max_chars))


def speak_with_progress(
    server: TritonServer, text: str, audio: np.ndarray, sample_rate: int, nfe_step: int
) -> np.ndarray:
    """The speech of `text`, streamed: one line per text chunk as its audio arrives, and a line every
    STILL_WORKING_SECONDS while a chunk is awaited."""
    total = chunk_count(text, audio, sample_rate)
    print(f"demo: synthesizing {total} text chunk(s) at NFE {nfe_step}", flush=True)
    started, pieces, arrived = time.monotonic(), [], threading.Event()

    def still_working():
        while not arrived.wait(STILL_WORKING_SECONDS):
            print(
                f"demo: chunk {len(pieces) + 1}/{total}: still synthesizing, "
                f"{time.monotonic() - started:.0f} s elapsed",
                flush=True,
            )

    # first_chunk_chars 0: f5-tts's chunking, so the joined pieces equal the whole-text answer.
    options = SynthesisOptions(nfe_step=nfe_step, seed=0, first_chunk_chars=0)
    ticker = threading.Thread(target=still_working, daemon=True)
    ticker.start()
    try:
        for piece in stream_synthesize(
            text, audio, sample_rate, REFERENCE_TEXT, url=server.grpc_url, protocol="grpc", options=options
        ):
            pieces.append(piece)
            done = sum(len(p) for p in pieces) / contract.SAMPLE_RATE
            print(
                f"demo: chunk {len(pieces)}/{total}: {len(piece) / contract.SAMPLE_RATE:.2f} s of audio "
                f"({done:.2f} s so far) after {time.monotonic() - started:.1f} s",
                flush=True,
            )
    finally:
        arrived.set()
        ticker.join()
    return np.concatenate(pieces)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", help="F5-TTS checkpoint (default: the released F5TTS_v1_Base if reachable)")
    p.add_argument(
        "--vocoder", type=Path, help="local Vocos directory (default: charactr/vocos-mel-24khz if reachable)"
    )
    p.add_argument("--repository", type=Path, default=ROOT / "build" / "model_repository")
    p.add_argument("--output-wav", type=Path, default=ROOT / "build" / "demo.wav")
    p.add_argument("--nfe-step", type=int, default=16)
    p.add_argument("--text", default=TEXT, help="what to say (default: %(default)r)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    real = ExportRequest(output=args.repository, ckpt=args.ckpt, vocoder=args.vocoder, force=True)
    demo = False
    try:
        try:
            export_model(real)
        except HubUnavailable as e:
            if args.ckpt:
                raise  # the user asked for this checkpoint: no silent substitute
            print(f"\n*** {e}\n*** Falling back to the demo model.\n*** {DEMO_NOTICE}\n", flush=True)
            demo = True
            export_model(ExportRequest(output=args.repository, demo_tiny=True, force=True))
    except ExportError as e:
        print(f"demo: error: {e}", file=sys.stderr)
        return 1

    audio, sample_rate = load_audio(REFERENCE_WAV)
    print("demo: starting tritonserver (it loads the models and runs a warm-up request first)", flush=True)
    try:
        with TritonServer(args.repository) as server:
            print(f"tritonserver ready (pid {server.pid}); gRPC {server.grpc_url}, HTTP {server.http_url}", flush=True)
            waveform = speak_with_progress(server, args.text, audio, sample_rate, args.nfe_step)
    except (ServerError, SynthesisError) as e:
        print(f"demo: error: {e}", file=sys.stderr)
        return 1
    rate = contract.SAMPLE_RATE
    write_wav_atomic(args.output_wav, waveform, rate)
    print(f"demo: wrote {args.output_wav} ({len(waveform) / rate:.2f} s at {rate} Hz)")
    if demo:
        print(f"demo: {DEMO_NOTICE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
