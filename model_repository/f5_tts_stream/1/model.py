"""Triton Python-backend adapter for streaming F5-TTS (decoupled: one response per text chunk).

No weights here: each text chunk is a BLS request to `f5_tts` (input chunk_index), so the
chunks of every stream share f5_tts's dynamic batching. The joining logic lives in
pipeline/streaming.py. Each request is served on its own thread so that execute() returns
at once and many streams are in flight together.
"""

import json
import sys
import threading
import time
import traceback

import triton_python_backend_utils as pb_utils

import contract
from contract.errors import SEE_SERVER_LOG, SHUTTING_DOWN
from contract.parameters import StreamParameters
from pipeline.lifeline import exit_when_orphaned
from pipeline.streaming import chunk_inputs, chunk_result, piece_outputs, stream_chunks

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
UNLOAD_WAIT_S = 20


class ChunkFailed(Exception):
    def __init__(self, error):
        super().__init__(error.message())
        self.error = error


class TritonPythonModel:
    def initialize(self, args):
        exit_when_orphaned()
        config = json.loads(args["model_config"])
        if not pb_utils.using_decoupled_model_transaction_policy(config):
            raise ValueError(
                f"{args['model_name']} must be decoupled (model_transaction_policy "
                "{ decoupled: true }); re-run `python -m export`"
            )
        self.params = StreamParameters.from_triton(config.get("parameters", {}))
        self.name = args["model_name"]  # f5_tts_stream, or f5_tts_NAME_stream for model NAME
        self._threads = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()  # set at unload: streams stop before their next chunk
        # How many streams are being served, on the metrics port: what a scaler (or a clean stop) waits on.
        self._active_family = pb_utils.MetricFamily(
            name=contract.STREAMS_ACTIVE_METRIC,
            description="f5_tts_stream requests being served now",
            kind=pb_utils.MetricFamily.GAUGE,
        )
        self._active = self._active_family.Metric(labels={"model": self.name})

    def execute(self, requests):
        for request in requests:
            thread = threading.Thread(target=self._serve, args=(request,), daemon=True)
            with self._lock:
                self._threads.add(thread)
                self._active.set(len(self._threads))
            thread.start()
        return None

    def _serve(self, request):
        sender = request.get_response_sender()
        try:
            inputs = {t.name(): t.as_numpy() for t in request.inputs()}

            def infer_chunk(k):
                chunk = chunk_inputs(inputs, k, self.params.first_chunk_chars)
                response = pb_utils.InferenceRequest(
                    model_name=self.params.tts_model,
                    inputs=[pb_utils.Tensor(name, value) for name, value in chunk.items()],
                    requested_output_names=[
                        contract.WAVEFORM,
                        contract.CHUNK_COUNT,
                        contract.SEGMENT_INDEX,
                        contract.CAPTIONS,
                    ],
                ).exec()
                if response.has_error():
                    raise ChunkFailed(response.error())
                return chunk_result({t.name(): t.as_numpy() for t in response.output_tensors()})

            def send(samples, final, cues):
                sender.send(
                    pb_utils.InferenceResponse(
                        [pb_utils.Tensor(name, value) for name, value in piece_outputs(samples, cues).items()]
                    ),
                    flags=FINAL if final else 0,
                )

            def stop():
                return self._stopping.is_set() or sender.is_cancelled()

            done, total = stream_chunks(infer_chunk, send, stop)
            if done < total:
                cancelled = sender.is_cancelled()
                why = "client cancelled" if cancelled else "model unloading"
                pb_utils.Logger.log_info(f"{self.name}: {why}; stopped after {done} of {total} chunks")
                # a client still listening learns that the audio is incomplete
                _send_quietly(
                    sender,
                    None
                    if cancelled
                    else pb_utils.InferenceResponse(
                        error=pb_utils.TritonError(
                            f"{SHUTTING_DOWN}: stream stopped after {done} of {total} chunks",
                            pb_utils.TritonError.UNAVAILABLE,
                        )
                    ),
                )
        except ChunkFailed as e:
            # f5_tts's own answer (INVALID_ARG with its message for a bad request)
            _send_quietly(sender, pb_utils.InferenceResponse(error=e.error))
        except Exception:
            if sender.is_cancelled():  # the client left while a piece was being sent
                pb_utils.Logger.log_info(f"{self.name}: client cancelled during a send")
            else:
                pb_utils.Logger.log_error(f"{self.name}: stream failed:\n{traceback.format_exc()}")
            _send_quietly(
                sender,
                pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(
                        f"internal error while streaming; {SEE_SERVER_LOG}", pb_utils.TritonError.INTERNAL
                    )
                ),
            )
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())
                if self._active is not None:  # None once unloaded
                    self._active.set(len(self._threads))

    def finalize(self):
        self._stopping.set()
        with self._lock:
            threads = list(self._threads)
        pb_utils.Logger.log_info(f"{self.name}: unloading with {len(threads)} stream(s) running")
        # One bound for all, inside Triton's 30 s exit timeout: each stream ends after its current chunk.
        deadline = time.monotonic() + UNLOAD_WAIT_S
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        frames = sys._current_frames()
        for thread in threads:
            if thread.is_alive():  # a stuck stream is named with where it is stuck, not waited for forever
                where = "".join(traceback.format_stack(frames[thread.ident])) if thread.ident in frames else "?"
                pb_utils.Logger.log_error(
                    f"{self.name}: a stream still running {UNLOAD_WAIT_S} s into the unload:\n{where}"
                )
        with self._lock:  # a stream still running reads it under the lock
            self._active = None  # before its family (Triton's rule)
        self._active_family = None


def _send_quietly(sender, response):
    """The final response; a client that already left makes it fail, which is no longer news."""
    try:
        if response is None:
            sender.send(flags=FINAL)
        else:
            sender.send(response, flags=FINAL)
    except Exception as e:
        pb_utils.Logger.log_info(f"final response not delivered ({e})")
