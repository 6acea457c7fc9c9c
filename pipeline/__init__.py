"""Plain-Python serving pipeline for F5-TTS: imported by the Triton models and by tests.

Nothing here imports Triton; `model_repository/*/1/model.py` adapt it to the Python backend.
"""
