"""python -m export: build a ready-to-serve Triton model repository for F5-TTS.

Examples:
  python -m export --output build/model_repository                     # F5TTS_v1_Base from the hub
  python -m export --ckpt model_1250000.safetensors --vocoder vocos-mel-24khz/ --output repo
  python -m export --demo-tiny --output build/demo_repository          # offline; NOISE, not speech
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

import contract
from export import model_config as mc
from export.checkpoint import CheckpointError
from export.hub import HubUnavailable, fetch_uri
from export.demo import DEMO_NOTICE, write_random_checkpoint, write_tiny_model_config, write_tiny_vocos
from export.repository import ExportSources, check_output, export_repository
from export.vocoder import VocoderError
from pipeline.voices import VoiceError, parse_voice_spec
from pipeline.f5_model import builtin_config_names, default_vocab_file, resolve_model_config

# Where f5-tts's own CLI fetches each released model (f5_tts/infer/infer_cli.py).
HUB_CHECKPOINTS = {
    "F5TTS_v1_Base": "hf://SWivid/F5-TTS/F5TTS_v1_Base/model_1250000.safetensors",
    "F5TTS_Base": "hf://SWivid/F5-TTS/F5TTS_Base/model_1200000.safetensors",
    "E2TTS_Base": "hf://SWivid/E2-TTS/E2TTS_Base/model_1200000.safetensors",
}


class ExportError(RuntimeError):
    pass


def resolve_checkpoint(ckpt: str | None, model_config: str) -> Path:
    """A local path, an hf:// path, or the released checkpoint of a built-in config."""
    if ckpt and not ckpt.startswith("hf://"):
        return Path(ckpt)
    uri = ckpt or HUB_CHECKPOINTS.get(model_config)
    if uri is None:
        raise ExportError(f"no released checkpoint is known for {model_config!r}; pass --ckpt PATH")
    return fetch_uri(uri, "pass --ckpt PATH to a local checkpoint, or --demo-tiny for the offline demo model")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    d = contract.DEFAULTS
    p = argparse.ArgumentParser(prog="python -m export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("sources")
    src.add_argument("--ckpt", help="checkpoint: .safetensors (keys prefixed ema_model.) or .pt with "
                     "ema_model_state_dict/model_state_dict; or hf://... (default: the released checkpoint of "
                     "--model-config, fetched like f5-tts does)")
    src.add_argument("--no-ema", dest="use_ema", action="store_false", help="load non-EMA weights")
    src.add_argument("--model-config", default="F5TTS_v1_Base",
                     help=f"f5-tts config name ({', '.join(builtin_config_names())}) or a YAML path "
                          "(default: %(default)s)")
    src.add_argument("--vocab", type=Path, help="vocab.txt (default: the one f5-tts ships)")
    src.add_argument("--vocoder", type=Path, help="local Vocos directory with config.yaml and pytorch_model.bin "
                     "(default: charactr/vocos-mel-24khz from the hub)")
    src.add_argument("--voice", action="append", default=[], metavar='NAME=AUDIO:"TRANSCRIPT"',
                     help="register a voice: requests may then send voice=NAME instead of reference audio and "
                          "text. The audio is preprocessed now, as f5-tts does (repeatable)")
    src.add_argument("--demo-tiny", action="store_true", help="tiny random-init DiT and Vocos of the real "
                     "architectures, for offline smoke runs. Produces NOISE, not speech")
    out = p.add_argument_group("output")
    out.add_argument("--output", type=Path, required=True, help="model repository directory to write")
    out.add_argument("--force", action="store_true", help="replace a non-empty --output")
    srv = p.add_argument_group("serving")
    srv.add_argument("--device", choices=["gpu", "cpu"], default="cpu", help="instance kind (default: %(default)s)")
    srv.add_argument("--instances", type=int, default=1, help="model instances (default: %(default)s)")
    srv.add_argument("--max-batch-size", type=int, default=8, help="dynamic batch size (default: %(default)s)")
    srv.add_argument("--max-queue-delay-us", type=int, default=5000,
                     help="dynamic batcher wait for more requests, in microseconds (default: %(default)s)")
    srv.add_argument("--max-batch-chunks", type=int,
                     help="text chunks sampled together in one DiT call (default: 16 on gpu; 1 on cpu, where "
                          "padded batches measured slower than one chunk at a time: docs/benchmarks.md)")
    srv.add_argument("--no-warmup", dest="warmup", action="store_false",
                     help="skip the warm-up request at load (the first client request then pays for it)")
    srv.add_argument("--reference-cache-size", type=int, default=32,
                     help="preprocessed references kept per instance, by content hash (LRU; 0 = off; "
                          "default: %(default)s)")
    srv.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp32",
                     help="stored DiT weights (default: %(default)s; fp16/bf16 need --device gpu)")
    lim = p.add_argument_group("request limits (answered with INVALID_ARG beyond them)")
    lim.add_argument("--max-text-bytes", type=int, default=contract.LIMITS.max_target_text_bytes,
                     help="UTF-8 bytes of target text per request (default: %(default)s)")
    lim.add_argument("--max-reference-seconds", type=float, default=contract.LIMITS.max_reference_seconds,
                     help="longest reference upload; it is clipped to 12 s anyway (default: %(default)s)")
    lim.add_argument("--max-audio-seconds", type=float, default=contract.LIMITS.max_audio_seconds,
                     help="largest `duration` and longest text chunk, reference included (default: %(default)s)")
    smp = p.add_argument_group("default sampling options (requests may override them)")
    smp.add_argument("--nfe-step", type=int, default=d.nfe_step)
    smp.add_argument("--cfg-strength", type=float, default=d.cfg_strength)
    smp.add_argument("--sway-sampling-coef", type=float, default=d.sway_sampling_coef)
    smp.add_argument("--speed", type=float, default=d.speed)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    limits = contract.LIMITS
    try:
        check_output(args.output, args.force)  # before the work, which a bad --output would waste
        defaults = contract.SamplingDefaults(args.nfe_step, args.cfg_strength, args.sway_sampling_coef, args.speed)
        for name, bounds in [("nfe_step", limits.nfe_step), ("cfg_strength", limits.cfg_strength),
                             ("sway_sampling_coef", limits.sway_sampling_coef), ("speed", limits.speed)]:
            value = getattr(defaults, name)
            if not bounds[0] <= value <= bounds[1]:
                raise ExportError(f"--{name.replace('_', '-')} {value} is outside [{bounds[0]}, {bounds[1]}]")
        voices = tuple(parse_voice_spec(spec) for spec in args.voice)
        for name, path, _ in voices:
            if not path.is_file():
                raise ExportError(f"--voice {name}: audio file {path} does not exist")
        with tempfile.TemporaryDirectory(prefix="f5-export-") as tmp:
            tmp = Path(tmp)
            if args.demo_tiny:
                print(f"NOTICE: {DEMO_NOTICE}", flush=True)
                config = write_tiny_model_config(tmp / "F5TTS_v1_Base_tiny_demo.yaml")
                sources = ExportSources(write_random_checkpoint(config, tmp / "model_demo.safetensors"), config,
                                        args.vocab or default_vocab_file(), write_tiny_vocos(tmp / "vocos"),
                                        voices=voices)
                name = "F5TTS_v1_Base_tiny_demo"
            else:
                config = resolve_model_config(args.model_config)
                sources = ExportSources(resolve_checkpoint(args.ckpt, args.model_config), config,
                                        args.vocab or default_vocab_file(), args.vocoder, args.use_ema, voices)
                name = Path(args.model_config).stem
            options = mc.ServingOptions(device=args.device, instances=args.instances,
                                        max_batch_size=args.max_batch_size, max_queue_delay_us=args.max_queue_delay_us,
                                        dtype=args.dtype, defaults=defaults, demo=args.demo_tiny, model_name=name,
                                        max_batch_chunks=args.max_batch_chunks or (16 if args.device == "gpu" else 1),
                                        warmup=args.warmup, reference_cache_size=args.reference_cache_size,
                                        limits=dataclasses.replace(
                                            contract.LIMITS, max_target_text_bytes=args.max_text_bytes,
                                            max_reference_seconds=args.max_reference_seconds,
                                            max_audio_seconds=args.max_audio_seconds))
            export_repository(sources, args.output, options, force=args.force)
    except (ExportError, HubUnavailable, CheckpointError, VocoderError, VoiceError, FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"export: error: {e}", file=sys.stderr)
        return 2
    print(f"export: model repository written to {args.output}")
    if args.demo_tiny:
        print(f"NOTICE: {DEMO_NOTICE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
