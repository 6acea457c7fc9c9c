"""OpenAI-compatible speech API, voice library and web playground in front of Triton.

`python -m gateway --triton-url localhost:8001`: an ASGI service (FastAPI on uvicorn) that answers
`POST /v1/audio/speech` as OpenAI defines it by streaming through the `f5_tts_stream` model over
the project's asyncio gRPC client. It imports `client` and `contract` only (no torch): it can run
beside tritonserver or on any machine that reaches it.

Modules: `settings` (options), `errors` (OpenAI's error shape), `speech_request` (the request body,
checked), `encoders` (mp3/opus/aac/flac/wav/pcm), `speech_stream` (one answer, encoded as Triton
sends it), `triton` (the server side), `voice_library` (uploaded voices on disk), `services` (what
the routes work with), `auth` (the API key), `admission` (the in-flight limit), `body` (size-limited
bodies), `routes/` (models, voices, speech, health and the page), `app` (puts them together),
`static/` (the playground page).
"""
