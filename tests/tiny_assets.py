"""Tiny teachers and corpora that tests make and save themselves (no network)."""

from __future__ import annotations

import random
from pathlib import Path

import torch
from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

WORDS = ("the a cat dog bird fish runs sleeps eats sees big small red blue quick slow old young happy sad house tree "
         "river hill under over near far and but then when it they we you see saw has had will can").split()
PIECES = ["##s", "##ed", "##ing", "##ly"]


def write_vocab(path: Path) -> Path:
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *PIECES, ".", ","]
    path.write_text("\n".join(tokens) + "\n")
    return path


def make_tiny_teacher(folder: Path, layers: int = 4, hidden: int = 32, heads: int = 4, seed: int = 0,
                      mlm_head: bool = True) -> Path:
    """A random BERT (with an MLM head by default) and its WordPiece tokenizer, saved with save_pretrained."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = BertTokenizerFast(vocab=str(write_vocab(folder / "vocab.txt")))
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=4 * hidden, max_position_embeddings=64)
    if mlm_head:
        model = BertForMaskedLM(config)
    else:
        from transformers import BertModel

        model = BertModel(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def make_corpus(path: Path, lines: int = 400, seed: int = 0) -> Path:
    """Sentences from a small vocabulary with some regularity, one per line."""
    rng = random.Random(seed)
    out = []
    for _ in range(lines):
        words = [rng.choice(WORDS[:3]), rng.choice(WORDS[3:12]), rng.choice(WORDS[12:20])]
        words += [rng.choice(WORDS) for _ in range(rng.randint(3, 12))]
        out.append(" ".join(words) + " .")
    path = Path(path)
    path.write_text("\n".join(out) + "\n")
    return path
