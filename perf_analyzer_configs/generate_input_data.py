"""Turn reference audio + texts into perf_analyzer --input-data JSON for the f5_tts model.

Built with the clients' own request builder, so perf_analyzer sends exactly what
`python -m client` sends. FP32 values are written as floats (perf_analyzer rejects
integers for FP32 while still exiting 0) and every input declares its shape.

  python perf_analyzer_configs/generate_input_data.py --reference-audio ref.wav \\
      --reference-text "..." --text "first text" --text "second text" --output data.json
  python perf_analyzer_configs/generate_input_data.py --example     # the committed example data

Without --reference-text the requests carry no transcript and the server transcribes the
reference (its repository needs the transcriber model; the first request pays for it, the
later ones find it cached).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from client.audio import load_audio
from client.request import SynthesisOptions, build_inputs, perf_analyzer_entry

EXAMPLE_OUTPUT = Path(__file__).parent / "data" / "basic_en.json"
EXAMPLE_TEXTS = [
    "I don't really care what you call me.",
    "I've been a silent spectator, watching species evolve, empires rise and fall.",
]
EXAMPLE_REFERENCE_TEXT = "Some call me nature, others call me mother nature."
EXAMPLE_RATE = 16_000  # the shipped 24 kHz reference, resampled to keep the JSON small (the server resamples back)


def input_data(
    audio, sample_rate: int, reference_text: str | None, texts: list[str], options: SynthesisOptions
) -> dict:
    return {"data": [perf_analyzer_entry(build_inputs(audio, sample_rate, reference_text, t, options)) for t in texts]}


def example_reference():
    from importlib.resources import files

    import numpy as np
    import soxr

    audio, sr = load_audio(Path(str(files("f5_tts").joinpath("infer/examples/basic/basic_ref_en.wav"))))
    resampled = soxr.resample(audio.T, sr, EXAMPLE_RATE).T.astype(np.float32)
    return np.round(resampled, 5).astype(np.float32), EXAMPLE_RATE


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--example", action="store_true", help=f"write the example data to {EXAMPLE_OUTPUT}")
    p.add_argument("--reference-audio", type=Path)
    p.add_argument("--reference-text", help="its transcript; absent: the server transcribes the reference")
    p.add_argument("--text", action="append", default=[], help="a target text (repeatable: one entry each)")
    p.add_argument("--nfe-step", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", type=Path)
    args = p.parse_args(argv)
    options = SynthesisOptions(nfe_step=args.nfe_step, seed=args.seed)
    if args.example:
        audio, sr = example_reference()
        data = input_data(audio, sr, EXAMPLE_REFERENCE_TEXT, EXAMPLE_TEXTS, options)
        output = args.output or EXAMPLE_OUTPUT
    else:
        if not (args.reference_audio and args.text and args.output):
            p.error("give --reference-audio, at least one --text and --output (or --example)")
        audio, sr = load_audio(args.reference_audio)
        data = input_data(audio, sr, args.reference_text, args.text, options)
        output = args.output
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(data, separators=(",", ":")) + "\n")
    print(f"wrote {output}: {len(data['data'])} requests")
    return 0


if __name__ == "__main__":
    sys.exit(main())
