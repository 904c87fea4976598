"""`nasbert distill`'s options (DistillConfig, FinetuneConfig's fields and the recipes') and
`nasbert layer-map-search`'s (LayerMapSearchConfig).

Light (no torch): the command line imports it to build `--help`; each field's help is the flag's.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

from nasbert.errors import UserError
from nasbert.finetune.config import FinetuneConfig
from nasbert.finetune.distill import recipes
from nasbert.finetune.distill.layer_map import NAMED_MAPS
from nasbert.finetune.distill.registry import RECIPES, Recipe
from nasbert.finetune.distill.skd import SAMPLINGS

assert recipes  # registers every recipe


@dataclass
class DistillConfig(FinetuneConfig):
    """Every distill option: the fine-tune's (data, epochs, lr, ...) and the recipes'."""

    output: str | None = field(default=None, metadata={
        "help": "output folder (default: MODEL-distilled); must not exist or be empty"})
    teacher: str | None = field(default=None, metadata={
        "help": "the teacher fine-tuned on the task (xtremedistil: on the source task of --transfer-train-file), "
                "same tokenizer; required"})
    max_steps: int | None = field(default=None, metadata={
        "help": "stop each stage after this many optimizer steps (overrides --epochs and --intermediate-epochs)"})
    kd_alpha: float | None = field(default=None, metadata={
        "help": "weight of the soft-label loss, (1 - alpha) on the hard labels (default: the recipe's, 0.5)"})
    kd_temperature: float | None = field(default=None, metadata={
        "help": "softmax temperature T of the soft-label loss, scaled by T^2 (default: the recipe's: 10 for pkd-*, "
                "else 1)"})
    recipe: str = field(default="kd", metadata={
        "choices": tuple(RECIPES), "help": "the distiller: " + "; ".join(f"{r.name}: {r.summary}"
                                                                         for r in RECIPES.values())})
    layer_map: str | None = field(default=None, metadata={
        "metavar": "MAP", "help": f"student layer -> teacher layer: {', '.join(NAMED_MAPS)}, pairs like "
                                  "'s0:t2,s1:t5' (0-based; a NAS-BERT student's layers are its blocks), or a "
                                  "layer-map-search result (default: the recipe's)"})
    pkd_beta: float = field(default=100.0, metadata={"help": "pkd-*: weight beta of the patient [CLS] loss"})
    team: list[str] | None = field(default=None, metadata={
        "metavar": "FOLDER", "help": "skd: more fine-tuned teachers of the task; the team is --teacher and these"})
    skd_sampling: str = field(default="uniform", metadata={
        "choices": SAMPLINGS, "help": "skd: how the teacher of each step is drawn"})
    skd_probs: list[float] | None = field(default=None, metadata={
        "metavar": "P", "help": "skd with --skd-sampling explicit: one weight per team member, --teacher first"})
    skd_probe_steps: int = field(default=50, metadata={
        "help": "skd with --skd-sampling student-rank: KD steps from each member before the student is scored"})
    intermediate_epochs: float | None = field(default=None, metadata={
        "help": "epochs of each stage before the last (tinybert's intermediate phase, ernie-tiny's stages 1-3, "
                "xtremedistil's representation stage) (default: --epochs)"})
    pretrained_teacher: str | None = field(default=None, metadata={
        "help": "ernie-tiny: the teacher before fine-tuning (a Hugging Face encoder folder), for the general stage"})
    general_train_file: str | None = field(default=None, metadata={
        "help": "ernie-tiny: general text (.txt one passage a line, .jsonl/.csv with a text column)"})
    max_general_samples: int | None = field(default=None, metadata={
        "help": "ernie-tiny: use a seeded random subset of this many general passages"})
    transfer_train_file: str | None = field(default=None, metadata={
        "help": "xtremedistil: the source task's labelled data (same formats as --train-file), the teacher's task"})
    transfer_text_columns: list[str] | None = field(default=None, metadata={
        "metavar": "COLUMN", "help": "xtremedistil: text column(s) of the transfer file (default: detected)"})
    transfer_label_column: str = field(default="label", metadata={"help": "xtremedistil: label column of the "
                                                                          "transfer file"})
    max_transfer_samples: int | None = field(default=None, metadata={
        "help": "xtremedistil: use a seeded random subset of this many transfer rows"})
    unfreeze_epochs: float = field(default=1.0, metadata={
        "help": "xtremedistil: epochs of each gradual-unfreezing step"})
    until_stage: str | None = field(default=None, metadata={
        "metavar": "STAGE", "help": "stop after this stage, keeping OUTPUT.partial for --resume"})
    resume: bool = field(default=False, metadata={
        "help": "continue the unfinished run in OUTPUT.partial from its last finished stage"})


@dataclass
class LayerMapSearchConfig(DistillConfig):
    """A genetic search over layer maps; each candidate is scored by a short proxy distillation (see search.py)."""

    output: str | None = field(default=None, metadata={
        "help": "output folder for layer_map_search.json, state.json and the plot (default: MODEL-layer-map-search)"})
    population: int = field(default=8, metadata={"help": "candidate maps per generation"})
    generations: int = field(default=6, metadata={"help": "generations (a resumed search runs up to this many)"})
    mutation_rate: float | None = field(default=None, metadata={
        "help": "chance that a gene (one student layer's teacher layer) is redrawn (default: 1 / student layers)"})
    proxy_steps: int = field(default=40, metadata={
        "help": "optimizer steps of each proxy phase (latent distillation with the map, then logit KD)"})
    proxy_train_samples: int = field(default=512, metadata={"help": "training rows the proxy distils on"})
    proxy_eval_samples: int = field(default=512, metadata={"help": "validation rows the proxy scores on"})


# Search options that `nasbert distill` does not take, and distill options the search does not take.
SEARCH_ONLY = tuple(f.name for f in fields(LayerMapSearchConfig) if f.name not in
                    {g.name for g in fields(DistillConfig)})
NOT_FOR_SEARCH = ("recipe", "layer_map", "pkd_beta", "team", "skd_sampling", "skd_probs", "skd_probe_steps",
                  "intermediate_epochs", "pretrained_teacher", "general_train_file", "max_general_samples",
                  "transfer_train_file", "transfer_text_columns", "transfer_label_column", "max_transfer_samples",
                  "unfreeze_epochs", "until_stage", "epochs", "max_steps", "report_to", "onnx", "int8")


def with_recipe_defaults(config: DistillConfig) -> tuple[DistillConfig, Recipe]:
    """The config with the recipe's defaults in the fields left None, and the recipe; missing inputs refused."""
    recipe = RECIPES.get(config.recipe)
    if recipe is None:
        raise UserError(f"--recipe {config.recipe} is not a recipe; choose one of {', '.join(RECIPES)}")
    if config.teacher is None:
        raise UserError(f"--teacher is required: recipe {recipe.name} distils from a teacher fine-tuned on the task "
                        "(make one with `nasbert finetune TEACHER --train-file ... --validation-file ...`)")
    for name in recipe.needs:
        if getattr(config, name) is None:
            raise UserError(f"recipe {recipe.name} needs --{name.replace('_', '-')}")
    values = {"kd_alpha": 0.5, "kd_temperature": 1.0, **recipe.defaults}
    values = {k: v for k, v in values.items() if getattr(config, k) is None}
    if config.layer_map is None and recipe.layer_map is not None:
        values["layer_map"] = recipe.layer_map
    if config.intermediate_epochs is None:
        values["intermediate_epochs"] = config.epochs
    return replace(config, **values), recipe


def check_distill_config(config: DistillConfig) -> None:
    """Refuse impossible recipe options with one sentence (the fine-tune's own are checked by check_config)."""
    checks = [(config.pkd_beta >= 0, "--pkd-beta must be non-negative"),
              (config.intermediate_epochs is None or config.intermediate_epochs > 0,
               "--intermediate-epochs must be positive"),
              (config.unfreeze_epochs > 0, "--unfreeze-epochs must be positive"),
              (config.skd_probe_steps > 0, "--skd-probe-steps must be positive"),
              (config.skd_probs is None or config.skd_sampling == "explicit",
               "--skd-probs goes with --skd-sampling explicit"),
              (not config.team or config.recipe == "skd", "--team is for --recipe skd"),
              (config.recipe != "skd" or config.skd_sampling == "uniform" or config.team,
               "--skd-sampling other than uniform needs a team: add --team FOLDER ..."),
              (config.max_general_samples is None or config.max_general_samples > 0,
               "--max-general-samples must be positive"),
              (config.max_transfer_samples is None or config.max_transfer_samples > 0,
               "--max-transfer-samples must be positive")]
    for ok, message in checks:
        if not ok:
            raise UserError(message)
