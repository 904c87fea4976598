"""`nasbert compare`: students and their teacher fine-tuned on one task with the same settings, timed side by
side, in one table and one plot of task score against measured latency.

    OUTPUT/latency.json        every model timed in interleaved rounds under one set of conditions
    OUTPUT/runs/NAME/seedK/    each fine-tune (`nasbert finetune`; the students with `nasbert distill --recipe R`
                               from the fine-tuned teacher when --recipe is given)
    OUTPUT/held-out/seedK.tsv  with --held-out-rows: training rows seed K's draw left out, its fine-tunes scored on them
    OUTPUT/lr-LR/runs/NAME/seedK/  with --lr-grid: each student's fine-tunes at that lr (the teacher's stay in runs/)
    OUTPUT/compare.json        per model: family, budget, measured ms, scores per seed, mean, min, max (and the
                               held-out mean; per budget the searched student picked by it; with --lr-grid the
                               lr each student's held-out score chose and every lr's held-out mean)
    OUTPUT/compare.md          the table;  OUTPUT/compare.png  the plot

With --budget-teacher-ms (or a --baselines run made with it) each budget is judged scaled by the teacher timed side
by side over its latency when the budgets were set (nasbert.baselines.budgets): a model's share of its budget is
then its share of the teacher timed beside it, over the budget's fraction of the teacher.

A teacher folder that `nasbert finetune` wrote (it holds eval_results.json) is used as it is: its score is its
own, and it is the recipe's teacher; any other teacher is fine-tuned here with every seed, like the students.
Resumable: a fine-tune whose eval_results.json exists is kept (one left half-done is started over; one made from
another model or with other training settings is refused, never mixed into the table), and the timings are kept
while the models and conditions are the same. Fine-tunes run seed by seed (every model's seed 0
first), so an interrupted comparison already compares.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import MISSING, dataclass, fields
from pathlib import Path

from nasbert.baselines.budgets import BudgetScale
from nasbert.baselines.config import CompareConfig
from nasbert.baselines.report import run_settings, write_report
from nasbert.baselines.run import RESULTS, read_results
from nasbert.baselines.side_by_side import time_side_by_side
from nasbert.errors import UserError
from nasbert.finetune.config import FinetuneConfig
from nasbert.latency.lut import Conditions, LatencyTable
from nasbert.latency.measure import gauge_reference_ms
from nasbert.search.budget import parse_latency_ms

# Options that change what a kept fine-tune learnt: a run made with other values is not this comparison's.
TRAINING_SETTINGS = ("train_file", "validation_file", "label_column", "task", "epochs", "lr", "batch_size",
                     "max_seq_len", "max_steps", "max_train_samples", "warmup_ratio", "weight_decay", "kd_alpha",
                     "kd_temperature", "recipe")


@dataclass
class Compared:
    name: str  # its runs/ folder and its row
    family: str  # teacher, searched, depth, width, uniform, student
    folder: str
    budget: str | None = None
    budget_ms: float | None = None


def models_to_compare(config: CompareConfig) -> tuple[list[Compared], Compared]:
    """The students (from --baselines, then --students) and the teacher."""
    models, teacher = [], config.teacher
    if config.baselines:
        path = Path(config.baselines) / RESULTS
        if not path.is_file():
            raise UserError(f"{config.baselines} holds no {RESULTS}; give a `nasbert baselines` output folder")
        saved = read_results(path)
        teacher = teacher or saved.get("teacher")
        for row in saved["baselines"]:
            if row.get("folder"):
                folder = member_folder(Path(config.baselines), row["folder"])
                models.append(Compared(folder.name, row["family"], str(folder), row["budget"],
                                       row["latency_budget_ms"]))
    for folder in config.students or []:
        if not (Path(folder) / "config.json").is_file():
            raise UserError(f"{folder} is not a model folder (no config.json)")
        facts_file = Path(folder) / "nasbert_export.json"
        facts = json.loads(facts_file.read_text()) if facts_file.is_file() else {}
        # a searched student names its budget; a `nasbert baselines` member its family and budget too
        search, baseline = facts.get("search") or {}, facts.get("baseline") or {}
        family = "searched" if search else baseline.get("family", "student")
        budget = search.get("budget") or baseline.get("budget")
        budget_ms = baseline.get("latency_budget_ms") or (
            parse_latency_ms(budget) if budget and budget.endswith("ms") else None)
        models.append(Compared(Path(folder).name, family, str(folder), budget, budget_ms))
    if not teacher:
        raise UserError("give the teacher with --teacher")
    names = [m.name for m in models] + ["teacher"]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UserError(f"two models are named {twice[0]} (a folder's name names its row); rename one folder")
    if not models:
        raise UserError("no student to compare: the --baselines folder exported none and no --students were given")
    return models, Compared("teacher", "teacher", str(teacher))


def member_folder(baselines: Path, folder: str) -> Path:
    """A chosen member's student folder: as baselines.json names it, else the one of that name in the baselines
    folder (a relative name written from another working directory, or a moved baselines folder). A member chosen
    but not exported (its run was interrupted) is refused, never left out of the table in silence."""
    for candidate in (Path(folder), baselines / "students" / Path(folder).name):
        if (candidate / "config.json").is_file():
            return candidate
    raise UserError(f"{baselines} chose a member in {folder}, which holds no student; run `nasbert baselines` "
                    "again to export it")


def compare(config: CompareConfig, task_values: dict) -> dict:
    """Time every model, fine-tune each with every seed, write the report; `task_values` are the fine-tune /
    distil options (DistillConfig fields) every run shares."""
    output = Path(config.output)
    models, teacher = models_to_compare(config)
    seed_tables = pick_held_out_rows(config, task_values, output) if config.held_out_rows else None
    output.mkdir(parents=True, exist_ok=True)
    latency = side_by_side(models + [teacher], config, output, bool(task_values.get("trust_remote_code")))
    given = (Path(teacher.folder) / "eval_results.json").is_file()  # a `nasbert finetune` output: used as it is
    recipe_teacher = teacher.folder if given else str(output / "runs" / "teacher" / "seed0")
    teacher_values = {**task_values, **({"lr": config.teacher_lr} if config.teacher_lr is not None else {})}
    runs: dict[str, list[Path]] = {"teacher": [Path(teacher.folder)] if given else []}
    grid = config.lr_grid or [None]  # None: every student at --lr, its runs in OUTPUT/runs
    grid_runs: dict[float | None, dict[str, list[Path]]] = {lr: {m.name: [] for m in models} for lr in grid}
    for seed in range(config.seeds):
        if not given:
            runs["teacher"].append(fine_tune(teacher, seed, output, teacher_values))
        for lr in grid:
            root, values = (output, task_values) if lr is None else (output / lr_folder(lr), {**task_values, "lr": lr})
            for model in models:
                grid_runs[lr][model.name].append(fine_tune(model, seed, root, values, config.recipe, recipe_teacher))
    task = {k: task_values.get(k) for k in ("train_file", "validation_file", "label_column", "text_columns")}
    if seed_tables:
        by_lr = {lr: score_held_out(models, grid_runs[lr], seed_tables, config.held_out_rows, task_values)
                 for lr in grid}
        held_out, chosen = best_lr_per_student(by_lr)
    else:
        held_out, chosen = None, {m.name: None for m in models}
    runs.update({name: grid_runs[lr][name] for name, lr in chosen.items()})
    scale = budget_scale(config, latency)
    return write_report(output, [teacher, *models], latency, runs, config, task, teacher_given=given,
                        held_out=held_out, scale=scale)


def lr_folder(lr: float) -> str:
    """OUTPUT's folder of one --lr-grid value's fine-tunes: lr-0.0001 (its runs/ inside, as a comparison's)."""
    return "lr-" + f"{lr:.10f}".rstrip("0").rstrip(".")


def best_lr_per_student(by_lr: dict[float | None, dict]) -> tuple[dict, dict[str, float | None]]:
    """(held-out summary, {student: its lr}): each student's lr is the grid's value with the best held-out mean
    (the first of a tie, the grid sorted); the summary's means are those at the chosen lrs, and with a grid it
    also holds every lr's means ("by_lr") and the choice ("lr")."""
    first = next(iter(by_lr.values()))
    names = list(first["means"])
    chosen = {name: max(by_lr, key=lambda lr: (by_lr[lr]["means"][name], -(lr or 0))) for name in names}
    summary = {"rows": first["rows"], "metric": first["metric"],
               "means": {name: by_lr[lr]["means"][name] for name, lr in chosen.items()}}
    if list(by_lr) != [None]:
        summary["lr"] = chosen
        summary["by_lr"] = {name: {f"{lr:g}": by_lr[lr]["means"][name] for lr in by_lr} for name in names}
        for name, lr in chosen.items():
            print(f"{name}: lr {lr:g} (held-out " + ", ".join(f"{k} at {v:.4f}" for k, v in
                                                                  summary["by_lr"][name].items()) + ")")
    return summary, chosen


def budget_scale(config: CompareConfig, latency: dict) -> BudgetScale | None:
    """The teacher timed side by side over --budget-teacher-ms (by default the --baselines run's), which every
    budget is judged scaled by; None where neither gives one."""
    set_at = config.budget_teacher_ms
    if set_at is None and config.baselines:
        set_at = (read_results(Path(config.baselines) / RESULTS).get("options") or {}).get("budget_teacher_ms")
    return BudgetScale(latency["ms"]["teacher"], set_at) if set_at else None


def pick_held_out_rows(config: CompareConfig, task_values: dict, output: Path) -> list[Path]:
    """OUTPUT/held-out/seedK.tsv, one per seed: --held-out-rows training rows that seed's draw leaves out, chosen
    before any fine-tune, so that a training file with too few such rows is refused before hours of fine-tuning."""
    from nasbert.baselines.held_out import held_out_tables

    return held_out_tables(Path(task_values["train_file"]), task_values.get("max_train_samples"), config.seeds,
                           config.held_out_rows, output / "held-out")


def score_held_out(models: list[Compared], runs: dict[str, list[Path]], tables: list[Path], count: int,
                   task_values: dict) -> dict:
    """{"rows", "metric", "means": {name: mean over seeds}}: every student's seed-K fine-tune scored on the
    `count` rows of tables[K], which seed K's draw left out (the teacher is left out: a given teacher's fine-tune
    drew its own rows)."""
    from nasbert.baselines.held_out import held_out_mean

    means, metric = {}, None
    for model in models:
        means[model.name], metric = held_out_mean(runs[model.name], tables, bool(task_values.get("trust_remote_code")))
    print(f"held-out: per seed {count} training rows its draw left out ({tables[0].parent}), {metric} per student")
    return {"rows": count, "metric": metric, "means": means}


def side_by_side(models: list[Compared], config: CompareConfig, output: Path, trust: bool) -> dict:
    """{"conditions", "note", "ms": {name: ms}}, measured now or kept from latency.json (same models, conditions)."""
    table = LatencyTable.load(config.lut) if config.lut else None
    if table is not None:
        c = table.conditions
        conditions = Conditions.current(c.device, c.threads, c.batch_size, c.seq_len, c.dtype)
        table.require(conditions)
    else:
        conditions = Conditions.current("cpu", config.latency_threads, config.latency_batch_size,
                                        config.latency_seq_len, "float32")
    folders = {m.name: m.folder for m in models}
    path = output / "latency.json"
    if path.is_file():
        kept = json.loads(path.read_text())
        same = not Conditions.from_json(kept["conditions"], str(path)).mismatches(conditions)
        if same and kept.get("folders") == folders:
            return kept
    ms, note = time_side_by_side(folders, conditions, config.latency_rounds, config.latency_min_run_time,
                                 gauge_reference_ms(table), trust)
    result = {"conditions": conditions.to_json(), "note": note, "folders": folders, "ms": ms}
    path.write_text(json.dumps(result, indent=1))
    print(note)
    return result


def fine_tune(model: Compared, seed: int, output: Path, values: dict, recipe: str | None = None,
              recipe_teacher: str | None = None) -> Path:
    """OUTPUT/runs/NAME/seedK: `nasbert finetune`, or `nasbert distill --recipe` from `recipe_teacher`; kept when
    its result exists (and it was made from this model), started over when it was left half-done."""
    out = output / "runs" / model.name / f"seed{seed}"
    if (out / "eval_results.json").is_file():
        held = run_settings(out)
        if held.get("model") is not None and Path(held["model"]).resolve() != Path(model.folder).resolve():
            raise UserError(f"{out} was fine-tuned from {held['model']}, not {model.folder}; remove it to redo it")
        changed = changed_setting(held.get("options") or {}, {**values, "recipe": recipe}, recipe is not None)
        if changed:
            raise UserError(f"{out} was trained with {changed}; give another --output, or remove it to redo it")
        return out
    for leftover in (out, out.with_name(out.name + ".partial")):
        shutil.rmtree(leftover, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    print(f"\n== {model.name} seed {seed}", flush=True)
    # the model as an absolute path: a comparison resumed from another working directory still knows its runs
    values = {**values, "model": str(Path(model.folder).resolve()), "output": str(out), "seed": seed}
    if recipe is not None:
        from nasbert.finetune.distill.config import DistillConfig
        from nasbert.finetune.distill.run import distill

        distill(DistillConfig(**values, teacher=recipe_teacher, recipe=recipe))
    else:
        from nasbert.finetune.trainer import finetune

        names = {f.name for f in fields(FinetuneConfig)}
        finetune(FinetuneConfig(**{k: v for k, v in values.items() if k in names}))
    return out


def changed_setting(held: dict, values: dict, distilled: bool) -> str | None:
    """'--lr 0.0003, not 0.0001 as now' for the first training setting a kept run differs in from `values` (an
    option not given counts as its default); None when none differs or the run did not record it."""
    from nasbert.finetune.distill.config import DistillConfig

    defaults = {f.name: f.default for f in fields(DistillConfig if distilled else FinetuneConfig)
                if f.default is not MISSING}
    for key in TRAINING_SETTINGS:
        now, then = values.get(key, defaults.get(key)), held.get(key)
        if key not in held or now is None:
            continue
        if isinstance(now, (int, float)) and isinstance(then, (int, float)):
            differs = abs(float(now) - float(then)) > 1e-12 * max(1.0, abs(float(then)))
        else:
            differs = str(now) != str(then)
        if differs:
            return f"--{key.replace('_', '-')} {then}, not {now} as now"
    return None
