"""Stage 3's options: SearchConfig (the budgets and how the winners are checked).

Light (no torch): the command line imports it to build `--help`; each field's help is the flag's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nasbert.errors import UserError, require_positive
from nasbert.search.budget import parse_latency_ms, parse_params


@dataclass
class SearchConfig:
    """Every search option; `nasbert search` makes one flag of each field."""

    latency_budget: list[str] = field(default_factory=list, metadata={
        "metavar": "BUDGET", "help": "one or more latency budgets with units: 20ms, 0.02s"})
    params_budget: str | None = field(default=None, metadata={
        "metavar": "COUNT", "help": "a parameter budget: 10M, 500k (with every latency budget, or alone)"})
    lut: str | None = field(default=None, metadata={
        "help": "latency table of the target device (`nasbert latency profile`)"})
    runtime: str | None = field(default=None, metadata={
        "help": "the runtime the students will be served in, torch or onnxruntime: a table timed in another one is "
                "refused (default: the table's)"})
    precision: str | None = field(default=None, metadata={
        "help": "the precision they will be served at, fp32, bf16, fp16 or int8: a table timed at another one is "
                "refused (default: the table's)"})
    top_k: int = field(default=100, metadata={"help": "candidates per budget re-checked as whole models"})
    recheck_batches: int = field(default=4, metadata={"help": "dev batches for the re-check (0: skip it)"})
    measure: int = field(default=3, metadata={
        "metavar": "N", "help": "time up to N leaders per latency budget end to end (when the table is for this "
                                "machine and settings) and make the best-ranked one that fits the winner (on two "
                                "timings, the slower kept); 0: trust the table"})
    min_run_time: float = field(default=1.0, metadata={
        "help": "seconds of timing per leader measured (each fitting one is timed twice)"})
    rounds: int = field(default=3, metadata={"help": "rounds each leader is timed in (the median is kept)"})
    allow_attention_free: bool = field(default=False, metadata={
        "help": "let students without any attention layer compete (by default every student has at least one: "
                "without it a [CLS]-pooled head sees only a convolution's local window)"})
    op_families: list[str] | None = field(default=None, metadata={
        "metavar": "FAMILY", "help": "search only students whose ops are of these families (identity is always "
                                     "allowed), e.g. M F: the ops a teacher can give its weights to (default: "
                                     "every family the supernet trained)"})
    in_every_block: list[str] | None = field(default=None, metadata={
        "metavar": "OP", "help": "search only students with a layer of each of these ops in every block, e.g. M "
                                 "(token mixing the block-wise hidden-state loss does not reward: on SST-2 its "
                                 "students with one or two attention layers scored under uniform students with one "
                                 "per block) or M F (at tight budgets M alone left students without a feed-forward "
                                 "layer)"})
    weight_students: int = field(default=200, metadata={
        "metavar": "S", "help": "fit a weight per block of the approximated loss on S random students re-checked "
                                "chained; 0, or --recheck-batches 0: NAS-BERT's plain sum of block losses"})
    output: str = field(default="search.json", metadata={
        "help": "results file (a Pareto plot is written beside it)"})
    device: str = field(default="cpu", metadata={"help": "device for the re-check: cpu or cuda"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing --output file"})
    teacher: str | None = field(default=None, metadata={
        "help": "the run's teacher where it is now (default: the path the run stored), e.g. after moving it"})
    trust_remote_code: bool = field(default=False, metadata={
        "help": "let a teacher whose config names Python files of its own (auto_map) run that code"})

    def __post_init__(self) -> None:
        self.budgets()  # a budget without a unit fails here, before any work
        require_positive(self, "top_k", "min_run_time", "rounds")
        if self.measure < 0:
            raise UserError("--measure must be 0 or more")
        if self.weight_students < 0:
            raise UserError("--weight-students must be 0 or more")

    def budgets(self) -> list[tuple[float | None, int | None]]:
        """(latency ms or None, params or None) per searched budget: each latency budget with the params budget."""
        latency_budgets = [parse_latency_ms(b) for b in self.latency_budget]
        for n, budget in enumerate(latency_budgets):
            if budget in latency_budgets[:n]:
                same = self.latency_budget[latency_budgets.index(budget)]
                raise UserError(f"--latency-budget {self.latency_budget[n]} repeats {same}; give each budget once")
        params_budget = parse_params(self.params_budget) if self.params_budget else None
        if not latency_budgets and params_budget is None:
            raise UserError("give at least one budget: --latency-budget 20ms and/or --params-budget 10M")
        return [(b, params_budget) for b in latency_budgets] or [(None, params_budget)]
