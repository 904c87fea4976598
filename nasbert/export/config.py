"""Stage 4's options: ExportOptions, RefineConfig and the refinement losses it may name.

Light (no torch): the command line imports it to build `--help`; each field's help is the flag's.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from nasbert.common.corpus import CorpusOptions
from nasbert.common.losses import REFINE_LOSSES
from nasbert.errors import UserError
from nasbert.train_supernet.config import check_numbers

INITS = ("supernet", "etd-impt", "etd-rand", "hybrid", "teacher-layers", "scratch")  # how a student's weights start
# The default --losses (opt-in entries left out); validation reads the live registry.
LOSSES = tuple(name for name, loss in REFINE_LOSSES.items() if loss.default)
# What an export --resume may change without changing the refinement it continues.
RESUMABLE_CHANGES = {"save_every", "keep_checkpoints", "log_every", "resume", "device", "output"}


@dataclass
class RefineConfig(CorpusOptions):
    """Refinement options; `nasbert export` makes a `--refine-*` flag of each field (or the flag its metadata names)."""

    output: str = field(default="", metadata={"help": "work folder: checkpoints, tensorboard, metrics"})
    steps: int = field(default=1000, metadata={"help": "distillation steps from the teacher"})
    batch_size: int = field(default=32, metadata={"help": "sequences per step, over all processes"})
    lr: float = field(default=3e-4, metadata={"help": "peak learning rate (AdamW, warm-up then linear decay)"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    warmup_steps: int = field(default=100, metadata={"help": "steps of linear learning-rate warm-up"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "clip the gradient norm to this (0: no clipping)"})
    losses: list[str] = field(default_factory=lambda: list(LOSSES), metadata={
        "flag": "losses", "choices": REFINE_LOSSES, "help": "refinement losses"})
    kl_lambda: float = field(default=0.5, metadata={"help": "kl loss: (1 - lambda) mlm + lambda kl"})
    temperature: float = field(default=1.0, metadata={"help": "kl loss: softmax temperature T (scaled by T^2)"})
    relation_heads: int | None = field(default=None, metadata={
        "help": "attention loss: relation heads (default: the gcd of the teacher's and the student's heads)"})
    mlm_probability: float = field(default=0.15, metadata={"help": "mask this share of the tokens"})
    whole_word_mask: bool = field(default=False, metadata={"help": "mask whole words rather than single tokens"})
    save_every: int = field(default=500, metadata={"flag": "save-every", "help": "refinement checkpoint interval"})
    keep_checkpoints: int = field(default=2, metadata={"help": "newest checkpoints kept"})
    log_every: int = field(default=10, metadata={"help": "training scalars every this many steps"})
    seed: int = field(default=0, metadata={"help": "seed of the data order and masking"})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    resume: bool = field(default=False, metadata={
        "flag": "resume", "help": "continue an interrupted refinement (OUTPUT.refine/)"})

    def __post_init__(self) -> None:
        unknown = [loss for loss in self.losses if loss not in REFINE_LOSSES]
        if unknown or not self.losses:
            raise UserError(f"--losses takes some of {', '.join(REFINE_LOSSES)}, not {', '.join(unknown) or 'nothing'}")
        if self.steps <= 0:
            raise UserError("--refine-steps must be positive")
        check_numbers(self, ("batch_size", "lr", "seq_len", "temperature", "save_every", "keep_checkpoints",
                             "log_every", "relation_heads"),
                      ("weight_decay", "warmup_steps", "max_grad_norm", "max_train_sequences",
                       "max_validation_sequences"), prefix="refine-")
        for name in ("kl_lambda", "mlm_probability"):
            if not 0 <= getattr(self, name) <= 1:
                raise UserError(f"--refine-{name.replace('_', '-')} is a share in [0, 1], got {getattr(self, name)}")

    def changed_options(self, saved: dict) -> list[str]:
        """'--flag saved -> now' for each option a resumed refinement may not change (saved: refine_config.json)."""
        flags = {f.name: "--" + f.metadata.get("flag", "refine-" + f.name.replace("_", "-")) for f in fields(self)}
        return [f"{flags[name]} {saved[name]!r} -> {getattr(self, name)!r}" for name in flags
                if name not in RESUMABLE_CHANGES and name in saved and saved[name] != getattr(self, name)]


@dataclass
class ExportOptions:
    """How students are built and written; `nasbert export` makes a flag of each field but `refine`."""

    init: str = field(default="supernet", metadata={
        "choices": INITS, "help": "how the student's weights start: supernet (exact extraction), etd-impt / etd-rand "
                                  "(the teacher's layers by importance / at random), hybrid (etd-impt's M and F "
                                  "layers, the supernet's other ops: convolutions), teacher-layers (whole teacher "
                                  "layers, one per M,F pair, no pruning: exact at the teacher's width) or scratch"})
    teacher_layers: list[int] | None = field(default=None, metadata={
        "metavar": "LAYER", "help": "with --init teacher-layers: the teacher layers (0-based, increasing) the "
                                    "student's M,F pairs copy, each in its block's share of the teacher (default: "
                                    "evenly spaced in each block)"})
    ffn_ratio: int | None = field(default=None, metadata={
        "help": "a narrower feed-forward, inner FFN_RATIO * width (below the space's ratio), its neurons the teacher's "
                "most important (--init etd-impt; etd-rand, scratch): the width-pruned teacher's finer grid, as "
                "`nasbert baselines` chooses it (default: the space's ratio)"})
    embedding_size: int | None = field(default=None, metadata={
        "help": "E of the factorised embeddings (default: the teacher's hidden size)"})
    refine: RefineConfig | None = None  # distillation after inheriting (the --refine-* flags); None: none
    lut: str | None = field(default=None, metadata={
        "help": "latency table: the card gets the predicted latency, and latency is measured under the table's "
                "conditions"})
    onnx: bool = field(default=False, metadata={
        "help": "also write model.onnx (the bare encoder, dynamic batch and sequence axes), checked against PyTorch "
                "in onnxruntime; needs pip install nasbert[onnx]"})
    int8: bool = field(default=False, metadata={
        "help": "with --onnx: also write model.int8.onnx (onnxruntime dynamic quantization, int8 weights) and "
                "record its cosine similarity to the fp32 graph on real text"})
    measure: bool = field(default=True, metadata={"help": "skip measuring the student's latency"})
    importance_batches: int = field(default=4, metadata={
        "help": "batches of 8 dev sequences that score the teacher's heads and neurons (etd-impt, hybrid, or a reduced "
                "--embedding-size)"})
    seed: int = field(default=0, metadata={
        "help": "seed of the random parts (S ops, scratch, adapters) and of the refinement: exports are "
                "reproducible"})
    teacher: str | None = field(default=None, metadata={
        "help": "the run's teacher where it is now (default: the path the run stored), e.g. after moving it"})
    trust_remote_code: bool = field(default=False, metadata={
        "help": "let a teacher whose config names Python files of its own (auto_map) run that code"})
