"""Triton Python-backend adapter for streaming F5-TTS (decoupled: one response per text chunk).

No weights here: each text chunk is a BLS request to `f5_tts` (input chunk_index), so the
chunks of every stream share f5_tts's dynamic batching. The joining logic lives in
pipeline/streaming.py. Each request is served on its own thread so that execute() returns
at once and many streams are in flight together.
"""

import json
import threading
import traceback

import numpy as np
import triton_python_backend_utils as pb_utils

import contract
from pipeline.parameters import StreamParameters
from pipeline.streaming import stream_chunks

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


class ChunkFailed(Exception):
    def __init__(self, error):
        super().__init__(error.message())
        self.error = error


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        if not pb_utils.using_decoupled_model_transaction_policy(config):
            raise ValueError(f"{contract.STREAM_MODEL} must be decoupled (model_transaction_policy "
                             "{ decoupled: true }); re-run `python -m export`")
        self.params = StreamParameters.from_triton(config.get("parameters", {}))
        self._threads = set()
        self._lock = threading.Lock()

    def execute(self, requests):
        for request in requests:
            thread = threading.Thread(target=self._serve, args=(request,), daemon=True)
            with self._lock:
                self._threads.add(thread)
            thread.start()
        return None

    def _serve(self, request):
        sender = request.get_response_sender()
        try:
            inputs = [t for t in request.inputs() if t.name() != contract.CHUNK_INDEX]
            if all(t.name() != contract.FIRST_CHUNK_CHARS for t in inputs):
                inputs.append(pb_utils.Tensor(contract.FIRST_CHUNK_CHARS,
                                              np.array([[self.params.first_chunk_chars]], dtype=np.int32)))

            def infer_chunk(k):
                chunk_request = pb_utils.InferenceRequest(
                    model_name=self.params.tts_model,
                    inputs=[*inputs, pb_utils.Tensor(contract.CHUNK_INDEX, np.array([[k]], dtype=np.int32))],
                    requested_output_names=[contract.WAVEFORM, contract.CHUNK_COUNT])
                response = chunk_request.exec()
                if response.has_error():
                    raise ChunkFailed(response.error())
                wave = pb_utils.get_output_tensor_by_name(response, contract.WAVEFORM).as_numpy()
                count = pb_utils.get_output_tensor_by_name(response, contract.CHUNK_COUNT).as_numpy()
                return wave.reshape(-1), int(count.reshape(-1)[0])

            def send(samples, final):
                sender.send(pb_utils.InferenceResponse([
                    pb_utils.Tensor(contract.WAVEFORM, samples[None].astype(np.float32)),
                    pb_utils.Tensor(contract.SAMPLE_RATE_OUT, np.array([[contract.SAMPLE_RATE]], dtype=np.int32)),
                ]), flags=FINAL if final else 0)

            done, total = stream_chunks(infer_chunk, send, sender.is_cancelled)
            if done < total:
                pb_utils.Logger.log_info(f"{contract.STREAM_MODEL}: client cancelled; stopped after {done} of "
                                         f"{total} chunks")
                try:
                    sender.send(flags=FINAL)  # releases the request; the client is gone
                except Exception:
                    pass
        except ChunkFailed as e:
            # f5_tts's own answer (INVALID_ARG with its message for a bad request)
            sender.send(pb_utils.InferenceResponse(error=e.error), flags=FINAL)
        except Exception:
            pb_utils.Logger.log_error(f"{contract.STREAM_MODEL}: stream failed:\n{traceback.format_exc()}")
            sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(
                "internal error while streaming; see the server log", pb_utils.TritonError.INTERNAL)), flags=FINAL)
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def finalize(self):
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=30)
