"""python -m client: synthesize speech with a running F5-TTS Triton server.

  python -m client [synthesize] --reference-audio ref.wav --reference-text "Some call me nature." \
      --text "Hello from Triton." --output out.wav
  python -m client --reference-audio ref.wav --text "Hello." --output out.wav   (the server transcribes ref.wav)
  python -m client --voice nature --text-file story.txt --stream --output story.wav   (WAV grows as it plays)
  python -m client --voice nature --text "Hello." --stream --output - | aplay -f S16_LE -r 24000 -c 1
  python -m client --list-voices
  python -m client --list-models                       (the server's F5-TTS models: --model NAME picks one)
  python -m client --model fr --reference-audio ref_fr.wav --text "Bonjour." --output out.wav
  python -m client bench --concurrency 1,2,4,8        (see python -m client bench --help)
  python -m client transcribe ref.wav [--language en] [--json]   (see python -m client transcribe --help)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import contract
from client import captions
from client.api import (
    ServedModel,
    SynthesisError,
    list_models,
    list_voices,
    stream_synthesize,
    synthesize,
    transcribe,
    tts_model,
)
from client.audio import ProgressiveWav, load_audio, pcm16, write_wav_atomic
from client.connection import resolve_endpoint
from client.request import SynthesisOptions, build_inputs, http_json_body

# Exit statuses (the help's epilog and docs/clients.md say the same).
EXIT_FAILURE = 1  # the request failed: the server's message, a missing file, a server out of reach
EXIT_USAGE = 2  # the command line is wrong (argparse's own status for its errors)
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + the signal, as a shell reports it
_EXIT_STATUSES = (
    f"exit status: 0 done; {EXIT_FAILURE} for a failed request; {EXIT_USAGE} for a usage error; "
    f"{EXIT_SIGNAL[signal.SIGINT]} (SIGINT, Ctrl-C)\nor {EXIT_SIGNAL[signal.SIGTERM]} (SIGTERM) when a "
    "signal abandons the request. Each of these says why in one line on\nstderr"
)
EXIT_STATUSES = _EXIT_STATUSES + " and leaves no output file."
TRANSCRIBE_EXIT_STATUSES = _EXIT_STATUSES + "."  # it writes no file


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived. A BaseException, as KeyboardInterrupt is, so that no `except
    Exception` on the way (the API's error mapping) reports it as a failed request, while every
    `finally` and `except BaseException` (cancelling the stream, removing the partial WAV) runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _interrupt(signum, frame):
    # Later signals are ignored: the clean-up this one starts (cancelling the request on the server,
    # removing the partial file) finishes, and a second Ctrl-C prints no traceback from inside it.
    for s in EXIT_SIGNAL:
        signal.signal(s, signal.SIG_IGN)
    raise Interrupted(signum)


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m client",
        description=__doc__,
        epilog=EXIT_STATUSES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model",
        default=contract.DEFAULT_MODEL_NAME,
        help="which of the server's F5-TTS models speaks: its short name (default, fr...; see --list-models) or "
        "its Triton name (f5_tts_fr); with --stream its stream model (f5_tts_fr_stream) answers (default: "
        "%(default)s, served as f5_tts)",
    )
    r = p.add_argument_group("speaker: a reference recording, or a voice registered on the server")
    r.add_argument("--reference-audio", type=Path, help="WAV/FLAC/OGG, any rate, any channels")
    r.add_argument(
        "--reference-text",
        help="transcript of the reference audio; absent: the server transcribes it (once per distinct audio), "
        f"which needs a '{contract.TRANSCRIBER_MODEL}' model in its repository (python -m export ... --asr)",
    )
    r.add_argument("--voice", help="name of a registered voice (see --list-voices)")
    p.add_argument(
        "--list-voices", action="store_true", help="print the voices registered for --model on the server and exit"
    )
    p.add_argument(
        "--list-models",
        action="store_true",
        help="print the server's F5-TTS models (name, Triton models, architecture, voices, ready) and exit",
    )
    text = p.add_mutually_exclusive_group()
    text.add_argument("--text", help="text to speak")
    text.add_argument("--text-file", type=Path, help="UTF-8 file with the text to speak")
    p.add_argument(
        "--output",
        default="out.wav",
        help="WAV to write (atomically; progressively with --stream); '-' writes raw 16-bit PCM, "
        f"mono, {contract.SAMPLE_RATE} Hz to stdout (default: %(default)s)",
    )
    p.add_argument(
        "--stream",
        action="store_true",
        help=f"stream: audio arrives chunk by chunk from {contract.STREAM_MODEL} (gRPC stream or HTTP SSE)",
    )
    o = p.add_argument_group("sampling options (default: the server's)")
    o.add_argument("--nfe-step", type=int)
    o.add_argument("--cfg-strength", type=float)
    o.add_argument("--sway-sampling-coef", type=float)
    o.add_argument("--speed", type=float)
    o.add_argument("--seed", type=int, help="same seed => same audio; -1 = random")
    o.add_argument("--duration", type=float, help="total seconds, reference included")
    o.add_argument(
        "--first-chunk-chars",
        type=int,
        help="UTF-8 bytes of the first text chunk (0 = f5-tts's "
        f"chunking; default: {contract.STREAM_FIRST_CHUNK_CHARS} with --stream, 0 without)",
    )
    p.add_argument(
        "--captions",
        type=Path,
        metavar="FILE",
        help="also write the captions: FILE.srt (SubRip), FILE.vtt (WebVTT, with word times and speakers) "
        "or FILE.json (everything, estimated word times marked)",
    )
    p.add_argument(
        "--measure-words",
        action="store_true",
        default=None,
        help="the captions' word times heard by the server's transcriber (export --asr), not estimated",
    )
    _connection_arguments(p)
    p.add_argument(
        "--write-request-json",
        type=Path,
        metavar="FILE",
        help="write the HTTP JSON request body to FILE (for curl) and exit without calling the server",
    )
    args = p.parse_args(argv)
    if args.list_models and args.list_voices:
        p.error("--list-models and --list-voices each list one thing; give one of them")
    if not args.list_voices and not args.list_models:
        if args.text is None and args.text_file is None:
            p.error("one of --text or --text-file is required")
        if args.voice is None and args.reference_audio is None:
            p.error(
                "give --reference-audio (with --reference-text, or without it for the server to transcribe it), "
                "or --voice NAME"
            )
        if args.voice is not None and (args.reference_audio is not None or args.reference_text is not None):
            p.error("--voice replaces --reference-audio and --reference-text; give one or the other")
        if args.stream and args.write_request_json:
            p.error("--write-request-json writes a unary request; it does not combine with --stream")
        if args.captions is not None:
            try:
                captions.format_of(args.captions)
            except ValueError as e:
                p.error(f"--captions: {e}")
    return args


def _connection_arguments(p: argparse.ArgumentParser) -> None:
    """Where the server is and how to reach it: the same flags for every command that calls it."""
    p.add_argument("--protocol", choices=["grpc", "http"], help="default: the URL's scheme, else grpc")
    p.add_argument(
        "--url",
        help="server address: host:port, or with a scheme: http://, https:// (TLS), grpc://, "
        "grpcs:// (TLS), which sets the protocol (default: localhost:8001 for gRPC, localhost:8000 for "
        "HTTP)",
    )
    c = p.add_argument_group("connection")
    c.add_argument("--timeout", type=float, help="seconds before the request is abandoned")
    c.add_argument("--ssl", action="store_true", help="TLS (gRPC) / HTTPS")
    c.add_argument("--root-certificates", help="CA bundle (PEM) to verify the server")
    c.add_argument("--private-key", help="client key (PEM) for mutual TLS")
    c.add_argument("--certificate-chain", help="client certificate (PEM) for mutual TLS")
    c.add_argument("-H", "--header", action="append", default=[], metavar="NAME=VALUE", help="extra header")
    p.add_argument(
        "-v", "--verbose", action="store_true", help="log each request and response: tensor names, dtypes and shapes"
    )


def parse_transcribe_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m client transcribe",
        description=f"Print the transcript of an audio file, as the server's '{contract.TRANSCRIBER_MODEL}' "
        "model hears it\n(Whisper, as f5-tts transcribes references). The server's repository needs that "
        "model:\npython -m export ... --asr.\n\n  python -m client transcribe ref.wav\n"
        "  python -m client transcribe ref.wav --as-reference --json   (the transcript F5-TTS would use)",
        epilog=TRANSCRIBE_EXIT_STATUSES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("audio", type=Path, help="WAV/FLAC/OGG, any rate, any channels")
    p.add_argument("--language", help="Whisper language code to transcribe in (en, zh, fr, ...); default: detected")
    p.add_argument(
        "--as-reference",
        action="store_true",
        help="transcribe only what F5-TTS keeps of it as a reference (clipped to "
        f"{contract.LIMITS.reference_clip_seconds:g} s at a pause, silence trimmed): the transcript to send "
        "with it as --reference-text",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help=f'print {{"{contract.TRANSCRIPT}": ..., "{contract.LANGUAGE}": ...}}: the transcript and its language '
        "(the one asked for, or the detected one)",
    )
    p.add_argument("--model", default=contract.TRANSCRIBER_MODEL, help="model to call (default: %(default)s)")
    _connection_arguments(p)
    args = p.parse_args(argv)
    if args.language is not None and not args.language.strip():
        p.error("--language is empty; give a Whisper language code (en, zh, fr, ...), or leave it out to detect it")
    return args


def main(argv: list[str] | None = None) -> int:
    # gRPC's C core logs lines of its own to stderr (a TLS handshake against a plaintext port logs
    # one before the client's error); the CLI says what went wrong in one line itself. grpc reads
    # this when it is first imported, which the client does lazily, after this line; a value the
    # user set is kept (GRPC_VERBOSITY=DEBUG shows those lines again).
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        from client.bench import main as bench_main

        with _signals_interrupt():
            try:
                return bench_main(argv[1:])
            except Interrupted as e:  # asyncio.run cancels the requests in flight on the way out
                print(f"bench: stopped by {e}: the benchmark was abandoned and wrote no report", file=sys.stderr)
                return EXIT_SIGNAL[e.signum]
    if argv[:1] == ["transcribe"]:
        args = parse_transcribe_args(argv[1:])
        _logging(args.verbose)
        with _signals_interrupt():
            try:
                return _transcribe(args)
            except Interrupted as e:
                print(f"client: stopped by {e}: the request was abandoned", file=sys.stderr)
                return EXIT_SIGNAL[e.signum]
    if argv[:1] == ["synthesize"]:
        argv = argv[1:]
    args = parse_args(argv)
    _logging(args.verbose)
    with _signals_interrupt():
        try:
            return _run(args)
        except Interrupted as e:
            removed = f"; the partial {args.output} was removed" if args.stream and args.output != "-" else ""
            print(f"client: stopped by {e}: the request was abandoned{removed}", file=sys.stderr)
            return EXIT_SIGNAL[e.signum]


def _logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    if verbose:
        logging.getLogger("client").setLevel(logging.DEBUG)


@contextlib.contextmanager
def _signals_interrupt():
    """SIGINT and SIGTERM raise Interrupted while inside. signal.signal works in the main thread only
    (main() may be called from another one in-process); a signal ignored on the way in stays ignored
    (a shell's background job ignores SIGINT)."""
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {s: signal.signal(s, _interrupt) for s in EXIT_SIGNAL if signal.getsignal(s) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


class UsageError(ValueError):
    """The command line is wrong in a way argparse cannot see (a URL, a header)."""


def _connection(args):
    """(endpoint, headers, TLS options) from the connection flags; UsageError when they are wrong."""
    try:
        endpoint = resolve_endpoint(args.url, args.protocol, args.ssl)
    except ValueError as e:
        raise UsageError(str(e)) from None
    try:
        headers = dict(h.split("=", 1) for h in args.header)
    except ValueError:
        raise UsageError(f"--header must be NAME=VALUE, got {args.header}") from None
    connection = dict(
        ssl=endpoint.ssl,
        root_certificates=args.root_certificates,
        private_key=args.private_key,
        certificate_chain=args.certificate_chain,
    )
    return endpoint, headers, connection


def _transcribe(args) -> int:
    try:
        endpoint, headers, connection = _connection(args)
    except UsageError as e:
        print(f"client: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        heard = transcribe(
            args.audio,
            language=args.language,
            as_reference=args.as_reference,
            detect_language=args.json,  # the language costs a detection pass: only when it is printed
            url=endpoint.url,
            model=args.model,
            timeout=args.timeout,
            headers=headers,
            **connection,
        )
    except (SynthesisError, ValueError, OSError) as e:
        print(f"client: error: {e}", file=sys.stderr)
        return EXIT_FAILURE
    if args.json:
        print(json.dumps({contract.TRANSCRIPT: heard.text, contract.LANGUAGE: heard.language}, ensure_ascii=False))
    else:
        print(heard.text)
    return 0


def _run(args) -> int:
    try:
        endpoint, headers, connection = _connection(args)
    except UsageError as e:
        print(f"client: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    url, protocol = endpoint.url, endpoint.protocol
    # With raw PCM on stdout, everything said to the user goes to stderr.
    say = (lambda line: print(line, file=sys.stderr)) if args.output == "-" else print
    try:
        if args.list_models:
            print(models_table(list_models(url, protocol, headers=headers, **connection)))
            return 0
        if args.list_voices:
            voices = list_voices(url, protocol, model=args.model, headers=headers, **connection)
            print("\n".join(voices) if voices else "(no registered voices)")
            return 0
        text = args.text if args.text is not None else args.text_file.read_text(encoding="utf-8")
        audio, sample_rate = load_audio(args.reference_audio) if args.reference_audio else (None, None)
        options = SynthesisOptions(
            args.nfe_step,
            args.cfg_strength,
            args.sway_sampling_coef,
            args.speed,
            args.seed,
            args.duration,
            args.first_chunk_chars,
            args.measure_words,
        )
        if args.write_request_json:
            body = http_json_body(build_inputs(audio, sample_rate, args.reference_text, text, options, args.voice))
            Path(args.write_request_json).write_text(json.dumps(body, separators=(",", ":")))
            model = tts_model(args.model)
            print(f"wrote {args.write_request_json}: POST it to http://HOST:8000/v2/models/{model}/infer")
            return 0
        reference = (audio, sample_rate, args.reference_text)
        started = time.perf_counter()
        cues = []
        if args.stream:
            samples, first = _stream(args, text, reference, url, protocol, options, headers, connection, cues)
            out_rate = contract.SAMPLE_RATE
        else:
            waveform, out_rate, cues = synthesize(
                text,
                *reference,
                voice=args.voice,
                url=url,
                protocol=protocol,
                model=args.model,
                options=options,
                timeout=args.timeout,
                headers=headers,
                captions=True,
                **connection,
            )
            if args.output == "-":
                sys.stdout.buffer.write(pcm16(waveform))
                sys.stdout.buffer.flush()
            else:
                write_wav_atomic(args.output, waveform, out_rate)
            samples, first = len(waveform), None
        elapsed = time.perf_counter() - started
        if args.captions is not None:
            captions.write(cues, args.captions)
    except (SynthesisError, ValueError, OSError) as e:
        print(f"client: error: {e}", file=sys.stderr)
        return EXIT_FAILURE
    # The output is complete: a signal now would only cut the summary line short.
    for s in EXIT_SIGNAL:
        if signal.getsignal(s) is _interrupt:
            signal.signal(s, signal.SIG_IGN)
    seconds = samples / out_rate
    where = "stdout" if args.output == "-" else args.output
    ttfa = f", first audio after {first:.2f} s" if first is not None else ""
    also = f"; captions of {len(cues)} chunk(s) in {args.captions}" if args.captions is not None else ""
    say(
        f"wrote {where}: {seconds:.2f} s of audio at {out_rate} Hz in {elapsed:.2f} s{ttfa} "
        f"(RTF {elapsed / max(seconds, 1e-9):.3f}){also}"
    )
    return 0


MODELS_HEADER = ("name", "Triton model", "stream model", "architecture", "voices", "ready")


def models_table(models: list[ServedModel]) -> str:
    """--list-models: one row per F5-TTS model, columns aligned; `ready` is yes, or the states that are not."""
    rows = [MODELS_HEADER]
    for m in models:
        not_ready = [f"{n} {state}" for n, state in ((m.triton_model, m.state), (m.stream_model, m.stream_state)) if n]
        not_ready = [s for s in not_ready if not s.endswith(" READY")]
        rows.append(
            (
                m.name,
                m.triton_model,
                m.stream_model or "-",
                m.architecture + (" (demo: noise)" if m.demo_model else ""),
                ",".join(m.voices) or "-",
                "yes" if m.ready else "no: " + ", ".join(not_ready),
            )
        )
    if len(rows) == 1:
        return "(no F5-TTS models)"
    widths = [max(len(r[i]) for r in rows) for i in range(len(MODELS_HEADER) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in rows)


def _stream(args, text, reference, url, protocol, options, headers, connection, cues) -> tuple[int, float | None]:
    """Write each piece as it arrives (its cues appended to `cues`); returns (samples written, seconds to
    the first piece).
    A stream that fails or is stopped (Interrupted) removes its partial WAV: a file at the output
    path is a whole answer."""
    started = time.perf_counter()
    pieces = stream_synthesize(
        text,
        *reference,
        voice=args.voice,
        url=url,
        protocol=protocol,
        model=args.model,
        options=options,
        timeout=args.timeout,
        headers=headers,
        captions=True,
        **connection,
    )  # a generator: nothing is sent before the loop
    sink = None
    samples, first = 0, None
    try:
        if args.output != "-":
            sink = ProgressiveWav(args.output, contract.SAMPLE_RATE)
        for piece, piece_cues in pieces:
            cues.extend(piece_cues)
            if first is None:
                first = time.perf_counter() - started
            if sink is None:
                sys.stdout.buffer.write(pcm16(piece))
                sys.stdout.buffer.flush()
            else:
                sink.write(piece)
            samples += len(piece)
    except BaseException:
        if sink is not None:
            sink.close()
            Path(args.output).unlink(missing_ok=True)
        raise
    finally:
        pieces.close()  # on an early exit (broken pipe, a signal) the server stops the remaining chunks
    if sink is not None:
        sink.close()
    return samples, first


if __name__ == "__main__":
    sys.exit(main())
