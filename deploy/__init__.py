"""The deployments' bootstrap: typed environment settings, then the repository checked or exported.

Shared by the Triton image's entrypoint (docker/entrypoint.py) and the RunPod worker
(runpod_worker/), so both read the same variables with the same rules and accept and refuse the
same repositories with the same messages. `settings` declares every variable once; `preflight`
checks a repository, or exports one on first start. Above `export` and `launcher`, which know
nothing of it: the launcher only supervises tritonserver.
"""
