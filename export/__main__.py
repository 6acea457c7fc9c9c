"""python -m export: build a ready-to-serve Triton model repository for F5-TTS.

Examples:
  python -m export --output build/model_repository                     # F5TTS_v1_Base from the hub
  python -m export --ckpt model_1250000.safetensors --vocoder vocos-mel-24khz/ --output repo
  python -m export --demo-tiny --output build/demo_repository          # offline; NOISE, not speech
  python -m export --name fr --ckpt model_fr.pt --vocab vocab_fr.txt --model-config F5TTS_Base \
      --output build/model_repository                                  # add a model: f5_tts_fr
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import contract
from contract.parameters import DEVICES, TtsParameters, add_arguments, from_arguments
from export import model_config as mc
from export.api import DEFAULT_MODEL_CONFIG, ExportRequest, export_model
from export.demo import DEMO_NOTICE
from export.errors import ExportError
from pipeline.f5_model import builtin_config_names


class _Parser(argparse.ArgumentParser):
    """Raises ExportError for bad flags when they come from a program (F5_EXPORT_ARGS), not a terminal."""

    raise_errors = False

    def error(self, message: str):
        if self.raise_errors:
            raise ExportError(f"export flags: {message}")
        super().error(message)


def _parser() -> _Parser:
    serving = mc.ServingOptions()
    p = _Parser(prog="python -m export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("sources")
    src.add_argument(
        "--ckpt",
        help="checkpoint: .safetensors (keys prefixed ema_model.) or .pt with "
        "ema_model_state_dict/model_state_dict; or hf://... (default: the released checkpoint of "
        "--model-config, fetched like f5-tts does)",
    )
    src.add_argument("--no-ema", dest="use_ema", action="store_false", help="load non-EMA weights")
    src.add_argument(
        "--model-config",
        default=DEFAULT_MODEL_CONFIG,
        help=f"f5-tts config name ({', '.join(builtin_config_names())}) or a YAML path (default: %(default)s)",
    )
    src.add_argument("--vocab", type=Path, help="vocab.txt (default: the one f5-tts ships)")
    src.add_argument(
        "--vocoder",
        type=Path,
        help="local Vocos directory with config.yaml and pytorch_model.bin "
        "(default: charactr/vocos-mel-24khz from the hub)",
    )
    src.add_argument(
        "--voice",
        action="append",
        default=[],
        metavar='NAME=AUDIO[:"TRANSCRIPT"]',
        help="register a voice: requests may then send voice=NAME instead of reference audio and "
        "text. The audio is preprocessed now, as f5-tts does; without a transcript the transcriber "
        "writes it (needs --asr) (repeatable)",
    )
    asr = src.add_mutually_exclusive_group()
    asr.add_argument(
        "--asr",
        nargs="?",
        const=contract.DEFAULT_ASR_MODEL,
        metavar="MODEL",
        help="add the transcriber model: Whisper, which transcribes references sent without their "
        "transcript, as f5-tts does. MODEL: a hub name or a local directory with its files (default: "
        f"{contract.DEFAULT_ASR_MODEL}). Default: on for --device gpu, off for cpu (docs/export.md)",
    )
    asr.add_argument("--no-asr", dest="asr", action="store_const", const="", help="no transcriber model")
    src.add_argument(
        "--demo-tiny",
        action="store_true",
        help="tiny random-init DiT and Vocos of the real "
        "architectures, for offline smoke runs. Produces NOISE, not speech",
    )
    out = p.add_argument_group("output")
    out.add_argument("--output", type=Path, required=True, help="model repository directory to write")
    out.add_argument(
        "--name",
        metavar="NAME",
        help="add this checkpoint as model NAME (served as f5_tts_NAME, streamed by f5_tts_NAME_stream) to the "
        "repository already at --output, leaving its other models as they are; e.g. a language code: fr, de, ja",
    )
    out.add_argument(
        "--force", action="store_true", help="replace a non-empty --output (with --name: replace model NAME only)"
    )
    srv = p.add_argument_group("serving")
    srv.add_argument("--device", choices=DEVICES, default=serving.device, help="instance kind (default: %(default)s)")
    srv.add_argument("--instances", type=int, default=serving.instances, help="model instances (default: %(default)s)")
    srv.add_argument(
        "--max-batch-size", type=int, default=serving.max_batch_size, help="dynamic batch size (default: %(default)s)"
    )
    srv.add_argument(
        "--max-queue-delay-us",
        type=int,
        default=serving.max_queue_delay_us,
        help="dynamic batcher wait for more requests, in microseconds (default: %(default)s)",
    )
    srv.add_argument(
        "--no-warmup",
        dest="warmup",
        action="store_false",
        help="skip the warm-up request at load (the first client request then pays for it)",
    )
    srv.add_argument(
        "--gpu-memory-gb",
        type=float,
        metavar="GIB",
        help="refuse a repository whose models need more GPU memory than this: weights at their dtype and a "
        "CUDA context per GPU instance, every model of the repository counted (docs/export.md)",
    )
    # f5_tts's parameters: their flags, defaults and ranges as contract/parameters.py declares them.
    add_arguments(p, TtsParameters, {"serving": srv})
    return p


def request_from_args(args: argparse.Namespace) -> ExportRequest:
    serving = mc.ServingOptions(
        device=args.device,
        instances=args.instances,
        max_batch_size=args.max_batch_size,
        max_queue_delay_us=args.max_queue_delay_us,
        warmup=args.warmup,
        tts=TtsParameters.for_device(args.device, **from_arguments(args, TtsParameters)),
    )
    return ExportRequest(
        output=args.output,
        ckpt=args.ckpt,
        model_config=args.model_config,
        vocab=args.vocab,
        vocoder=args.vocoder,
        use_ema=args.use_ema,
        voices=tuple(args.voice),
        demo_tiny=args.demo_tiny,
        force=args.force,
        serving=serving,
        # an added model uses the repository's transcriber, if it has one
        asr=(None if args.name else default_asr(args.device)) if args.asr is None else (args.asr or None),
        name=args.name,
        gpu_memory_gb=args.gpu_memory_gb,
    )


def default_asr(device: str) -> str | None:
    """A transcriber by default where Whisper is cheap: on GPU (docs/benchmarks.md measures CPU)."""
    return contract.DEFAULT_ASR_MODEL if device == "gpu" else None


def request_from_argv(argv: list[str]) -> ExportRequest:
    """The export that these CLI flags ask for; bad flags raise ExportError (for programs, not terminals)."""
    parser = _parser()
    parser.raise_errors = True
    return request_from_args(parser.parse_args(argv))


def main(argv: list[str] | None = None) -> int:
    request = request_from_args(_parser().parse_args(argv))
    if request.demo_tiny:
        print(f"NOTICE: {DEMO_NOTICE}", flush=True)
    try:
        exported = export_model(request)
    except ExportError as e:
        print(f"export: error: {e}", file=sys.stderr)
        return 2
    if request.name:
        print(
            f"export: model {request.name!r} added to {exported.repository} as "
            f"{contract.tts_model_name(request.name)}; models there: {', '.join(exported.manifest['models'])}"
        )
    else:
        print(f"export: model repository written to {exported.repository}")
    if request.demo_tiny:
        print(f"NOTICE: {DEMO_NOTICE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
