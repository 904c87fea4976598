"""Supernet training throughput vs the teacher's own training step, on the same batches, in one run.

    python bench/train_throughput.py [--steps 5] [--batch-size 8] [--seq-len 128] [--layers 12] [--hidden 768]

The teacher is BERT-base-shaped (12 x 768, random weights: timing only), saved to a temporary folder and
loaded the way users load theirs. Supernet training runs the real recipe step (`SupernetRecipe.train_step`:
one teacher forward, every block's sampled path forward+backward, clipping, AdamW). The teacher's step is
its own forward+backward+AdamW on the same batches. Prints tokens/s of both and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import BertConfig, BertModel, BertTokenizerFast

from nasbert.train_supernet.config import TrainConfig
from nasbert.train_supernet.recipe import SupernetRecipe


def make_teacher(folder: Path, layers: int, hidden: int) -> None:
    folder.mkdir(parents=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(30517)]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab=str(folder / "vocab.txt")).save_pretrained(folder)
    config = BertConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=hidden // 64,
                        intermediate_size=4 * hidden)
    BertModel(config).save_pretrained(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=768)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_teacher(tmp / "teacher", args.layers, args.hidden)
        rng = np.random.default_rng(0)
        lines = [" ".join(f"w{i}" for i in rng.integers(30517, size=60)) for _ in range(40 * args.batch_size)]
        (tmp / "corpus.txt").write_text("\n".join(lines) + "\n")
        config = TrainConfig(teacher=str(tmp / "teacher"), train_files=[str(tmp / "corpus.txt")],
                             output=str(tmp / "run"), seq_len=args.seq_len, batch_size=args.batch_size,
                             max_steps=1000, device="cpu")
        recipe = SupernetRecipe(config)
        recipe.setup()
        teacher = recipe.teacher.model
        teacher_optimizer = torch.optim.AdamW([p for p in teacher.parameters()], lr=1e-5)

        def teacher_step(step: int) -> None:
            teacher.train().requires_grad_(True)
            ids = recipe._batch(step)
            teacher(input_ids=ids).last_hidden_state.pow(2).mean().backward()
            teacher_optimizer.step()
            teacher_optimizer.zero_grad(set_to_none=True)
            teacher.eval().requires_grad_(False)

        times = {"supernet": [], "teacher": []}
        for step in range(args.steps + 1):  # step 0 warms up both
            for name, fn in (("supernet", recipe.train_step), ("teacher", teacher_step)):
                start = time.perf_counter()
                fn(step)
                if step:
                    times[name].append(time.perf_counter() - start)
        recipe.cleanup()

    tokens = args.batch_size * args.seq_len
    rate = {name: tokens / statistics.median(t) for name, t in times.items()}
    print(f"teacher {args.layers} x {args.hidden}, supernet space {recipe.space.num_blocks} blocks x "
          f"{recipe.space.layers_per_block} layers, widths {list(recipe.space.widths)}; batch {args.batch_size} x "
          f"{args.seq_len}, {torch.get_num_threads()} threads, median of {args.steps} steps, interleaved")
    print(f"supernet training (all blocks): {rate['supernet']:8.0f} tokens/s")
    print(f"teacher forward+backward:        {rate['teacher']:8.0f} tokens/s")
    print(f"ratio supernet/teacher tokens/s: {rate['supernet'] / rate['teacher']:.2f}")


if __name__ == "__main__":
    sys.exit(main())
