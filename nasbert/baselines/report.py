"""The comparison's report: compare.json, compare.md (one row per model) and compare.png (task score against
measured latency, every family and the teacher on one plot, a dotted line at every budget)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import TYPE_CHECKING

from nasbert.baselines.choose import WINDOW
from nasbert.baselines.margins import CONFIDENCE, budget_margins, interval_text
from nasbert.errors import UserError
from nasbert.finetune.metrics import stall_note

if TYPE_CHECKING:
    from nasbert.baselines.budgets import BudgetScale
    from nasbert.baselines.compare import Compared
    from nasbert.baselines.config import CompareConfig

FAMILY_ORDER = ("teacher", "searched", "depth", "width", "uniform", "student")
MARKERS = {"teacher": "s", "searched": "*", "depth": "v", "width": "D", "uniform": "o", "student": "P"}


def run_settings(out: Path) -> dict:
    """{"model", "metric", "options", "text_columns"} of a finished fine-tune (finetune_args.json) or distillation
    (distill_args.json); "options" holds every option it ran with, "text_columns" the columns it read (the ones
    it detected where the option was left unset)."""
    for name in ("finetune_args.json", "distill_args.json"):
        path = out / name
        if path.is_file():
            data = json.loads(path.read_text())
            options = data.get("options") or data
            return {"model": options.get("model"), "metric": data.get("metric"), "options": options,
                    "text_columns": options.get("text_columns") or data.get("text_columns")}
    return {}


def score(out: Path, results: dict, metric: str | None) -> tuple[float, str]:
    """(the run's dev score, the metric it is in) from its eval_results.json `results`: `metric`, else the one the
    run chose."""
    metric = metric or run_settings(out).get("metric") or ("accuracy" if "eval_accuracy" in results else "pearson")
    if f"eval_{metric}" not in results:
        raise UserError(f"{out}/eval_results.json has no {metric}; the runs compared must be of one task")
    return float(results[f"eval_{metric}"]), metric


def stalled(results: dict) -> bool | None:
    """Whether a run (its eval_results.json `results`) scored no better on the dev rows than a constant prediction
    of its training labels (`stall_note`); None for a run that predates those figures."""
    if "eval_constant_mse" not in results and "eval_majority_accuracy" not in results:
        return None
    return stall_note(results) is not None


def stall_text(row: dict) -> str:
    """' (stalled: 2 of 3)' for a compare.json row with stalled seeds, else ''."""
    return f" (stalled: {row['stalled']} of {len(row['scores'])})" if row.get("stalled") else ""


def write_report(output: Path, models: list[Compared], latency: dict, runs: dict[str, list[Path]],
                 config: CompareConfig, task: dict, teacher_given: bool = False, held_out: dict | None = None,
                 scale: BudgetScale | None = None) -> dict:
    """Write compare.json, compare.md and compare.png; return compare.json's content. `held_out` ({"rows",
    "metric", "means"}) adds each student's held-out mean and, per budget, the searched student it picks; `scale`
    each budget's scaled value (`judged_budget_ms`), which its models' shares are of."""
    metric = None
    rows = []
    for model in models:
        scores, stalls = [], []
        for out in runs[model.name]:
            results = json.loads((out / "eval_results.json").read_text())
            value, metric = score(out, results, metric)
            scores.append(value)
            stalls.append(stalled(results))
        rows.append({"name": model.name, "family": model.family, "budget": model.budget,
                     "latency_budget_ms": model.budget_ms, "folder": model.folder,
                     "judged_budget_ms": scale.scaled(model.budget_ms) if scale and model.budget_ms else None,
                     "measured_ms": latency["ms"][model.name], "scores": scores,
                     "mean": statistics.mean(scores), "min": min(scores), "max": max(scores),
                     "stalled": sum(bool(x) for x in stalls) if any(x is not None for x in stalls) else None})
        if held_out is not None and model.name in held_out["means"]:  # students only
            rows[-1]["held_out"] = held_out["means"][model.name]
            if "lr" in held_out:  # --lr-grid: the lr its runs were fine-tuned at, and every lr's held-out mean
                rows[-1]["lr"] = held_out["lr"][model.name]
                rows[-1]["held_out_by_lr"] = held_out["by_lr"][model.name]
    if held_out is not None:
        mark_picks(rows)
    rows.sort(key=lambda r: (-(r["latency_budget_ms"] or float("inf")), _family_rank(r["family"]), r["name"]))
    payload = {"metric": metric, "task": task,
               "held_out": held_out and {"rows": held_out["rows"], "metric": held_out["metric"],
                                         "lr_grid": config.lr_grid},
               "recipe": config.recipe or "finetune", "seeds": config.seeds, "teacher_given": teacher_given,
               "latency_conditions": latency["conditions"], "latency_note": latency["note"],
               "budget_scale": scale and {"teacher_ms": scale.teacher_ms, "set_at_ms": scale.set_at_ms,
                                          "text": scale.text()}, "models": rows,
               "margins": budget_margins(rows)}
    (output / "compare.json").write_text(json.dumps(payload, indent=1))
    text = markdown(payload)
    (output / "compare.md").write_text(text + "\n")
    print("\n" + text)
    plot(payload, output / "compare.png")
    print(f"wrote {output / 'compare.json'}, {output / 'compare.md'}, {output / 'compare.png'}")
    return payload


def mark_picks(rows: list[dict]) -> None:
    """rows[i]["picked"] = True for the searched student of each budget with the best held-out score (where a
    budget has several searched students: the search's leaders, or one arch with several inits)."""
    budgets = {r["budget"] for r in rows if r["family"] == "searched"}
    for budget in budgets:
        searched = [r for r in rows if r["family"] == "searched" and r["budget"] == budget]
        if len(searched) > 1:
            max(searched, key=lambda r: r["held_out"])["picked"] = True


def share_text(row: dict) -> str:
    """A model's measured share of its budget (scaled, where the comparison scales budgets) as " (0.96 x)", with
    ", over" above the budget and ", under" below the 10 % window (such a model is not at equal latency with the
    others of its budget); "" without a budget."""
    budget_ms = row.get("judged_budget_ms") or row["latency_budget_ms"]
    if not budget_ms:
        return ""
    share = row["measured_ms"] / budget_ms
    where = ", over" if share > 1.0 else ", under" if share < WINDOW else ""
    return f" ({share:.2f} x{where})"


def _family_rank(family: str) -> int:
    return FAMILY_ORDER.index(family) if family in FAMILY_ORDER else len(FAMILY_ORDER)


def markdown(payload: dict) -> str:
    c = payload["latency_conditions"]
    how = "fine-tuned" if payload["recipe"] == "finetune" else f"distilled with {payload['recipe']}"
    held_out = payload.get("held_out")
    lines = [f"{payload['metric']} on the dev set, mean [min, max] of {payload['seeds']} seed(s), students {how}; "
             f"latency measured side by side on {c.get('device_name', c['device'])}, {c['threads']} thread(s), batch "
             f"{c['batch_size']} x {c['seq_len']} tokens ({payload['latency_note']})"
             + (f"; {payload['budget_scale']['text']} (x budget: of the scaled one)" if payload.get("budget_scale")
                else ""), "",
             f"| model | family | budget | measured ms (x budget) | {payload['metric']} mean [min, max] |"
             + (f" held-out {held_out['metric']} |" if held_out else ""),
             "| --- | --- | --- | --- | --- |" + (" --- |" if held_out else "")]
    for r in payload["models"]:
        budget = f"{r['latency_budget_ms']:.3f} ms" if r["latency_budget_ms"] else "-"
        if r.get("judged_budget_ms"):
            budget += f" ({r['judged_budget_ms']:.3f} here)"
        spread = f" [{r['min']:.4f}, {r['max']:.4f}]" if len(r["scores"]) > 1 else ""
        name = f"{r['name']} (picked)" if r.get("picked") else r["name"]
        line = (f"| {name} | {r['family']} | {budget} | {r['measured_ms']:.3f}{share_text(r)} | "
                f"{r['mean']:.4f}{spread}{stall_text(r)} |")
        if held_out:
            lr = f" (lr {r['lr']:g})" if r.get("lr") is not None else ""
            line += f" {r['held_out']:.4f}{lr} |" if r.get("held_out") is not None else " - |"
        lines.append(line)
    if held_out:
        lines += ["", f"held-out: per seed, {held_out['rows']} training rows that seed's fine-tunes did not draw; "
                      "(picked): the searched student of its budget that scores best on them (mean over seeds), "
                      "chosen without the dev set"
                      + ("; (lr X): each student's learning rate, the one of the grid it scores best on them at"
                         if held_out.get("lr_grid") else "")]
    if any(r.get("stalled") for r in payload["models"]):
        lines += ["", "(stalled: k of n): k of the model's n fine-tunes scored no better on the dev set than always "
                      "predicting their training labels' mean (regression) or the dev set's most common class: its "
                      "score there ranks a failed fine-tune, not the model"]
    if payload.get("margins"):
        lines += ["", f"margin over the best baseline family of its budget, mean difference [{CONFIDENCE:.0%} "
                      "interval over seeds, Welch]:", "",
                  "| budget | searched | best family | margin [interval] |", "| --- | --- | --- | --- |"]
        lines += [f"| {m['budget_ms']:.3f} ms | {m['searched']} | {m['family']}: {m['baseline']} | "
                  f"{interval_text(m)} |" for m in payload["margins"]]
    return "\n".join(lines)


def plot(payload: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    families = sorted({r["family"] for r in payload["models"]}, key=_family_rank)
    for family in families:
        rows = [r for r in payload["models"] if r["family"] == family]
        axes.errorbar([r["measured_ms"] for r in rows], [r["mean"] for r in rows],
                      yerr=[[r["mean"] - r["min"] for r in rows], [r["max"] - r["mean"] for r in rows]],
                      fmt=MARKERS.get(family, "x"), ms=11 if family == "searched" else 7, capsize=3, label=family)
        for r in rows:
            axes.annotate(r["name"], (r["measured_ms"], r["mean"]), fontsize=6, xytext=(4, 4),
                          textcoords="offset points")
    for budget in sorted({r.get("judged_budget_ms") or r["latency_budget_ms"] for r in payload["models"]
                          if r["latency_budget_ms"]}):
        axes.axvline(budget, ls=":", c="0.6")
    axes.set_xlabel(f"measured latency, batch {payload['latency_conditions']['batch_size']} x "
                    f"{payload['latency_conditions']['seq_len']} (ms)")
    axes.set_ylabel(f"dev {payload['metric']} (mean, range over seeds)")
    axes.set_title("task score against measured latency (dotted: budgets)")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
