"""tokensieve.training: tiny tokenizers and causal LMs, deterministic, learning, loadable."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from conftest import DEMO_DATA, read_jsonl_zst  # noqa: E402
from tokensieve.exceptions import InvalidArgumentError  # noqa: E402
from tokensieve.scoring import TokenScorer  # noqa: E402
from tokensieve.training import SPECIAL_TOKENS, train_causal_lm, train_tokenizer  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TINY = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "seq_len": 32, "batch_size": 8}


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return [r["text"][:800] for r in read_jsonl_zst(DEMO_DATA / "demo_raw.jsonl.zst", 40)]


@pytest.fixture(scope="module")
def tokenizer(texts: list[str]):
    return train_tokenizer(texts, vocab_size=320)


def test_tokenizer_is_deterministic_byte_level_and_prepends_bos(tokenizer, texts: list[str]) -> None:
    again = train_tokenizer(texts, vocab_size=320)
    assert again.get_vocab() == tokenizer.get_vocab()
    assert len(tokenizer) == 320
    assert [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2]
    for text in ("naïve café — 東京 🙂", texts[0], "  spaces\n\ttabs"):
        ids = tokenizer(text)["input_ids"]
        assert ids[0] == tokenizer.bos_token_id == 1
        assert tokenizer.decode(ids, skip_special_tokens=True) == text  # every byte encodes
    with pytest.raises(InvalidArgumentError, match="vocab_size"):
        train_tokenizer(texts, vocab_size=100)


def test_training_is_deterministic_and_leaves_the_global_rng_alone(tokenizer, texts: list[str]) -> None:
    state = torch.random.get_rng_state()
    a = train_causal_lm(texts, tokenizer, steps=3, seed=5, **TINY)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = train_causal_lm(texts, tokenizer, steps=3, seed=5, **TINY)
    c = train_causal_lm(texts, tokenizer, steps=3, seed=6, **TINY)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name
    assert any(
        not torch.equal(x, z) for x, z in zip(a.state_dict().values(), c.state_dict().values(), strict=True)
    )
    assert not a.training


def test_training_lowers_the_loss_and_saves_a_loadable_model(
    tokenizer, texts: list[str], tmp_path: Path
) -> None:
    held_out = [r["text"][:400] for r in read_jsonl_zst(DEMO_DATA / "demo_target.jsonl.zst", 8)]
    barely = train_causal_lm(texts, tokenizer, steps=1, **TINY)
    trained = train_causal_lm(texts, tokenizer, steps=60, lr=1e-2, out_dir=tmp_path, **TINY)
    params = sum(p.numel() for p in trained.parameters())
    assert 10_000 < params < 30_000

    def mean_nll(model) -> float:
        table = TokenScorer(model, tokenizer).score(held_out, max_length=256)
        return float(table.column("mean_nll").to_numpy().mean())

    assert mean_nll(trained) < mean_nll(barely) - 0.5
    loaded = TokenScorer.from_pretrained(tmp_path, device="cpu")
    ids = torch.tensor([tokenizer(held_out[0])["input_ids"]])
    with torch.no_grad():
        assert torch.equal(loaded.model(input_ids=ids).logits, trained(input_ids=ids).logits)
    assert loaded.tokenizer(held_out[0])["input_ids"] == ids[0].tolist()


def test_bad_training_arguments(tokenizer, texts: list[str]) -> None:
    with pytest.raises(InvalidArgumentError, match="steps"):
        train_causal_lm(texts, tokenizer, steps=0)
    with pytest.raises(InvalidArgumentError, match="more than seq_len"):
        train_causal_lm(["tiny"], tokenizer, seq_len=64)
