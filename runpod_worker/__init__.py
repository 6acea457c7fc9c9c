"""RunPod serverless worker over a warm, local tritonserver.

`python -m runpod_worker [runpod SDK flags]`: `startup` checks the network volume (exporting the
repository into it once when it holds only a checkpoint), starts tritonserver through the
project's launcher and waits until every model is loaded and warmed up; only then does the
RunPod SDK start taking jobs, which `handler` answers through the local server's gRPC endpoint.
Concurrent jobs reach Triton together, so its dynamic batcher batches them.
"""
