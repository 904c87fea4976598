"""Student inference speed vs transformers.BertModel of the same shape.

    python bench/student_speed.py [--layers 12] [--hidden 768] [--threads 2]

The student's arch is BERT-shaped: one block of `M,F` repeated `--layers` times at width `--hidden`,
embedding size = width, no extra projections (a hand-designed student needs none). Both models get the
same weights layout, the same inputs, SDPA attention, eval mode, inference mode; they are timed in turns in
one run at batch 1 x seq 128 and batch 32 x seq 128. Prints student/BERT time ratios (target <= 1.05).
The row "with projections" adds the E->w and w->H linears a supernet-extracted student carries.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from transformers import BertConfig, BertModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import interleaved_medians

from nasbert import NasbertConfig, NasbertModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    h = args.hidden
    bert = BertModel(BertConfig(hidden_size=h, num_hidden_layers=args.layers, num_attention_heads=h // 64,
                                intermediate_size=4 * h), add_pooling_layer=False).eval().to(args.device)
    arch = f"{h}:" + ",".join(["M", "F"] * args.layers)
    shape = dict(arch=arch, vocab_size=bert.config.vocab_size, embedding_size=h, hidden_size=h, head_dim=64)
    student = NasbertModel(NasbertConfig(**shape, embedding_projection=False, output_projection=False),
                           add_pooling_layer=False).eval().to(args.device)
    projected = NasbertModel(NasbertConfig(**shape), add_pooling_layer=False).eval().to(args.device)
    n_bert = sum(p.numel() for p in bert.parameters())
    n_student = sum(p.numel() for p in student.parameters())
    print(f"BERT-shaped: {args.layers} layers x {h}, params BertModel {n_bert:,} / student {n_student:,}; "
          f"{args.threads} threads, median of {args.repeats}, interleaved")
    assert n_bert == n_student, "the student is not the same shape as the BertModel"

    for batch in args.batch_sizes:
        ids = torch.randint(1, bert.config.vocab_size, (batch, args.seq_len), device=args.device)
        mask = torch.ones_like(ids)

        def run(model):
            def call():
                with torch.inference_mode():
                    model(input_ids=ids, attention_mask=mask)
            return call

        repeats = args.repeats if batch <= 8 else max(3, args.repeats // 3)
        t = interleaved_medians({"bert": run(bert), "student": run(student), "projected": run(projected)},
                                repeats=repeats, device=args.device)
        print(f"{args.device} batch {batch:>3} x seq {args.seq_len}: "
              f"student/BertModel = {t['student'] / t['bert']:.3f} "
              f"(target <= 1.05); with projections {t['projected'] / t['bert']:.3f}")


if __name__ == "__main__":
    main()
