"""Does inheritance pay? One arch, four inits, the same refinement and the same fine-tuning, side by side.

    python bench/inheritance_ablation.py --run bench_runs/pipeline/supernet [--arch STR] [--refine-steps 150]

The four students (scratch, etd-rand, etd-impt, supernet) are refined together on WikiText-2 with the real
teacher (each teacher forward shared, identical batches and steps), then each is fine-tuned on SST-2 with the
same settings. Prints their SST-2 dev accuracy; target: supernet and etd-impt beat scratch by >= 3 points.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nasbert.cli import main as nasbert
from nasbert.export.config import RefineConfig
from nasbert.export.pipeline import ExportOptions, ExportRequest, export_students
from nasbert.train_supernet.run import load_run
from search_space import Arch

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
INITS = ("scratch", "etd-rand", "etd-impt", "supernet")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a trained supernet run (e.g. the pipeline benchmark's)")
    parser.add_argument("--arch", help="default: width 256, M,F in every layer pair of every block")
    parser.add_argument("--corpus", default=str(SHARED / "wikitext-2/train.txt"))
    parser.add_argument("--task", default=str(SHARED / "sst2"))
    parser.add_argument("--workdir", default="bench_runs/ablation")
    parser.add_argument("--refine-steps", type=int, default=150)
    parser.add_argument("--finetune-train-samples", type=int, default=3000)
    args = parser.parse_args()
    run = load_run(args.run)
    space = run.space
    arch = Arch.parse(args.arch) if args.arch else Arch.parse("/".join(
        [f"256:{','.join(['M', 'F'] * (space.layers_per_block // 2))}"] * space.num_blocks))
    work = Path(args.workdir).resolve()
    students = work / "students"
    if not students.exists():
        refine = RefineConfig(train_files=[args.corpus], output=str(work / "students.refine"),
                              steps=args.refine_steps, batch_size=32, save_every=50, resume=True)
        export_students(run, [ExportRequest(init, arch, init=init) for init in INITS], students,
                        ExportOptions(refine=refine, measure=False))
    scores = {}
    for init in INITS:
        out = work / "finetuned" / init
        if not (out / "eval_results.json").exists():
            code = nasbert(["finetune", str(students / init), "--train-file", f"{args.task}/train.tsv",
                            "--validation-file", f"{args.task}/dev.tsv", "--output", str(out),
                            "--max-train-samples", str(args.finetune_train_samples), "--epochs", "1", "--lr", "1e-4",
                            "--report-to", "none"])
            if code:
                raise SystemExit(f"fine-tuning {init} failed")
        scores[init] = json.loads((out / "eval_results.json").read_text())["eval_accuracy"]
    refine_rows = [json.loads(line) for line in (work / "students.refine/metrics.jsonl").read_text().splitlines()]
    final = refine_rows[-1]["losses"]
    print(f"\narch {arch}; {args.refine_steps} refinement steps on {Path(args.corpus).name}, "
          f"fine-tuned on {args.finetune_train_samples} SST-2 examples, 1 epoch")
    print(f"{'init':>10} {'refine loss':>12} {'SST-2 dev acc':>14} {'vs scratch':>11}")
    for init in INITS:
        print(f"{init:>10} {final[init]['total']:12.4f} {scores[init]:14.3f} "
              f"{100 * (scores[init] - scores['scratch']):+10.1f}")
    (work / "ablation.json").write_text(json.dumps({"arch": str(arch), "scores": scores, "final_refine": final},
                                                   indent=1))


if __name__ == "__main__":
    main()
