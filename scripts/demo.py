"""The main job, end to end: export a model repository, start tritonserver, synthesize
the example sentence through the gRPC client, write the WAV, stop the server.

  python scripts/demo.py [--ckpt PATH] [--vocoder DIR] [--output-wav demo.wav]

The released F5TTS_v1_Base is exported from the Hugging Face cache or hub (or --ckpt). Only
when it is neither cached nor reachable does the demo fall back to the tiny demo model, whose
WAV is noise (said loudly); any other export error stops the demo with that error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from client import SynthesisOptions, load_audio, synthesize, write_wav_atomic
from export.api import ExportRequest, export_model
from export.demo import DEMO_NOTICE
from export.errors import ExportError
from export.hub import HubUnavailable
from export.repository import REFERENCE_TEXT, REFERENCE_WAV
from launcher import ServerError, TritonServer

TEXT = "I don't really care what you call me. I've been a silent spectator, watching species evolve."


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", help="F5-TTS checkpoint (default: the released F5TTS_v1_Base if reachable)")
    p.add_argument("--vocoder", type=Path,
                   help="local Vocos directory (default: charactr/vocos-mel-24khz if reachable)")
    p.add_argument("--repository", type=Path, default=ROOT / "build" / "model_repository")
    p.add_argument("--output-wav", type=Path, default=ROOT / "build" / "demo.wav")
    p.add_argument("--nfe-step", type=int, default=16)
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
    try:
        with TritonServer(args.repository) as server:
            print(f"tritonserver ready (pid {server.pid}); gRPC {server.grpc_url}, HTTP {server.http_url}", flush=True)
            waveform, rate = synthesize(TEXT, audio, sample_rate, REFERENCE_TEXT, url=server.grpc_url,
                                        protocol="grpc", options=SynthesisOptions(nfe_step=args.nfe_step, seed=0))
    except ServerError as e:
        print(f"demo: error: {e}", file=sys.stderr)
        return 1
    write_wav_atomic(args.output_wav, waveform, rate)
    print(f"demo: wrote {args.output_wav} ({len(waveform) / rate:.2f} s at {rate} Hz)")
    if demo:
        print(f"demo: {DEMO_NOTICE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
