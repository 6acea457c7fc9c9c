"""Community checkpoints: their architectures and vocabs give exactly f5-tts's own tokens and audio.

F5-TTS's community models (f5-tts's SHARED.md: French, German, Italian, Japanese, Russian, Spanish,
Finnish, Hindi...) mostly keep the first release's architecture, F5TTS_Base (`text_mask_padding:
False`, `pe_attn_head: 1`), some at the F5TTS_Small size, each with a vocab.txt of its own (f5-tts's
"custom" tokenizer: one token per line, line index = id, a space first). They come as `.pt` files
holding `ema_model_state_dict` (f5-tts's trainer's checkpoint, pruned to its EMA weights) or as
safetensors.

Here, tiny random-weight checkpoints of each architecture in those formats, with a French vocab laid out
as f5-tts's dataset preparation writes a new language's vocab (the dataset's characters, sorted: the
space first), go through `python -m export` into the pipeline: its text ids equal f5-tts's
(`convert_char_to_pinyin`, then `list_str_to_idx`: a token the vocab lacks is id 0), its DiT is
f5-tts's `load_model`'s (same velocity, exactly), and its waveforms equal f5-tts's own inference
(`infer_batch_process` after `seed_everything`; tolerance as in test_parity: max |diff| <= 1e-3 x
peak, -60 dB).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import (
    FRENCH_CHARS,
    FRENCH_TEXT,
    Reference,
    assert_same_audio,
    f5tts_inference,
    f5tts_load,
    synthesis_request,
    write_vocab,
)
from omegaconf import OmegaConf

import contract
from export.__main__ import request_from_argv
from export.api import export_model
from export.demo import TINY_ARCH, write_random_checkpoint, write_tiny_model_config
from pipeline.f5_model import ModelConfig, default_vocab_file, load_vocab, resolve_model_config
from pipeline.synthesizer import Synthesizer, text_ids, text_tokens
from pipeline.vocoder import OnnxVocoder

SEED = 4321
NFE = 8
BASES = ["F5TTS_v1_Base", "F5TTS_Base", "F5TTS_Small"]

# Long enough for f5-tts's chunk_text to split it into several chunks with the shipped reference.
FRENCH_LONG_TEXT = (
    "Certains m'appellent la nature, d'autres m'appellent mère nature. J'ai été une spectatrice silencieuse, "
    "regardant les espèces évoluer, les empires s'élever puis tomber. Mais souvenez-vous toujours : je suis "
    "puissante et durable. Respectez-moi et je vous nourrirai ; ignorez-moi et vous en subirez les conséquences. "
    "Les rivières creusent les vallées, les vents façonnent les montagnes, et les saisons tournent sans demander "
    "la permission à personne. Écoutez bien, et vous entendrez toute l'histoire."
)
# Characters no French vocab lists: f5-tts's list_str_to_idx gives them id 0 (the space's), and so must we.
OUT_OF_VOCAB = "Ça coûte 5 € ; straße, 你好 🙂 “cité” ‘x’ ñ"


@pytest.fixture(scope="module")
def french_vocab(tmp_path_factory) -> Path:
    return write_vocab(tmp_path_factory.mktemp("vocab") / "vocab.txt", FRENCH_CHARS)


def f5tts_ids(text: str, vocab: dict[str, int]) -> list[int]:
    """f5-tts's own ids for a text, as infer_batch_process and CFM.sample make them."""
    from f5_tts.model.utils import convert_char_to_pinyin, list_str_to_idx

    return list_str_to_idx(convert_char_to_pinyin([text]), vocab)[0].tolist()


def our_ids(text: str, vocab: dict[str, int]) -> list[int]:
    """The pipeline's ids for a text: the Synthesizer's tokens (_plan) and ids (_solve)."""
    return text_ids([text_tokens(text)], vocab)[0].tolist()


# --- vocab and tokenization ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "layout", ["shipped", "french", "french_crlf", "french_no_final_newline"], ids=lambda layout: layout
)
def test_vocab_loads_as_f5tts_get_tokenizer_loads_it(layout, french_vocab, tmp_path):
    from f5_tts.model.utils import get_tokenizer

    path = {
        "shipped": lambda: default_vocab_file(),
        "french": lambda: french_vocab,
        "french_crlf": lambda: write_vocab(tmp_path / "crlf.txt", FRENCH_CHARS, newline="\r\n"),
        "french_no_final_newline": lambda: write_vocab(tmp_path / "open.txt", FRENCH_CHARS, final_newline=False),
    }[layout]()
    got = load_vocab(path)
    assert got == get_tokenizer(str(path), "custom")
    vocab, size = got
    assert vocab[" "] == 0 and size == len(vocab)
    if layout.startswith("french"):
        lines = sorted(set(FRENCH_CHARS))
        # f5-tts reads each line less its last character: a last line without its newline loses its
        # token (here "’" becomes ""), in f5-tts and here alike.
        if layout == "french_no_final_newline":
            lines[-1] = lines[-1][:-1]
        assert vocab == {c: i for i, c in enumerate(lines)}


TOKENIZATION_CASES = {
    "french": ("french", FRENCH_TEXT + " " + FRENCH_LONG_TEXT),
    "french_out_of_vocab": ("french", OUT_OF_VOCAB),
    "chinese": ("shipped", "对，这就是我，万人敬仰的太乙真人。突然，身边一阵笑声。"),
    "mixed": ("shipped", "Triton serves F5-TTS 很快。你好 world! Ça va ? 5 € “quoted”"),
    "french_text_shipped_vocab": ("shipped", FRENCH_TEXT),
}


@pytest.mark.parametrize("case", TOKENIZATION_CASES)
def test_text_ids_equal_f5tts(case, french_vocab):
    """convert_char_to_pinyin then list_str_to_idx with the model's vocab_char_map (load_model's
    get_tokenizer(vocab_file, "custom")), as f5-tts's inference does; a token missing from the vocab is 0."""
    which, text = TOKENIZATION_CASES[case]
    path = french_vocab if which == "french" else default_vocab_file()
    vocab, _ = load_vocab(path)
    want = f5tts_ids(text, vocab)
    got = our_ids(text, vocab)
    assert got == want
    # Each id independently: the token's line in the file, or 0 for a token the file does not list.
    lines = path.read_text(encoding="utf-8").split("\n")
    assert got == [lines.index(t) if t in lines else 0 for t in text_tokens(text)]
    unknown = [t for t in text_tokens(text) if t not in vocab]
    if case == "french_out_of_vocab":
        assert {"€", "ß", "🙂", "ñ", "ni2", "hao3"} <= set(unknown)
        assert "“" not in text_tokens(text) and ";" not in text_tokens(text)  # f5-tts's own substitutions
    elif case in ("french", "chinese"):
        assert not unknown  # the vocab covers every token of its language
    if case == "chinese":
        assert "zhen1" in text_tokens(text)  # pinyin with tones


def test_text_ids_of_a_batch_pad_with_minus_one(french_vocab):
    """The Synthesizer batches chunks: rows of different lengths padded with -1, as CFM.sample pads."""
    vocab, _ = load_vocab(french_vocab)
    rows = [text_tokens("Très bien."), text_tokens("Oui.")]
    ids = text_ids(rows, vocab)
    assert ids.shape == (2, len(rows[0]))
    assert ids[1].tolist() == f5tts_ids("Oui.", vocab) + [-1] * (len(rows[0]) - len(rows[1]))


# --- architectures ----------------------------------------------------------------------------------
def test_f5tts_small_differs_from_base_only_in_size():
    """So the tiny F5TTS_Small is the tiny F5TTS_Base but for its name: the parity tests below run it
    anyway, as an export of a Small checkpoint names it, in the Small checkpoints' safetensors format."""
    base, small = (ModelConfig.load(resolve_model_config(n)) for n in ("F5TTS_Base", "F5TTS_Small"))
    assert {k for k in base.arch if base.arch[k] != small.arch.get(k)} == {"dim", "depth", "heads"}
    assert set(base.arch) == set(small.arch) and base.mel_spec == small.mel_spec


@pytest.mark.parametrize("base", BASES)
def test_tiny_config_keeps_the_base_architecture(base, tmp_path):
    """Only the sizes shrink: the flags that tell v0 from v1 (text_mask_padding, pe_attn_head, qk_norm...)
    and the mel settings are the base config's."""
    want = ModelConfig.load(resolve_model_config(base))
    got = ModelConfig.load(write_tiny_model_config(tmp_path / "tiny.yaml", base=base))
    assert got.arch == {**want.arch, **TINY_ARCH}
    assert got.backbone == want.backbone and got.mel_spec == want.mel_spec
    flags = {"F5TTS_v1_Base": (True, None), "F5TTS_Base": (False, 1), "F5TTS_Small": (False, 1)}[base]
    assert (got.arch["text_mask_padding"], got.arch["pe_attn_head"]) == flags


def test_pt_checkpoint_has_the_layout_f5tts_trainer_saves(tmp_path, french_vocab):
    """write_random_checkpoint(fmt="pt") holds what f5-tts's trainer saves as `ema_model_state_dict` (an
    ema_pytorch EMA of its CFM, without the online model: `initted`, `step`, `ema_model.`-prefixed
    weights), alone, as prune_checkpoint leaves it for sharing."""
    from ema_pytorch import EMA
    from f5_tts.model import CFM, DiT

    config = write_tiny_model_config(tmp_path / "tiny.yaml", base="F5TTS_Base")
    saved = torch.load(str(write_random_checkpoint(config, tmp_path / "m.pt", fmt="pt", vocab_file=french_vocab)))
    assert set(saved) == {"ema_model_state_dict"}
    # As f5_tts/train/train.py builds the model and trainer.py its EMA.
    cfg = OmegaConf.load(config)
    vocab, size = load_vocab(french_vocab)
    arch = OmegaConf.to_container(cfg.model.arch)
    model = CFM(
        transformer=DiT(**arch, text_num_embeds=size, mel_dim=cfg.model.mel_spec.n_mel_channels),
        mel_spec_kwargs=cfg.model.mel_spec,
        vocab_char_map=vocab,
    )
    trainer = EMA(model, include_online_model=False).state_dict()
    got = saved["ema_model_state_dict"]
    assert {k: (v.shape, v.dtype) for k, v in got.items()} == {k: (v.shape, v.dtype) for k, v in trainer.items()}


# --- parity with f5-tts's own inference ---------------------------------------------------------------
# Each base in the format its community checkpoints come in: the first release's size as .pt (French,
# German, Japanese...: the trainer's checkpoint pruned to ema_model_state_dict), the Small size as
# safetensors (Hindi, Arabic), v1 fine-tunes as the trainer's .pt.
CHECKPOINTS = [("F5TTS_v1_Base", "pt"), ("F5TTS_Base", "pt"), ("F5TTS_Small", "safetensors")]
TEXTS = {"one_chunk": FRENCH_TEXT, "multi_chunk": FRENCH_LONG_TEXT}
# A long text (4 chunks, batched here) takes seconds: unit for the first release's architecture, which
# test_parity does not cover; slow for v1 (test_parity's multi_chunk covers it) and the tiny Small (the
# tiny Base but for its name and checkpoint format).
PARITY_CASES = [
    pytest.param(
        checkpoint,
        name,
        id=f"{checkpoint[0]}-{checkpoint[1]}-{name}",
        marks=[pytest.mark.slow] if name == "multi_chunk" and checkpoint[0] != "F5TTS_Base" else [],
    )
    for checkpoint in CHECKPOINTS
    for name in TEXTS
]


class Community:
    """A tiny random checkpoint of `base`'s architecture with the French vocab: exported (python -m export)
    and loaded by the pipeline, and loaded by f5-tts's own load_model."""

    def __init__(self, base: str, fmt: str, root: Path, vocab: Path, vocoder: Path) -> None:
        self.base = base
        self.config = write_tiny_model_config(root / f"{base}_tiny.yaml", base=base)
        self.checkpoint = write_random_checkpoint(self.config, root / f"model_last.{fmt}", fmt=fmt, vocab_file=vocab)
        args = ["--ckpt", str(self.checkpoint), "--model-config", str(self.config), "--vocab", str(vocab)]
        args += ["--vocoder", str(vocoder), "--output", str(root / "model_repository")]
        repo = export_model(request_from_argv(args)).repository
        onnx = OnnxVocoder(repo / contract.VOCODER_MODEL / contract.MODEL_VERSION / contract.VOCODER_ONNX_FILE)
        # Batched chunks (the GPU default): the padded, masked path.
        self.synthesizer = Synthesizer.from_directory(repo / contract.TTS_MODEL / "1", onnx, max_batch_chunks=16)
        self.f5tts_model, f5tts_vocoder = f5tts_load(self.config, self.checkpoint, vocab, vocoder)
        self.f5tts_infer = f5tts_inference(self.f5tts_model, f5tts_vocoder, root, nfe_step=NFE, seed=SEED)


@pytest.fixture(scope="module")
def communities(tiny, french_vocab, tmp_path_factory):
    """(base, format) -> its Community, built once for the module."""
    built: dict[tuple[str, str], Community] = {}

    def get(base: str, fmt: str) -> Community:
        if (base, fmt) not in built:
            built[base, fmt] = Community(base, fmt, tmp_path_factory.mktemp(base), french_vocab, tiny.vocoder)
        return built[base, fmt]

    return get


@pytest.fixture
def community(request, communities) -> Community:
    return communities(*request.param)


@pytest.mark.parametrize("community", CHECKPOINTS, ids=lambda p: f"{p[0]}-{p[1]}", indirect=True)
def test_the_pipeline_runs_the_dit_f5tts_runs(community):
    """The exported and reloaded model is f5-tts's: its vocab map, its v0/v1 flags, its weights, and for the
    same noisy input and text the same velocity, exactly.

    The waveform comparison below cannot see all of that: with tiny random weights, rotary embedding on
    every head instead of one moves the audio by 7e-5 of its peak, and a token read as id 0 by 1e-5, both
    under the 1e-3 tolerance; they move this velocity by 7e-4 and 4e-2 (of a peak near 1.7)."""
    ours, theirs = community.synthesizer.cfm, community.f5tts_model.eval()  # CFM.sample's own eval()
    assert ours.vocab_char_map == theirs.vocab_char_map
    want_flags = ModelConfig.load(resolve_model_config(community.base)).arch
    for dit in (ours.transformer, theirs.transformer):
        assert dit.text_embed.mask_padding == want_flags["text_mask_padding"]
        assert {b.attn.processor.pe_attn_head for b in dit.transformer_blocks} == {want_flags["pe_attn_head"]}
    got_state, want_state = ours.state_dict(), theirs.state_dict()
    assert set(got_state) == set(want_state)
    for k, v in want_state.items():
        assert torch.equal(got_state[k], v), k

    gen = torch.Generator().manual_seed(0)
    x, cond = torch.randn(2, 1, 200, contract.N_MELS, generator=gen)
    text = FRENCH_TEXT
    with torch.inference_mode():
        got = ours.transformer(
            x=x,
            cond=cond,
            text=text_ids([text_tokens(text)], ours.vocab_char_map),
            time=torch.tensor(0.3),
            cfg_infer=True,
        )
        want = theirs.transformer(
            x=x,
            cond=cond,
            text=torch.tensor([f5tts_ids(text, theirs.vocab_char_map)]),
            time=torch.tensor(0.3),
            cfg_infer=True,
        )
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("community,text", PARITY_CASES, indirect=["community"])
def test_pipeline_matches_f5tts(community, reference, text, monkeypatch):
    """Same weights, vocab, reference, text and seed: the same text ids reach the DiT, and the same waveform
    comes out (the chunks of a long text in one batch here, one at a time in f5-tts)."""
    import f5_tts.model.cfm as cfm_module

    import pipeline.synthesizer as synthesizer_module

    theirs, ours = [], []

    def record(into, real):
        def wrapper(*args, **kwargs):
            ids = real(*args, **kwargs)
            into.extend(row[row >= 0].tolist() for row in ids)  # without the batch's -1 padding
            return ids

        return wrapper

    monkeypatch.setattr(cfm_module, "list_str_to_idx", record(theirs, cfm_module.list_str_to_idx))
    monkeypatch.setattr(synthesizer_module, "text_ids", record(ours, synthesizer_module.text_ids))
    text = TEXTS[text]
    want, chunks = community.f5tts_infer(reference, text)
    assert chunks == (1 if text == FRENCH_TEXT else 4)
    got = community.synthesizer.synthesize([_request(reference, text, seed=SEED)])[0]
    assert got.chunk_count == chunks
    assert len(theirs) == chunks
    assert sorted(ours) == sorted(theirs)  # our batch's rows are sorted by duration, f5-tts's chunks in order
    accented = {i for c, i in community.synthesizer.cfm.vocab_char_map.items() if c in "çéèêàâœô«»…—’"}
    assert accented & {i for ids in theirs for i in ids}  # French letters are tokens of their own, not id 0
    assert_same_audio(got.waveform, want)


def _request(ref: Reference, text: str, **options):
    return synthesis_request(ref, text, nfe_step=NFE, **options)
