"""Tiny causal language models and their tokenizers, trained on the CPU in seconds.

For tests, examples and benchmarks that need real (if small) language models without
downloading any: :func:`train_tokenizer` learns a byte-level BPE vocabulary,
:func:`train_causal_lm` trains a small LLaMA-style model (or any Hugging Face causal LM
config) and saves both where :meth:`tokensieve.scoring.TokenScorer.from_pretrained` loads them::

    from tokensieve.training import train_causal_lm, train_tokenizer

    tokenizer = train_tokenizer(texts, vocab_size=1024)
    model = train_causal_lm(texts, tokenizer, hidden_size=64, num_layers=2, steps=300, out_dir="lm")

Both are deterministic: the same inputs and seed give the same vocabulary and the same weights
(on one machine with one torch thread count; the matrix products may round differently across
thread counts).

Needs torch, transformers and tokenizers (``pip install tokensieve[scoring]``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from tokensieve.exceptions import InvalidArgumentError, MissingDependencyError

__all__ = ["SPECIAL_TOKENS", "tiny_llama_config", "train_causal_lm", "train_tokenizer"]

#: The special tokens of :func:`train_tokenizer`, with ids 0, 1 and 2.
SPECIAL_TOKENS = ("<pad>", "<s>", "</s>")


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as e:
        raise MissingDependencyError("training needs transformers: pip install tokensieve[scoring]") from e
    return transformers


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1024, *, min_frequency: int = 2) -> Any:
    """A byte-level BPE tokenizer learnt from ``texts``.

    GPT-2's pre-tokenizer and byte alphabet, so any text encodes without unknown tokens;
    ``<pad>``, ``<s>`` and ``</s>`` are ids 0, 1 and 2, and encoding prepends ``<s>``, so the
    first token of every text gets a prediction (methods.md §0.4).

    Args:
        texts: the training texts (iterated once).
        vocab_size: the vocabulary size, special tokens and the 256 byte symbols included.
        min_frequency: the fewest occurrences of a pair for it to be merged.

    Returns:
        A ``transformers.PreTrainedTokenizerFast`` (``save_pretrained`` writes it).
    """
    transformers = _transformers()
    try:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    except ImportError as e:
        raise MissingDependencyError("training a tokenizer needs tokenizers: pip install tokenizers") from e
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size < len(alphabet) + len(SPECIAL_TOKENS):
        raise InvalidArgumentError(
            f"vocab_size must hold the {len(alphabet)} byte symbols and the {len(SPECIAL_TOKENS)} "
            f"special tokens, got {vocab_size}"
        )
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=alphabet,
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    bos = SPECIAL_TOKENS[1]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tokenizer.token_to_id(bos))]
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token=SPECIAL_TOKENS[0], bos_token=bos, eos_token=SPECIAL_TOKENS[2]
    )


def tiny_llama_config(
    vocab_size: int,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int | None = None,
    max_position_embeddings: int = 512,
) -> Any:
    """A ``LlamaConfig`` for a small model: RMSNorm, rotary positions, SwiGLU, tied input and
    output embeddings, the special-token ids of :func:`train_tokenizer`. ``intermediate_size``
    defaults to ``2 * hidden_size``. About ``vocab_size * hidden_size + num_layers * 10 *
    hidden_size**2`` parameters."""
    transformers = _transformers()
    return transformers.LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )


def train_causal_lm(
    texts: Sequence[str],
    tokenizer: Any,
    *,
    config: Any = None,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    seq_len: int = 128,
    batch_size: int = 16,
    steps: int = 200,
    lr: float = 3e-3,
    seed: int = 0,
    out_dir: str | os.PathLike[str] | None = None,
) -> Any:
    """Trains a causal LM from scratch on ``texts``.

    The texts are encoded (with the tokenizer's BOS), each followed by the tokenizer's EOS, and
    concatenated; every step takes ``batch_size`` windows of ``seq_len`` tokens at random
    offsets of that stream (a generator seeded with ``seed``, which also seeds the
    initialisation) and takes one AdamW step (betas 0.9/0.95, weight decay 0.01, gradients
    clipped at 1.0) at a learning rate warmed up linearly over the first 10% of the steps, then
    decayed on a cosine to 10% of ``lr``. The global torch random state is left as it was.

    Args:
        texts: the training texts.
        tokenizer: a ``transformers`` tokenizer (:func:`train_tokenizer` gives one).
        config: a Hugging Face causal-LM config; default :func:`tiny_llama_config` with
            ``hidden_size``, ``num_layers`` and ``num_heads`` and the tokenizer's vocabulary.
        seq_len, batch_size, steps, lr, seed: the training run.
        out_dir: when given, the model and the tokenizer are saved there (``save_pretrained``).

    Returns:
        The trained ``transformers`` model, in eval mode, on the CPU.
    """
    transformers = _transformers()
    if steps < 1 or seq_len < 2 or batch_size < 1 or not lr > 0:
        raise InvalidArgumentError(
            "need steps >= 1, seq_len >= 2, batch_size >= 1 and lr > 0; "
            f"got {steps}, {seq_len}, {batch_size}, {lr}"
        )
    eos = tokenizer.eos_token_id
    stream = [
        i for ids in tokenizer(list(texts))["input_ids"] for i in (*ids, *([eos] if eos is not None else []))
    ]
    if len(stream) <= seq_len:
        raise InvalidArgumentError(
            f"the texts hold {len(stream)} tokens; training needs more than seq_len={seq_len}"
        )
    data = torch.tensor(stream, dtype=torch.long)
    if config is None:
        config = tiny_llama_config(
            len(tokenizer), hidden_size=hidden_size, num_layers=num_layers, num_heads=num_heads
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.AutoModelForCausalLM.from_config(config)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.01)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _lr_factor(step, warmup, steps))
    model.train()
    for _ in range(steps):
        starts = torch.randint(0, len(data) - seq_len, (batch_size,), generator=generator)
        batch = torch.stack([data[s : s + seq_len] for s in starts.tolist()])
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
    model.eval()
    if out_dir is not None:
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
    return model


def _lr_factor(step: int, warmup: int, steps: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))
