"""Options of `nasbert baselines` (BaselinesConfig) and `nasbert compare` (CompareConfig).

Light (no torch): the command line imports it to build `--help`; each field's help is the flag's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nasbert.baselines.families import FAMILIES
from nasbert.errors import UserError, require_positive
from nasbert.finetune.distill import recipes
from nasbert.finetune.distill.registry import RECIPES

assert recipes  # registers every recipe (the --recipe choices)
DEPTH_LAYERS = ("evenly", "importance")


def budget_teacher_help(timed: str, judged: str, default: str) -> str:
    """--budget-teacher-ms's help: where the teacher is timed, what the scaled budgets judge, the default."""
    return (f"the teacher's latency when the budgets were set (e.g. `nasbert latency measure` on the day the table "
            f"was profiled): the teacher is timed {timed} and every budget is scaled by its latency there over MS, "
            f"so a machine running 5 %% slower today gets budgets 5 %% larger, each the same share of the teacher; "
            f"{judged} (default: {default})")


@dataclass
class BaselinesConfig:
    """Which families, which budgets, how they are measured; the export flags are `nasbert export`'s."""

    run: str = field(metadata={"positional": True, "help": "a train-supernet run folder (teacher, space, supernet)"})
    latency_budget: list[str] = field(metadata={"metavar": "BUDGET", "help": "latency budgets with units, e.g. 20ms"})
    lut: str = field(metadata={"help": "the latency table of the target device: members are proposed by its "
                                       "prediction and measured under its conditions"})
    output: str = field(metadata={"help": "folder for baselines.json, baselines.md and students/FAMILY-BUDGET/"})
    families: list[str] = field(default_factory=lambda: list(FAMILIES), metadata={
        "metavar": "FAMILY", "help": "the families, by name or comma-separated: " + "; ".join(
            f"{f.name}: {f.summary}" for f in FAMILIES.values()) + f" (default: {','.join(FAMILIES)})"})
    depth_layers: str = field(default="evenly", metadata={
        "choices": DEPTH_LAYERS, "help": "which teacher layers a depth-pruned student keeps: evenly spaced "
                                         "(DistilBERT) or those that change their input most (ShortGPT)"})
    measure_top: int = field(default=3, metadata={
        "help": "members measured end to end at a time, largest prediction first (0: trust the table)"})
    tightenings: int = field(default=4, metadata={
        "help": "times the prediction is corrected by the members measured so far (up or down) and the next "
                "ones are timed"})
    min_run_time: float = field(default=1.0, metadata={"help": "seconds of timing per member measured"})
    rounds: int = field(default=3, metadata={"help": "rounds each member is timed in (the median is kept)"})
    keep_closest: bool = field(default=False, metadata={
        "help": "also export a family's closest member under the budget when none measures within 10 %% under it "
                "(marked in baselines.json)"})
    device: str = field(default="cpu", metadata={"help": "cpu or cuda, for the supernet and the refinement"})
    budget_teacher_ms: float | None = field(default=None, metadata={
        "metavar": "MS", "help": budget_teacher_help("here, as the members are,", "each member is chosen "
                                                     "against its scaled budget", "the budgets as given")})

    def __post_init__(self) -> None:
        names = [name.strip() for item in self.families for name in item.split(",") if name.strip()]
        unknown = [name for name in names if name not in FAMILIES]
        if unknown or not names:
            raise UserError(f"--families takes some of {', '.join(FAMILIES)}, not {', '.join(unknown) or 'nothing'}")
        self.families = list(dict.fromkeys(names))
        for name in ("measure_top", "tightenings"):
            if getattr(self, name) < 0:
                raise UserError(f"--{name.replace('_', '-')} must be 0 or more")
        require_positive(self, "min_run_time", "rounds", "budget_teacher_ms")


@dataclass
class CompareConfig:
    """The models, the teacher, the seeds and how latency is measured; the task flags are `nasbert distill`'s."""

    output: str = field(metadata={"help": "folder for compare.json, compare.md, compare.png and runs/"})
    students: list[str] | None = field(default=None, metadata={
        "metavar": "FOLDER", "help": "student folders to compare (e.g. from nasbert export)"})
    baselines: str | None = field(default=None, metadata={
        "help": "a `nasbert baselines` output folder: every student it exported joins the comparison"})
    teacher: str | None = field(default=None, metadata={
        "help": "the teacher: a raw encoder (fine-tuned here like the students) or a `nasbert finetune` output "
                "(used as it is) (default: the baselines' run's teacher)"})
    seeds: int = field(default=3, metadata={"help": "fine-tunes per model (seeds 0 .. N-1); the table shows mean "
                                                    "and range"})
    recipe: str | None = field(default=None, metadata={
        "choices": tuple(RECIPES), "help": "distil every student with this `nasbert distill` recipe from the "
                                           "fine-tuned teacher (default: plain fine-tuning)"})
    teacher_lr: float | None = field(default=None, metadata={"help": "the teacher's learning rate (default: --lr)"})
    lut: str | None = field(default=None, metadata={
        "help": "time under this latency table's conditions and speed gauge (default: --latency-* on cpu)"})
    latency_threads: int | None = field(default=None, metadata={"help": "threads when timing (default: torch's)"})
    latency_batch_size: int = field(default=1, metadata={"help": "batch size when timing"})
    latency_seq_len: int = field(default=128, metadata={"help": "tokens per sequence when timing"})
    # a 10 % window judged against one side-by-side timing needs a steady median: on a shared 2-core VM five
    # rounds of 1 s read the teacher 5-10 % slow on busy spells, fifteen of 3 s put 13 students at 0.94-0.99 x
    latency_rounds: int = field(default=15, metadata={
        "help": "interleaved rounds: each round times every model once, the median round is kept"})
    latency_min_run_time: float = field(default=3.0, metadata={"help": "seconds of timing per model over all rounds"})
    held_out_rows: int = field(default=0, metadata={
        "help": "also score each seed's fine-tunes on this many training rows that seed's --max-train-samples "
                "draw left out, and mark per budget the searched student that scores best there (mean over seeds): "
                "a pick among several candidates that never looks at the dev set (default 0: off)"})
    lr_grid: list[float] | None = field(default=None, metadata={
        "metavar": "LR", "help": "fine-tune every student at each of these learning rates (OUTPUT/lr-LR/runs/) "
                                 "and keep, per student, the one whose --held-out-rows score is best: each at its "
                                 "own lr, chosen without the dev set (a small student may need a higher lr than a "
                                 "large one); the teacher keeps --teacher-lr (default: every student at --lr)"})
    budget_teacher_ms: float | None = field(default=None, metadata={
        "metavar": "MS", "help": budget_teacher_help("side by side with the students", "each model's share of "
                                                     "its budget is of the scaled one", "the --baselines run's, "
                                                     "else the budgets as given")})

    def __post_init__(self) -> None:
        if not self.students and not self.baselines:
            raise UserError("nothing to compare: give --students FOLDER ... and/or --baselines FOLDER")
        require_positive(self, "seeds", "latency_batch_size", "latency_seq_len", "latency_rounds",
                         "latency_min_run_time")
        if self.held_out_rows < 0:
            raise UserError("--held-out-rows must be 0 or more")
        require_positive(self, "budget_teacher_ms")
        if self.lr_grid is not None:
            if not self.lr_grid or min(self.lr_grid) <= 0:
                raise UserError("--lr-grid takes learning rates over 0, e.g. --lr-grid 1e-4 3e-4")
            if not self.held_out_rows:
                raise UserError("--lr-grid picks each student's lr by its held-out score: give --held-out-rows N too")
            self.lr_grid = sorted(set(self.lr_grid))
