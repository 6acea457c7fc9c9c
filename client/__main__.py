"""python -m client: synthesize speech with a running F5-TTS Triton server.

  python -m client [synthesize] --reference-audio ref.wav --reference-text "Some call me nature." \
      --text "Hello from Triton." --output out.wav
  python -m client bench --concurrency 1,2,4,8        (see python -m client bench --help)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import contract
from client.api import SynthesisError, synthesize
from client.audio import load_audio, write_wav_atomic
from client.request import SynthesisOptions, build_inputs, http_json_body


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m client", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--protocol", choices=["grpc", "http"], default="grpc")
    p.add_argument("--url", help="server address (default: localhost:8001 for gRPC, localhost:8000 for HTTP)")
    p.add_argument("--model", default=contract.TTS_MODEL)
    p.add_argument("--reference-audio", type=Path, required=True, help="WAV/FLAC/OGG, any rate, any channels")
    p.add_argument("--reference-text", required=True, help="transcript of the reference audio")
    text = p.add_mutually_exclusive_group(required=True)
    text.add_argument("--text", help="text to speak")
    text.add_argument("--text-file", type=Path, help="UTF-8 file with the text to speak")
    p.add_argument("--output", type=Path, default=Path("out.wav"), help="WAV to write (atomically)")
    o = p.add_argument_group("sampling options (default: the server's)")
    o.add_argument("--nfe-step", type=int)
    o.add_argument("--cfg-strength", type=float)
    o.add_argument("--sway-sampling-coef", type=float)
    o.add_argument("--speed", type=float)
    o.add_argument("--seed", type=int, help="same seed => same audio; -1 = random")
    o.add_argument("--duration", type=float, help="total seconds, reference included")
    c = p.add_argument_group("connection")
    c.add_argument("--timeout", type=float, help="seconds before the request is abandoned")
    c.add_argument("--ssl", action="store_true", help="TLS (gRPC) / HTTPS")
    c.add_argument("--root-certificates", help="CA bundle (PEM) to verify the server")
    c.add_argument("--private-key", help="client key (PEM) for mutual TLS")
    c.add_argument("--certificate-chain", help="client certificate (PEM) for mutual TLS")
    c.add_argument("-H", "--header", action="append", default=[], metavar="NAME=VALUE", help="extra header")
    p.add_argument("--write-request-json", type=Path, metavar="FILE",
                   help="write the HTTP JSON request body to FILE (for curl) and exit without calling the server")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        from client.bench import main as bench_main

        return bench_main(argv[1:])
    if argv[:1] == ["synthesize"]:
        argv = argv[1:]
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    url = args.url or ("localhost:8001" if args.protocol == "grpc" else "localhost:8000")
    try:
        headers = dict(h.split("=", 1) for h in args.header)
    except ValueError:
        print(f"client: error: --header must be NAME=VALUE, got {args.header}", file=sys.stderr)
        return 2
    try:
        text = args.text if args.text is not None else args.text_file.read_text(encoding="utf-8")
        audio, sample_rate = load_audio(args.reference_audio)
        options = SynthesisOptions(args.nfe_step, args.cfg_strength, args.sway_sampling_coef, args.speed,
                                   args.seed, args.duration)
        if args.write_request_json:
            body = http_json_body(build_inputs(audio, sample_rate, args.reference_text, text, options))
            args.write_request_json.write_text(json.dumps(body, separators=(",", ":")))
            print(f"wrote {args.write_request_json}: POST it to http://HOST:8000/v2/models/{args.model}/infer")
            return 0
        started = time.perf_counter()
        waveform, out_rate = synthesize(
            text, audio, sample_rate, args.reference_text, url=url, protocol=args.protocol, model=args.model,
            options=options, timeout=args.timeout, headers=headers, ssl=args.ssl,
            root_certificates=args.root_certificates, private_key=args.private_key,
            certificate_chain=args.certificate_chain, verbose=args.verbose)
        elapsed = time.perf_counter() - started
        write_wav_atomic(args.output, waveform, out_rate)
    except (SynthesisError, ValueError, OSError) as e:
        print(f"client: error: {e}", file=sys.stderr)
        return 1
    seconds = len(waveform) / out_rate
    print(f"wrote {args.output}: {seconds:.2f} s of audio at {out_rate} Hz in {elapsed:.2f} s "
          f"(RTF {elapsed / seconds:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
