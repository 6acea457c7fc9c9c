"""Triton Python-backend adapter for F5-TTS: tensors in -> pipeline -> tensors out.

All logic lives in `pipeline/` (importable and tested without Triton). The vocoder runs
in-process on the files of the `vocoder` model (its ONNX file, or on GPU the PyTorch Vocos
beside it): warm-up at load cannot call another model (Triton loads models concurrently),
and it saves a shared-memory round trip per chunk. A compiled engine compiles here, in
initialize, into a cache inside the repository that the next start reuses.
"""

import json
import time
import traceback
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

import contract
from contract.errors import LOADED_ON, SEE_SERVER_LOG
from contract.parameters import TtsParameters
from pipeline.engine import use_cache_dir
from pipeline.lifeline import exit_when_orphaned
from pipeline.logs import forward_logs
from pipeline.parameters import instance_device
from pipeline.requests import Cancelled, RequestError, parse_request
from pipeline.synthesizer import Synthesizer
from pipeline.vocoder import OnnxVocoder, TorchVocoder


class TritonPythonModel:
    def initialize(self, args):
        exit_when_orphaned()
        started = time.monotonic()
        forward_logs(pb_utils.Logger.log_info, pb_utils.Logger.log_warn, pb_utils.Logger.log_error)
        config = json.loads(args["model_config"])
        self.name = args["model_name"]  # f5_tts, or f5_tts_NAME beside it in the repository
        self.params = TtsParameters.from_triton(config.get("parameters", {}))
        device = instance_device(args)
        model_dir = Path(args["model_repository"])
        if self.params.vocoder_runtime == "torch":
            vocoder = TorchVocoder((model_dir / self.params.torch_vocoder_dir).resolve(), device=device)
        else:
            vocoder = OnnxVocoder((model_dir / self.params.vocoder_file).resolve(), device=device)
        if self.params.engine == "compiled":
            use_cache_dir(model_dir / self.params.compile_cache_dir)
        self.synthesizer = Synthesizer.from_directory(
            model_dir / args["model_version"],
            vocoder,
            device=device,
            parameters=self.params,
            transcribe=self._transcribe if self.params.transcriber_model else None,
            hear=self._hear if self.params.transcriber_model else None,
        )
        compiled_in = self.synthesizer.warm_up()
        loaded = sorted(self.synthesizer.voices)
        if loaded != list(self.params.voice_names):
            raise ValueError(
                f"model parameter '{contract.VOICES_PARAMETER}' lists {list(self.params.voice_names)} but "
                f"{model_dir / args['model_version']}/voices holds {loaded}; re-run `python -m export`"
            )
        # Triton's custom metrics (on :8002/metrics beside its own): how often an uploaded reference, e.g. a
        # voice of the gateway's library sent with every request, was found already prepared.
        self._cache_family = family = pb_utils.MetricFamily(
            name=contract.REFERENCE_CACHE_METRIC,
            description="uploaded references looked up in f5_tts's reference cache",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        self._cache_metrics = {
            "hit": family.Metric(labels={"model": self.name, "result": "hit"}),
            "miss": family.Metric(labels={"model": self.name, "result": "miss"}),
        }
        self._cache_counted = {"hit": 0, "miss": 0}
        # Requests whose clients gave up while f5_tts worked on them: their work stopped at the next check.
        self._cancelled_family = pb_utils.MetricFamily(
            name=contract.CANCELLED_METRIC,
            description="f5_tts requests cancelled by their clients mid-synthesis",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        self._cancelled_metric = self._cancelled_family.Metric(labels={"model": self.name})
        # References sent without a transcript: a miss asked the transcriber, a hit reused its answer.
        self._transcription_family = family = pb_utils.MetricFamily(
            name=contract.TRANSCRIPTION_CACHE_METRIC,
            description="references sent without a transcript, looked up in f5_tts's transcript cache",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        self._transcription_metrics = {
            "hit": family.Metric(labels={"model": self.name, "result": "hit"}),
            "miss": family.Metric(labels={"model": self.name, "result": "miss"}),
        }
        self._transcription_counted = {"hit": 0, "miss": 0}
        self._cancelled_counted = 0
        if self.params.demo_model:
            pb_utils.Logger.log_warn("DEMO MODEL: tiny random weights; it produces noise, not speech")
        pb_utils.Logger.log_info(
            f"{self.name} ({self.params.f5_model_name}, {self.params.dtype}, engine {self.params.engine}, vocoder "
            f"{self.params.vocoder_runtime}) {LOADED_ON} {device} in {time.monotonic() - started:.1f} s"
            f"{f' (compiling {compiled_in:.1f} s)' if compiled_in else ''}; voices: {', '.join(loaded) or 'none'}"
        )

    def execute(self, requests):
        responses = [None] * len(requests)
        parsed = []
        for i, request in enumerate(requests):
            try:
                tensors = {}
                for spec in contract.TTS_INPUTS:
                    tensor = pb_utils.get_input_tensor_by_name(request, spec.name)
                    tensors[spec.name] = None if tensor is None else tensor.as_numpy()
                parsed.append(
                    (i, parse_request(tensors, self.params.defaults, self.params.limits, self.synthesizer.voices))
                )
            except RequestError as e:
                responses[i] = _error(e)
        try:
            # Triton's request cancellation (a gRPC client that timed out, was interrupted or cancelled):
            # asked between ODE steps, so an abandoned request stops instead of delaying the next ones.
            results = self.synthesizer.synthesize(
                [r for _, r in parsed], is_cancelled=lambda k: requests[parsed[k][0]].is_cancelled()
            )
        except Exception:
            pb_utils.Logger.log_error(f"{self.name}: synthesis failed:\n{traceback.format_exc()}")
            results = [RuntimeError(f"internal error during synthesis; {SEE_SERVER_LOG}")] * len(parsed)
        self._count_metrics()
        for (i, _), result in zip(parsed, results):
            if isinstance(result, Exception):
                responses[i] = _error(result)
            else:
                responses[i] = pb_utils.InferenceResponse(
                    [pb_utils.Tensor(name, value) for name, value in result.outputs().items()]
                )
        return responses

    def _count_metrics(self):
        for result, now in (
            ("hit", self.synthesizer.reference_cache_hits),
            ("miss", self.synthesizer.reference_cache_misses),
        ):
            if now > self._cache_counted[result]:
                self._cache_metrics[result].increment(now - self._cache_counted[result])
                self._cache_counted[result] = now
        for result, now in (("hit", self.synthesizer.transcripts.hits), ("miss", self.synthesizer.transcripts.misses)):
            if now > self._transcription_counted[result]:
                self._transcription_metrics[result].increment(now - self._transcription_counted[result])
                self._transcription_counted[result] = now
        if self.synthesizer.cancelled_requests > self._cancelled_counted:
            self._cancelled_metric.increment(self.synthesizer.cancelled_requests - self._cancelled_counted)
            self._cancelled_counted = self.synthesizer.cancelled_requests

    def _transcribe(self, clips):
        """BLS to the transcriber, one request per reference (Triton batches concurrent ones)."""
        answers = []
        for clip in clips:
            response = pb_utils.InferenceRequest(
                model_name=self.params.transcriber_model,
                inputs=[
                    pb_utils.Tensor(contract.REFERENCE_AUDIO, clip.audio[None].astype(np.float32)),
                    pb_utils.Tensor(contract.REFERENCE_SAMPLE_RATE, np.array([[clip.sample_rate]], dtype=np.int32)),
                ],
                requested_output_names=[contract.TRANSCRIPT],
            ).exec()
            if response.has_error():
                error = response.error()
                message = f"transcribing the reference with '{self.params.transcriber_model}' failed: {error.message()}"
                answers.append(
                    RequestError(message) if error.code() == pb_utils.TritonError.INVALID_ARG else RuntimeError(message)
                )
            else:
                text = pb_utils.get_output_tensor_by_name(response, contract.TRANSCRIPT).as_numpy().reshape(-1)[0]
                answers.append(text.decode("utf-8") if isinstance(text, bytes) else str(text))
        return answers

    def _hear(self, waves):
        """BLS to the transcriber for the word timestamps of generated chunks, one request each; the
        transcript itself is not asked for."""
        pending = [
            pb_utils.InferenceRequest(
                model_name=self.params.transcriber_model,
                inputs=[
                    pb_utils.Tensor(contract.REFERENCE_AUDIO, np.asarray(wave, np.float32)[None, None]),
                    pb_utils.Tensor(contract.REFERENCE_SAMPLE_RATE, np.array([[contract.SAMPLE_RATE]], np.int32)),
                ],
                requested_output_names=[contract.WORDS],
            ).exec()
            for wave in waves
        ]
        answers = []
        for response in pending:
            if response.has_error():
                answers.append(
                    RuntimeError(
                        f"'{self.params.transcriber_model}' failed to hear a chunk: {response.error().message()}"
                    )
                )
            else:
                raw = pb_utils.get_output_tensor_by_name(response, contract.WORDS).as_numpy().reshape(-1)[0]
                answers.append([(str(w), float(a), float(b)) for w, a, b in json.loads(raw)])
        return answers

    def finalize(self):
        self._transcription_metrics = None
        self._transcription_family = None
        self.synthesizer = None
        self._cache_metrics = None  # before their family (Triton's rule)
        self._cache_family = None
        self._cancelled_metric = None
        self._cancelled_family = None


def _error(error: Exception):
    """The request's fault (RequestError) is INVALID_ARG with its message, a client's cancellation CANCELLED;
    anything else is INTERNAL."""
    if isinstance(error, RequestError):
        code = pb_utils.TritonError.INVALID_ARG
    elif isinstance(error, Cancelled):
        code = pb_utils.TritonError.CANCELLED
    else:
        code = pb_utils.TritonError.INTERNAL
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(str(error), code))
