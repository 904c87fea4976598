"""Supernet overhead: forward+backward of the supernet on a sampled path vs the extracted student.

    python bench/supernet_overhead.py [--archs 20] [--batch-size 8] [--seq-len 128] [--threads 2]

Both run the same arch on the same batch, measured in turns in one run. The supernet runs what one
training step runs for that path: every block chained from the embedding output, with its elastic
(sliced) weights and its in/out projections to the teacher's hidden size. The student runs its encoder
on the same embedding output (`--with-embeddings` adds the student's own embedding layer, as a user
fine-tuning it would run). Prints the per-arch ratios and their median (target <= 1.15).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import interleaved_medians

from nasbert.modeling_nasbert import padding_masks
from nasbert.student import extract_student
from search_space import SearchSpace
from supernet import Supernet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--with-embeddings", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    space = SearchSpace()
    supernet = Supernet(space).train().to(args.device)
    rng = np.random.default_rng(args.seed)
    hidden = torch.randn(args.batch_size, args.seq_len, space.hidden_size, device=args.device)
    ids = torch.randint(1, space.vocab_size, (args.batch_size, args.seq_len), device=args.device)
    mask = torch.ones(args.batch_size, args.seq_len, dtype=torch.long, device=args.device)
    attn_mask, pad_mask = padding_masks(mask, hidden.dtype)

    ratios = []
    print(f"{args.device}: batch {args.batch_size} x seq {args.seq_len}, {args.threads} threads, fwd+bwd, median of "
          f"{args.repeats}")
    print(f"{'supernet ms':>12} {'student ms':>11} {'ratio':>6}  arch")
    for _ in range(args.archs):
        arch = space.sample(rng)
        student = extract_student(supernet, arch, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        student = student.train().to(args.device)

        def supernet_step():
            supernet.zero_grad(set_to_none=True)
            supernet.forward_chain(hidden, arch, mask).pow(2).mean().backward()

        def student_step():
            student.zero_grad(set_to_none=True)
            if args.with_embeddings:
                out = student(ids, attention_mask=mask).last_hidden_state
            else:
                out, _ = student.encoder(hidden, attn_mask, pad_mask)
            out.pow(2).mean().backward()

        t = interleaved_medians({"supernet": supernet_step, "student": student_step}, repeats=args.repeats,
                                device=args.device)
        ratios.append(t["supernet"] / t["student"])
        print(f"{t['supernet'] * 1e3:12.1f} {t['student'] * 1e3:11.1f} {ratios[-1]:6.3f}  {arch}", flush=True)
    print(f"median supernet/student time ratio over {args.archs} archs: {statistics.median(ratios):.3f} "
          f"(target <= 1.15)")


if __name__ == "__main__":
    main()
