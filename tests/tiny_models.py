"""Tiny ``transformers`` models built on the spot (no downloads), for the huggingface runner's
tests: a one-layer GPT-2 for text generation and a one-layer BERT classifier (also used for
feature extraction), with a word-level tokenizer trained on a few sentences.

Each is built once per test session (:func:`gpt2`, :func:`classifier`) and saved with
``save_pretrained`` to a temporary directory, as a real model directory would be.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

__all__ = ["LABELS", "classifier", "gpt2"]

CORPUS = [
    "hello world",
    "the quick brown fox jumps over the lazy dog",
    "open the pod bay doors",
    "good morning",
    "bad news travels fast",
]
#: The classifier's labels, by id.
LABELS = {0: "negative", 1: "positive"}

_BUILT: dict[str, Path] = {}


def _tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    words = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    words.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordLevelTrainer(special_tokens=["[UNK]", "[PAD]", "[EOS]"])
    words.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=words,
        unk_token="[UNK]",
        pad_token="[PAD]",
        eos_token="[EOS]",
        bos_token="[EOS]",
    )


def _build(name: str, factory: pytest.TempPathFactory, make: Any) -> Path:
    if name not in _BUILT:
        import torch

        torch.manual_seed(0)
        directory = factory.mktemp(f"tiny-{name}")
        tokenizer = _tokenizer()
        make(tokenizer).save_pretrained(directory)
        tokenizer.save_pretrained(directory)
        _BUILT[name] = directory
    return _BUILT[name]


def gpt2(factory: pytest.TempPathFactory) -> Path:
    """The directory of a one-layer GPT-2 (``text-generation``)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    def make(tokenizer: Any) -> Any:
        config = GPT2Config(
            n_layer=1,
            n_head=2,
            n_embd=16,
            n_positions=64,
            vocab_size=len(tokenizer),
            bos_token_id=tokenizer.eos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        return GPT2LMHeadModel(config)

    return _build("gpt2", factory, make)


def classifier(factory: pytest.TempPathFactory) -> Path:
    """The directory of a one-layer BERT with two labels (``text-classification``;
    ``feature-extraction`` uses its encoder)."""
    from transformers import BertConfig, BertForSequenceClassification

    def make(tokenizer: Any) -> Any:
        config = BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=64,
            num_labels=len(LABELS),
            id2label=LABELS,
            label2id={v: k for k, v in LABELS.items()},
            pad_token_id=tokenizer.pad_token_id,
        )
        return BertForSequenceClassification(config)

    return _build("classifier", factory, make)
