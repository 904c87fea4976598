"""`nasbert export RUN (--arch STR | --search search.json [--budget 20ms] [--rank 1]) --output DIR ...`."""

from __future__ import annotations

import argparse
from pathlib import Path

from nasbert.commands.base import command
from nasbert.common.distributed import cleanup_distributed
from nasbert.errors import UserError
from nasbert.export.config import LOSSES, RefineConfig
from nasbert.export.inherit import INITS
from nasbert.export.pipeline import ExportOptions, ExportRequest, export_students, requests_from_search
from nasbert.train_supernet.run import load_run
from search_space import Arch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="a train-supernet run folder")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--arch", help="the arch string of the student to export")
    which.add_argument("--search", help="a search.json: export the winner of every budget (or of --budget)")
    parser.add_argument("--budget", help="with --search: only this latency budget, e.g. 20ms")
    parser.add_argument("--rank", type=int, default=1, help="with --search: the rank-th candidate (1 = the winner)")
    parser.add_argument("--output", required=True, help="the student folder (or, for several, their parent)")
    parser.add_argument("--init", choices=INITS, default="supernet", help="how the student's weights start")
    parser.add_argument("--embedding-size", type=int, help="E of the factorised embeddings (default: the teacher's "
                        "hidden size)")
    parser.add_argument("--refine-steps", type=int, default=0, help="distillation steps from the teacher (0: none)")
    parser.add_argument("--train-file", nargs="+", help="corpus for the refinement")
    parser.add_argument("--losses", nargs="+", choices=LOSSES, default=list(LOSSES), help="refinement losses")
    parser.add_argument("--refine-batch-size", type=int, default=32)
    parser.add_argument("--refine-lr", type=float, default=3e-4)
    parser.add_argument("--refine-seq-len", type=int, default=128)
    parser.add_argument("--save-every", type=int, default=500, help="refinement checkpoint interval")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted refinement (OUTPUT.refine/)")
    parser.add_argument("--lut", help="latency table: the card gets the predicted latency, and latency is measured "
                        "under the table's conditions")
    parser.add_argument("--onnx", action="store_true", help="also write model.onnx, checked against PyTorch")
    parser.add_argument("--no-measure", action="store_true", help="skip measuring the student's latency")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--seed", type=int, default=0)


@command("export", "extract students, inherit weights, refine them, write Hugging Face folders", add_arguments)
def run(args: argparse.Namespace) -> int:
    loaded = load_run(args.run, args.device)
    if args.arch:
        requests = [ExportRequest(Path(args.output).name, Arch.parse(args.arch))]
    else:
        requests = requests_from_search(args.search, args.budget, args.rank)
    refine = None
    if args.refine_steps:
        if not args.train_file:
            raise UserError("--refine-steps needs --train-file, the corpus to distil on")
        refine = RefineConfig(train_files=args.train_file, output=str(args.output).rstrip("/") + ".refine",
                              steps=args.refine_steps, batch_size=args.refine_batch_size, seq_len=args.refine_seq_len,
                              lr=args.refine_lr, losses=args.losses, save_every=args.save_every, seed=args.seed,
                              device=args.device, resume=args.resume)
    options = ExportOptions(init=args.init, embedding_size=args.embedding_size, refine=refine, lut=args.lut,
                            onnx=args.onnx, measure=not args.no_measure, seed=args.seed)
    try:
        folders = export_students(loaded, requests, args.output, options)
    finally:
        cleanup_distributed()
    for folder in folders:
        print(f"wrote {folder}")
    print(f"fine-tune one with: nasbert finetune {folders[0]} --train-file train.tsv --validation-file dev.tsv")
    return 0
