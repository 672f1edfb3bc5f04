"""The hf: teacher end to end on a tiny random causal LM the test builds (no downloads)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pocketrec._errors import ConfigError
from pocketrec._prefix import PrefixIndex
from pocketrec.distill.data import ItemText, build_dataset
from pocketrec.distill.protocol import evaluate, leave_one_out
from pocketrec.distill.sids.vocab import disambiguate
from pocketrec.distill.teacher_hf import HFTeacher, HFTeacherConfig, check_causal_lm

transformers = pytest.importorskip("transformers")
pytest.importorskip("peft")


def _tiny_lm(folder: Path, *, arch: str = "causal") -> Path:
    """A 2-layer random Qwen2 with a byte-level BPE tokenizer trained on a few words."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM, Qwen2Model

    words = ["red", "blue", "lipstick", "brush", "Items", "the", "user", "chose", "Next", "item"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<unk>", "<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([" ".join(words)] * 20, trainer)
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    config = Qwen2Config(
        vocab_size=len(hf_tok),
        # Every layer's input width a multiple of 64: bitsandbytes' packed 4-bit CPU kernel (used
        # on CPUs with AVX512-BF16) quantizes inputs in blocks of 64 and fails on narrower ones.
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config) if arch == "causal" else Qwen2Model(config)
    model.save_pretrained(folder)
    hf_tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_lm(tmp_path_factory.mktemp("tinylm"))


def _data():
    rng = np.random.default_rng(0)
    names = [f"{c} {k}" for c in ("red", "blue") for k in ("lipstick", "brush")] * 3
    text = {f"i{j}": ItemText(title=n) for j, n in enumerate(names)}
    ids = list(text)
    seqs = [[ids[(s + t) % len(ids)] for t in range(6)] for s in rng.integers(0, 12, 30)]
    seqs[0] = ids
    ds = build_dataset(
        "tiny", [f"u{u}" for u in range(30)], seqs, item_text=text, default_history_len=5
    )
    codes = np.stack([np.arange(12) % 4, np.arange(12) // 4], 1)
    return ds, disambiguate(codes, 4)


def test_not_a_causal_lm_is_refused_before_training(tmp_path: Path, lm: Path) -> None:
    with pytest.raises(ConfigError, match=r"no config\.json"):
        check_causal_lm(str(tmp_path))
    encoder = _tiny_lm(tmp_path / "encoder", arch="base")
    with pytest.raises(ConfigError, match="not a causal language model"):
        check_causal_lm(str(encoder))
    assert check_causal_lm(str(lm))["model_type"] == "qwen2"
    with pytest.raises(ConfigError, match="teacher-quant"):
        HFTeacherConfig(path=str(lm), quant="fp4")


@pytest.mark.parametrize("quant", ["none", "nf4"])
def test_lora_teacher_trains_caches_and_ranks(lm: Path, tmp_path: Path, quant: str) -> None:
    if quant != "none":
        pytest.importorskip("bitsandbytes")
    ds, sids = _data()
    split = leave_one_out(ds)
    cfg = HFTeacherConfig(
        path=str(lm), quant=quant, epochs=3, batch_size=8, lr=5e-3, positions_per_user=2
    )
    teacher = HFTeacher(cfg, ds, sids, 4, torch.device("cpu"))
    total, trainable = teacher.num_parameters()
    assert 0 < trainable < total
    before = teacher.level_logits([np.array([0, 1])], np.array([2])).detach().clone()
    info = teacher.train(split, window=5)
    after = teacher.level_logits([np.array([0, 1])], np.array([2]))
    assert info["examples"] == 60 and not torch.allclose(before, after)
    # Cache interface: per-level logits at every valid position.
    windows = torch.from_numpy(split.train_windows(5)[:4])
    logits, valid = teacher.teacher_fn(windows[:, :-1], windows[:, 1:])
    assert logits.shape == (int(valid.sum()), sids.shape[1], 4)
    # Ranking through constrained beam search: every returned item exists.
    index = PrefixIndex(sids, 4)
    predict = teacher.predictor(index, beam_width=12, top_k=12)
    out = evaluate(predict, split, "test", max_len=5, ks=(5, 10), limit=6)
    assert 0.0 <= out["ndcg@10"] <= 1.0
    hist, _ = split.histories("test", 5)
    items = predict(hist[:3])
    assert ((items >= 0) & (items < 12)).all()
    teacher.save(tmp_path / "teacher")
    saved = json.loads((tmp_path / "teacher" / "lora" / "adapter_config.json").read_text())
    assert saved["r"] == cfg.lora_r
