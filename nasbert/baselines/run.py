"""`nasbert baselines`: per budget, the best-fitting member of each family, exported like a searched student.

    OUTPUT/baselines.json         one row per (budget, family): arch, init, teacher layers, predicted and measured
                                  ms, folder, and a sentence (how it fits, or why no member does)
    OUTPUT/baselines.md           the same as a table
    OUTPUT/students/FAMILY-BUDGET/ student folders, written by `nasbert export`'s code path with its refinement
    OUTPUT/students.refine*/      the refinement's checkpoints (shared by the students exported together)

Staged and resumable: a choice is written as soon as it is made and kept when the command runs again (it is not
re-measured), and a student already exported is kept; what is missing is exported (and refined together) on the
next run. An interrupted refinement continues where it stopped.

With --budget-teacher-ms the teacher is timed first, as the members are, and each member is chosen against its
budget scaled by the teacher's latency now over then (nasbert.baselines.budgets); a row keeps the budget as
given and its `aimed_budget_ms`.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path

from nasbert.baselines.budgets import BudgetScale, time_teacher
from nasbert.baselines.choose import SLACK, Choice, Priced, SharedTimings, choose
from nasbert.baselines.config import BaselinesConfig
from nasbert.baselines.families import FAMILIES
from nasbert.baselines.registry import Member, NoMembers, ProposalContext, ffn_suffix
from nasbert.errors import UserError
from nasbert.export.config import ExportOptions, RefineConfig
from nasbert.export.pipeline import ExportRequest, export_facts, export_students
from nasbert.latency.interpolate import with_ffn_ratio, with_widths
from nasbert.latency.lut import LatencyTable
from nasbert.latency.students import arch_timer
from nasbert.search.budget import parse_latency_ms
from nasbert.train_supernet.run import Run
from search_space import Arch

RESULTS = "baselines.json"


def run_baselines(run: Run, config: BaselinesConfig, options: ExportOptions) -> list[dict]:
    """Choose (or keep) a member of every family under every budget, export the missing ones; the rows written."""
    output = Path(config.output).resolve()  # rows name their folders absolutely: `compare` may run elsewhere
    budgets = {f"{ms:g}ms": ms for ms in (parse_latency_ms(b) for b in config.latency_budget)}
    lut = LatencyTable.load(config.lut)
    lut.check_space(run.space)
    saved = read_results(output / RESULTS)
    kept = {(row["budget"], row["family"]): row for row in saved.get("baselines", [])}
    context = proposal_context(run, config, options)
    timings, unmeasured = None, "--measure-top 0"
    if config.measure_top > 0:
        try:  # members are timed as export times a student: the table's conditions, runtime and precision
            time_arch = arch_timer(lut, config.min_run_time, config.rounds)
        except UserError as error:  # a table for another machine or runtime: its predictions stand
            unmeasured = str(error)
        else:
            timings = SharedTimings(lambda member: time_arch(str(member.arch), member.ffn_ratio))
    scale = budget_scale(run, config, lut, output, saved, timings is not None, unmeasured)
    if scale is not None:
        print(scale.text(), flush=True)
    output.mkdir(parents=True, exist_ok=True)
    asked = {(name, family) for name in budgets for family in config.families}
    others = [row for key, row in kept.items() if key not in asked]  # earlier budgets and families stay listed
    rows = []
    for name, budget_ms in budgets.items():
        aim_ms = scale.scaled(budget_ms) if scale is not None else budget_ms
        for family in config.families:
            row = kept.get((name, family))
            if row is None:
                timer = timings.for_one_choice() if timings is not None else None
                row = choose_row(family, name, aim_ms, context, lut, timer, unmeasured, config, output)
                # the row keeps the budget as given, which names it beside the searched students of that budget
                row.update(latency_budget_ms=budget_ms, aimed_budget_ms=aim_ms if scale is not None else None)
            print(f"{name} {family}: {row['arch'] or '-'}  {row['note']}", flush=True)
            rows.append(row)
            write_rows(output, rows + others, run, config, scale)  # a choice is kept even if a later one is stopped
    rows += others
    export_missing(run, rows, output, options)
    for row in rows:
        if row["folder"] and (Path(row["folder"]) / "nasbert_export.json").exists():
            row["export_measured_ms"] = export_facts(row["folder"]).get("measured_latency_ms")
    write_rows(output, rows, run, config, scale)
    print(table(rows))
    return rows


def budget_scale(run: Run, config: BaselinesConfig, lut: LatencyTable, output: Path, kept: dict, timed: bool,
                 unmeasured: str) -> BudgetScale | None:
    """With --budget-teacher-ms, the teacher timed here (a resumed run reuses its first timing from `kept`, the
    baselines.json it left, so its kept and new choices aim at the same budgets); None without it. Refused where the
    kept choices were made with another --budget-teacher-ms, or where nothing is timed here."""
    then = (kept.get("options") or {}).get("budget_teacher_ms")
    if kept.get("baselines") and then != config.budget_teacher_ms:
        raise UserError(f"{output} holds choices made with --budget-teacher-ms {then}, not "
                        f"{config.budget_teacher_ms} as now; give the same, or another --output")
    if config.budget_teacher_ms is None:
        return None
    if kept.get("teacher_ms"):
        return BudgetScale(kept["teacher_ms"], config.budget_teacher_ms)
    if not timed:
        raise UserError(f"--budget-teacher-ms scales the budgets by the teacher timed here, and nothing is timed "
                        f"here: {unmeasured}")
    return BudgetScale(time_teacher(run.config.teacher, lut, config.min_run_time, config.rounds),
                       config.budget_teacher_ms)


def proposal_context(run: Run, config: BaselinesConfig, options: ExportOptions) -> ProposalContext:
    teacher = run.teacher

    @functools.cache
    def layer_scores() -> list[float]:  # only --depth-layers importance asks, once
        from nasbert.baselines.importance import layer_influence

        ids = run.dev_ids[: options.importance_batches * 8].to(run.device)
        return layer_influence(teacher, list(ids.split(8)))

    return ProposalContext(run.space, len(teacher.encoder_layers), teacher.layers_per_block, config.depth_layers,
                           layer_scores)


def choose_row(family: str, name: str, budget_ms: float, context: ProposalContext, lut: LatencyTable, timer,
               unmeasured: str, config: BaselinesConfig, output: Path) -> dict:
    """The row of one family under one budget: its chosen member (or, with --keep-closest, the closest one under
    the budget), or the sentence saying why none fits."""
    row = {"budget": name, "latency_budget_ms": budget_ms, "family": family, "arch": None, "init": None,
           "teacher_layers": None, "ffn_ratio": None, "predicted_ms": None, "measured_ms": None,
           "within_10_percent": False, "folder": None, "note": None}
    try:
        members = FAMILIES[family].propose(context)
    except NoMembers as error:
        return {**row, "note": f"no {family} student: {error}"}
    choice = choose(family, priced(members, lut), budget_ms, timer, config.measure_top, config.tightenings,
                    unmeasured)
    for grid in FAMILIES[family].refine(context) if FAMILIES[family].refine is not None else []:
        if choice.chosen is not None:
            break
        choice = refined_choice(family, choice, grid, lut, timer, unmeasured, config)
    picked = choice.chosen or (choice.closest if config.keep_closest and _under(choice) else None)
    row.update(within_10_percent=choice.chosen is not None, note=choice.note)
    if picked is not None:
        member = picked.member
        row.update(arch=str(member.arch), init=member.init, predicted_ms=round(picked.predicted_ms, 6),
                   measured_ms=None if picked.measured_ms is None else round(picked.measured_ms, 6),
                   teacher_layers=list(member.teacher_layers) if member.teacher_layers is not None else None,
                   ffn_ratio=member.ffn_ratio, folder=str(output / "students" / f"{family}-{name}"))
    return row


def priced(members: list[Member], lut: LatencyTable) -> list[Priced]:
    """Each member once, priced by the table: interpolated at widths between its own, scaled for a narrower FFN."""
    table = with_widths(lut, {b.width for m in members for b in m.arch})
    tables = {ratio: with_ffn_ratio(table, ratio) for ratio in {m.ffn_ratio for m in members} if ratio is not None}
    return list({m.label: Priced(m, tables.get(m.ffn_ratio, table).predict_ms(m.arch)) for m in members}.values())


def refined_choice(family: str, choice: Choice, members: list[Member], lut: LatencyTable, timer, unmeasured: str,
                   config: BaselinesConfig) -> Choice:
    """The choice among `members` (one of a family's finer grids) where none of the grids before it fits; else the
    choice so far, its sentence saying the finer grid was tried too. A grid none of whose members the table puts
    within reach of the budget is passed over in silence (it has nothing to time)."""
    grid_priced = priced(members, lut)
    reach = choice.budget_ms * (SLACK if timer is not None else 1.0)
    if not any(p.predicted_ms <= reach for p in grid_priced):
        return choice
    finer = choose(family, grid_priced, choice.budget_ms, timer, config.measure_top, config.tightenings, unmeasured)
    grid = grid_text(members, lut)
    if finer.chosen is not None:
        return replace(finer, note=f"{finer.note}; at {grid} (none at the space's own: {choice.note})")
    candidates = [c for c in (choice.closest, finer.closest) if c is not None]
    budget = choice.budget_ms  # the nearest under the budget first, as `choose` names its closest
    closest = min(candidates, key=lambda p: (p.latency_ms > budget, abs(p.latency_ms - budget)), default=None)
    return replace(choice, closest=closest, note=f"{choice.note}; nor at {grid}: {finer.note}")


def grid_text(members: list[Member], lut: LatencyTable) -> str:
    """How a sentence names a finer grid: its FFN ratios, else its widths off the space's."""
    ratios = sorted({m.ffn_ratio for m in members if m.ffn_ratio is not None}, reverse=True)
    if ratios:
        return f"FFN ratios {', '.join(map(str, ratios))} (below the space's {lut.space.ffn_ratio})"
    widths = sorted({b.width for m in members for b in m.arch} - set(lut.space.widths))
    return f"widths {', '.join(map(str, widths))} between the space's"


def _under(choice: Choice) -> bool:
    return choice.closest is not None and choice.closest.latency_ms <= choice.budget_ms


def export_missing(run: Run, rows: list[dict], output: Path, options: ExportOptions) -> None:
    """Export (and refine together) every chosen student whose folder is not there yet."""
    wanted = [row for row in rows if row["folder"]]
    missing = []
    for row in wanted:
        held = _student_in(Path(row["folder"]))
        chosen = f"{row['arch']}{ffn_suffix(row.get('ffn_ratio'))}"
        if held is None:
            missing.append(row)
        elif held != chosen:
            raise UserError(f"{row['folder']} holds {held}, not the chosen {chosen}; remove it to export the choice "
                            "again")
    if not missing:
        return
    names = [Path(row["folder"]).name for row in missing]
    if options.refine is not None:  # one refinement folder per set of students refined together
        suffix = "" if len(missing) == len(wanted) else "." + "+".join(names)
        refine = replace(options.refine, output=str(output / f"students.refine{suffix}"), resume=True)
        _refuse_changed(refine)
        options = replace(options, refine=refine)
    requests = [ExportRequest(Path(row["folder"]).name, Arch.parse(row["arch"]), init=row["init"],
                              teacher_layers=row["teacher_layers"], ffn_ratio=row.get("ffn_ratio"),
                              baseline={k: row[k] for k in ("family", "budget", "latency_budget_ms")})
                for row in missing]
    target = Path(missing[0]["folder"]) if len(missing) == 1 else output / "students"
    export_students(run, requests, target, options)


def _refuse_changed(refine: RefineConfig) -> None:
    saved = Path(refine.output) / "refine_config.json"
    if saved.is_file():
        changed = refine.changed_options(json.loads(saved.read_text()))
        if changed:
            raise UserError(f"{refine.output} holds a refinement started with other options ({', '.join(changed)});"
                            f" use the same options or remove it")


def _student_in(folder: Path) -> str | None:
    """The arch a student folder holds, with its FFN ratio where nasbert_export.json says it is not the space's."""
    config, facts = folder / "config.json", folder / "nasbert_export.json"
    if not config.is_file():
        return None
    arch = json.loads(config.read_text()).get("arch")
    ratio = json.loads(facts.read_text()).get("ffn_ratio") if facts.is_file() else None
    return f"{arch}{ffn_suffix(ratio)}"


def read_results(path: Path) -> dict:
    """A baselines.json's content ({} when there is none yet), its rows checked."""
    if not path.exists():
        return {}
    try:
        payload = json.loads(path.read_text())
        rows = payload["baselines"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        raise UserError(f"{path} is not a nasbert baselines.json; remove it or choose another --output") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and {"budget", "family"} <= set(r) for r in rows):
        raise UserError(f"{path} is not a nasbert baselines.json; remove it or choose another --output")
    return payload


def write_rows(output: Path, rows: list[dict], run: Run, config: BaselinesConfig,
               scale: BudgetScale | None = None) -> None:
    payload = {"run": str(run.path), "teacher": run.config.teacher, "lut": str(config.lut),
               "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "options": {k: v for k, v in asdict(config).items() if k not in ("run", "output")},
               "teacher_ms": scale and scale.teacher_ms, "baselines": rows}
    tmp = output / (RESULTS + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    tmp.rename(output / RESULTS)
    (output / "baselines.md").write_text(table(rows) + "\n")


def table(rows: list[dict]) -> str:
    lines = ["| budget | family | arch | init | predicted ms | measured ms | note |", "|" + " --- |" * 7]
    for r in rows:
        arch = f"`{r['arch']}`{ffn_suffix(r.get('ffn_ratio'))}" if r["arch"] else "-"
        aimed = f" (aimed at {r['aimed_budget_ms']:.3f} ms)" if r.get("aimed_budget_ms") else ""
        lines.append(f"| {r['budget']}{aimed} | {r['family']} | {arch} | "
                     f"{r['init'] or '-'}{' ' + str(r['teacher_layers']) if r['teacher_layers'] else ''} | "
                     f"{_ms(r['predicted_ms'])} | {_ms(r['measured_ms'])} | "
                     f"{r['note']} |")
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
