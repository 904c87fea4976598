"""Supernet training throughput vs the teacher's own training step, on the same batches, in one run.

    python bench/train_throughput.py [--steps 5] [--batch-size 8] [--seq-len 128] [--layers 12] [--hidden 768]
                                     [--device cuda] [--peak-tflops 989]

The teacher is BERT-base-shaped (12 x 768, random weights: timing only), saved to a temporary folder and
loaded the way users load theirs. Supernet training runs the real recipe step (`SupernetRecipe.train_step`:
one teacher forward, every block's sampled path forward+backward, clipping, AdamW). The teacher's step is
its own forward+backward+AdamW on the same batches. Prints tokens/s of both and their ratio, and each one's
model-FLOPs utilisation: FLOPs of one step counted by torch's FlopCounterMode (matmuls, convolutions, attention)
over the median step time, against the device's peak (on CUDA the bf16 dense peak of the GPU, `--peak-tflops` or
a known card; on the CPU this machine's measured fp32 matmul rate).
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
from torch.utils.flop_counter import FlopCounterMode
from transformers import BertConfig, BertModel, BertTokenizerFast

from nasbert.common.recipe import autocast
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


# Dense bf16 peaks (TFLOP/s, vendor datasheets) of cards a first GPU is likely to be.
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0}


def peak_flops(device: torch.device, given_tflops: float | None) -> tuple[float, str]:
    """The FLOP/s utilisation is measured against, and what it is."""
    if given_tflops:
        return given_tflops * 1e12, f"{given_tflops:g} TFLOP/s (given)"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, tflops in BF16_PEAK_TFLOPS.items():
            if key in name:
                return tflops * 1e12, f"{name} bf16 dense peak {tflops:g} TFLOP/s"
        raise SystemExit(f"unknown GPU {name!r}: pass --peak-tflops")
    a = torch.randn(2048, 2048)
    times = []
    for _ in range(7):
        start = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - start)
    rate = 2 * 2048**3 / statistics.median(times[2:])
    return rate, f"this CPU's measured fp32 matmul rate {rate / 1e9:.1f} GFLOP/s ({torch.get_num_threads()} threads)"


def counted_flops(fn, step: int) -> float:
    """FLOPs of one call of fn(step), counted by torch (not timed)."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn(step)
    return float(counter.get_total_flops())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (bf16 autocast, as training runs there)")
    parser.add_argument("--peak-tflops", type=float, help="the device's peak to report utilisation against "
                        "(default: a known GPU's bf16 dense peak; on the CPU a measured matmul rate)")
    args = parser.parse_args()
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_teacher(tmp / "teacher", args.layers, args.hidden)
        rng = np.random.default_rng(0)
        lines = [" ".join(f"w{i}" for i in rng.integers(30517, size=60)) for _ in range(40 * args.batch_size)]
        (tmp / "corpus.txt").write_text("\n".join(lines) + "\n")
        config = TrainConfig(teacher=str(tmp / "teacher"), train_files=[str(tmp / "corpus.txt")],
                             output=str(tmp / "run"), seq_len=args.seq_len, batch_size=args.batch_size,
                             max_steps=1000, device=args.device)
        recipe = SupernetRecipe(config)
        recipe.setup()
        teacher = recipe.teacher.model
        teacher_optimizer = torch.optim.AdamW([p for p in teacher.parameters()], lr=1e-5)

        def teacher_step(step: int) -> None:
            teacher.train().requires_grad_(True)
            ids = recipe._batch(step).to(device)
            with autocast(device):
                loss = teacher(input_ids=ids).last_hidden_state.float().pow(2).mean()
            loss.backward()
            teacher_optimizer.step()
            teacher_optimizer.zero_grad(set_to_none=True)
            teacher.eval().requires_grad_(False)

        times = {"supernet": [], "teacher": []}
        for step in range(args.steps + 1):  # step 0 warms up both
            for name, fn in (("supernet", recipe.train_step), ("teacher", teacher_step)):
                sync()
                start = time.perf_counter()
                fn(step)
                sync()
                if step:
                    times[name].append(time.perf_counter() - start)
        # FLOPs of the same kind of step, counted once more after the timed ones (paths differ per step: the
        # supernet's count is the mean over 3 steps)
        flops = {"supernet": statistics.mean(counted_flops(recipe.train_step, args.steps + 1 + i) for i in range(3)),
                 "teacher": counted_flops(teacher_step, args.steps + 1)}
        recipe.cleanup()

    tokens = args.batch_size * args.seq_len
    rate = {name: tokens / statistics.median(t) for name, t in times.items()}
    print(f"{args.device}: teacher {args.layers} x {args.hidden}, supernet space {recipe.space.num_blocks} blocks x "
          f"{recipe.space.layers_per_block} layers, widths {list(recipe.space.widths)}; batch {args.batch_size} x "
          f"{args.seq_len}, {torch.get_num_threads()} threads, median of {args.steps} steps, interleaved")
    print(f"supernet training (all blocks): {rate['supernet']:8.0f} tokens/s")
    print(f"teacher forward+backward:        {rate['teacher']:8.0f} tokens/s")
    print(f"ratio supernet/teacher tokens/s: {rate['supernet'] / rate['teacher']:.2f}")
    peak, what = peak_flops(device, args.peak_tflops)
    for name in ("supernet", "teacher"):
        achieved = flops[name] / statistics.median(times[name])
        print(f"{name} model-FLOPs utilisation: {achieved / 1e12:.3f} TFLOP/s = {100 * achieved / peak:.1f} % "
              f"of {what}")


if __name__ == "__main__":
    sys.exit(main())
