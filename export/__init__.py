"""Export CLI: package an F5-TTS checkpoint and the Vocos vocoder into a Triton model repository."""
