"""`nasbert export RUN (--arch STR | --search search.json [--budget 20ms] [--rank 1]) --output DIR ...`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nasbert.commands.base import add_config_arguments, command, config_from_args
from nasbert.errors import UserError
from nasbert.export.config import ExportOptions, RefineConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="a train-supernet run folder")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--arch", help="the arch string of the student to export")
    which.add_argument("--search", help="a search.json: export the winner of every budget (or of --budget)")
    parser.add_argument("--budget", help="with --search: only this latency budget, e.g. 20ms")
    parser.add_argument("--rank", type=int, default=1, help="with --search: the rank-th candidate (default 1, the "
                        "winner)")
    parser.add_argument("--output", required=True, help="the student folder (or, for several, their parent)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda, for the run's supernet and the refinement "
                        "(default cpu)")
    add_config_arguments(parser, ExportOptions, exclude=("refine",))
    # 0 here (no refinement), where RefineConfig's own default is 1000 steps.
    parser.add_argument("--refine-steps", type=int, default=0, help="distillation steps from the teacher after "
                        "inheriting (default 0: none; needs --train-file)")
    add_config_arguments(parser, RefineConfig, "refine-", exclude=("steps", "output", "seed", "device"),
                         title="refinement (with --refine-steps)")


@command("export", "extract students, inherit weights, refine them, write Hugging Face folders", add_arguments)
def run(args: argparse.Namespace) -> int:
    import nasbert
    from nasbert.common.distributed import cleanup_distributed
    from nasbert.export.pipeline import ExportRequest, check_onnx_options, export_students, requests_from_search
    from nasbert.train_supernet.run import load_run
    from search_space import Arch

    nasbert.register_auto_classes()
    check_output(Path(args.output), args)
    options = export_options(args)
    check_onnx_options(options)  # before the run is loaded
    loaded = load_run(args.run, args.device, options.teacher, options.trust_remote_code)
    if args.arch:
        requests = [ExportRequest(Path(args.output).name, Arch.parse(args.arch))]
    else:
        requests = requests_from_search(args.search, args.budget, args.rank, loaded.space)
    try:
        folders = export_students(loaded, requests, args.output, options)
    finally:
        cleanup_distributed()
    for folder in folders:
        print(f"wrote {folder}")
    print(f"fine-tune one with: nasbert finetune {folders[0]} --train-file train.tsv --validation-file dev.tsv")
    return 0


def export_options(args: argparse.Namespace) -> ExportOptions:
    """ExportOptions from the flags, with a RefineConfig when --refine-steps asks for a refinement."""
    refine = None
    if args.refine_steps:
        if not args.refine_train_files:
            raise UserError("--refine-steps needs --train-file, the corpus to distil on")
        refine = config_from_args(args, RefineConfig, "refine-", steps=args.refine_steps, seed=args.seed,
                                  output=str(args.output).rstrip("/") + ".refine", device=args.device)
        if refine.resume:
            refuse_changed_refinement(refine)
    return config_from_args(args, ExportOptions, refine=refine)


def refuse_changed_refinement(refine: RefineConfig) -> None:
    """--resume continues the refinement in OUTPUT.refine/ only with the options it was started with."""
    saved_file = Path(refine.output) / "refine_config.json"
    if not saved_file.is_file():
        return  # nothing to resume: the refinement starts (or says so itself)
    try:
        saved = json.loads(saved_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise UserError(f"{saved_file} is corrupt; remove {refine.output} to start the refinement over") from None
    changed = refine.changed_options(saved) if isinstance(saved, dict) else ["everything"]
    if changed:
        raise UserError(f"--resume continues the refinement in {refine.output} with the options it started with, "
                        f"but {', '.join(changed)} changed; resume with the same options or choose another --output")


def check_output(output: Path, args: argparse.Namespace) -> None:
    """The students never go over an input: the run folder (or into it), the search results or the table."""
    target = output.resolve()
    run = Path(args.run).resolve()
    if target == run or run in target.parents:
        raise UserError(f"--output {output} is the run folder {args.run} or inside it; choose a folder outside the run")
    for flag, path in (("--search", args.search), ("--lut", args.lut)):
        if path and target == Path(path).resolve():
            raise UserError(f"--output {output} is the {flag} file; choose a folder for the students")
