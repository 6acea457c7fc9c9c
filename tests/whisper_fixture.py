"""A tiny Whisper with the released openai/whisper-large-v3-turbo's layout, random weights.

What it keeps from the release (config.json, generation_config.json, tokenizer files of
openai/whisper-large-v3-turbo): the architecture class and model type, 128 mel bins, 1500 encoder
positions (30 s), the vocabulary size 51866 and every special token at its released id
(<|endoftext|> 50257, <|startoftranscript|> 50258, 100 languages 50259-50358 in Whisper's order,
translate 50359, transcribe 50360, ..., <|notimestamps|> 50364, 1501 timestamp tokens after them),
the generation config's language/task tables and suppressions. What it shrinks: the width and
depth (so it loads in a second), the decoder's maximum length (random weights never say
<|endoftext|>, so every transcript runs to it; 12 tokens keep a transcript short enough to be a
reference's text), and the ordinary vocabulary: the 256 byte tokens in GPT-2's order (220 is
"Ġ", a space, as begin_suppress_tokens expects) and then words "Ġw256" ... "Ġw50256", so a random
model's transcript reads " w1234 w99 ...", which f5-tts can speak.

`add_to_cache` files it where huggingface_hub would, so transformers' pipeline loads it by the
released name exactly as it loads the release.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hub_cache import add_to_cache

WHISPER_REPO = "openai/whisper-large-v3-turbo"
MAX_TOKENS = 12
RELEASED_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "added_tokens.json",
)
_LFS = {"model.safetensors"}


def _byte_tokens() -> list[str]:
    """GPT-2's byte-level alphabet in its vocabulary order (printable bytes first, the rest shifted)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    shifted = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + n) for n in range(len(shifted))]


def build_tiny_whisper(directory: Path, seed: int = 0, silent: bool = False) -> Path:
    """Write the model's files (as the release names them) into `directory`.

    silent: a model that hears nothing in any audio (every step says <|nospeech|>, a special token the
    transcript leaves out), for the empty-transcription paths."""
    import torch
    from transformers import GenerationConfig, WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration
    from transformers.models.whisper.tokenization_whisper import LANGUAGES, WhisperTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    vocab = {token: i for i, token in enumerate(_byte_tokens())}
    vocab.update({f"Ġw{i}": i for i in range(256, 50257)})
    specials = ["<|endoftext|>", "<|startoftranscript|>"]
    specials += [f"<|{code}|>" for code in LANGUAGES]  # Whisper's language order: en, zh, de, ... yue
    specials += ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>"]
    specials += ["<|notimestamps|>"]
    assert len(specials) == 108, len(specials)
    tokenizer = WhisperTokenizer(vocab=vocab, merges=[], pad_token="<|endoftext|>")
    tokenizer.add_special_tokens({"additional_special_tokens": specials[1:]})
    tokenizer.add_tokens([f"<|{i * 0.02:.2f}|>" for i in range(1501)])
    ids = tokenizer.convert_tokens_to_ids
    assert (ids("<|endoftext|>"), ids("<|startoftranscript|>"), ids("<|notimestamps|>")) == (50257, 50258, 50364)
    assert len(tokenizer) == 51866
    tokenizer.save_pretrained(directory)

    WhisperFeatureExtractor(feature_size=128).save_pretrained(directory)

    config = WhisperConfig(
        vocab_size=51866,
        num_mel_bins=128,
        d_model=64,
        encoder_layers=2,
        encoder_attention_heads=4,
        encoder_ffn_dim=128,
        decoder_layers=2,
        decoder_attention_heads=4,
        decoder_ffn_dim=128,
        max_source_positions=1500,
        max_target_positions=448,
        begin_suppress_tokens=[220, 50257],
        bos_token_id=50257,
        eos_token_id=50257,
        pad_token_id=50257,
        decoder_start_token_id=50258,
        architectures=["WhisperForConditionalGeneration"],
        init_std=0.3,  # random weights whose transcript depends on the audio (at 0.02 it does not)
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config).eval()
    lang_to_id = {f"<|{code}|>": 50259 + i for i, code in enumerate(LANGUAGES)}
    model.generation_config = GenerationConfig(
        decoder_start_token_id=50258,
        bos_token_id=50257,
        eos_token_id=50257,
        pad_token_id=50257,
        begin_suppress_tokens=[220, 50257],
        max_length=MAX_TOKENS,
        is_multilingual=True,
        lang_to_id=lang_to_id,
        task_to_id={"translate": 50359, "transcribe": 50360},
        no_timestamps_token_id=50364,
        prev_sot_token_id=50362,
        return_timestamps=False,
        alignment_heads=[[1, 0], [1, 1], [1, 2], [1, 3]],
        suppress_tokens=[],
    )
    if silent:
        with torch.no_grad():
            norm = model.model.decoder.layer_norm
            norm.weight.zero_()  # the decoder's last state is the constant `direction` ...
            direction = torch.randn(config.d_model)
            norm.bias.copy_(direction)
            model.model.decoder.embed_tokens.weight[50363] = 10 * direction  # ... whose best token is this
    model.save_pretrained(directory)
    return directory


def add_whisper_to_cache(hf_home: Path, source: Path | None = None) -> Path:
    """The tiny Whisper as the released repo in the cache; returns its snapshot directory."""
    with tempfile.TemporaryDirectory() as tmp:
        built = build_tiny_whisper(Path(tmp) / "whisper") if source is None else source
        staged = Path(tmp) / "staged"
        staged.mkdir()
        snapshot = None
        for name in RELEASED_FILES:
            if (built / name).exists():
                copy = staged / name
                copy.write_bytes((built / name).read_bytes())
                snapshot = add_to_cache(hf_home, WHISPER_REPO, name, copy, lfs=name in _LFS).parent
        return snapshot


def describe(directory: Path) -> dict:
    """The facts a test may assert about a built model, read back from its files."""
    config = json.loads((directory / "config.json").read_text())
    return {"vocab_size": config["vocab_size"], "num_mel_bins": config["num_mel_bins"]}
