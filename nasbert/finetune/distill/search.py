"""`nasbert layer-map-search`: a genetic search over student -> teacher layer maps (Jiao et al., "Improving
Task-Agnostic BERT Distillation with Layer Mapping Search", 2021), scored by a short proxy distillation.

    nasbert layer-map-search students/s8 --teacher ft/teacher --train-file sst2/train.tsv \\
        --validation-file sst2/dev.tsv --output runs/s8-map
    nasbert distill students/s8 ... --recipe tinybert --layer-map runs/s8-map      # uses the best map

A candidate gives every student layer s a teacher layer g[s] (the map `s0:t{g0},s1:t{g1},..`). Its fitness is
the proxy: from the same student and seed, --proxy-steps of latent distillation with the map (hidden-state MSE
through learned projections + attention-score MSE, TinyBERT's intermediate loss) on --proxy-train-samples
training rows, then --proxy-steps of logit KD, then the dev score (the task metric) on --proxy-eval-samples rows.

The GA (the paper gives no population, generations or operators; chosen here): the first population holds the
`uniform` and `top` maps and random ones; each generation keeps the 2 best (elitism), fills up with children of
tournament-selected parents (tournaments of 2), uniform crossover per gene, and mutation redrawing each gene with
probability --mutation-rate (default 1 / student layers); a map is scored once (a cache). numpy's PCG64 seeded
with --seed drives it. After every generation OUTPUT/state.json holds the next population, the RNG state, the
cache and the trajectory, so `--resume` continues exactly; OUTPUT/layer_map_search.json holds the trajectory and
the best map, OUTPUT/trajectory.png the best and mean score per generation.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nasbert.errors import UserError
from nasbert.finetune.distill.layer_map import format_layer_map, named_layer_map, parse_layer_map

Genes = tuple[int, ...]
ELITES, TOURNAMENT = 2, 2


def genes_to_map(genes: Sequence[int]) -> str:
    return format_layer_map(list(enumerate(genes)))


def genetic_search(fitness: Callable[[str], float], student_layers: int, teacher_layers: int, *, population: int,
                   generations: int, seed: int, mutation_rate: float | None = None, state_file: Path | None = None,
                   initial: Sequence[Genes] = (), log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Maximise `fitness(map text)` over maps; returns {"best": {layer_map, score}, "trajectory", "evaluated"}.

    With `state_file`, the state after each generation is written there and an existing one is continued.
    """
    import numpy as np

    rate = mutation_rate if mutation_rate is not None else 1 / student_layers
    space = teacher_layers ** student_layers
    rng = np.random.default_rng(seed)
    state = json.loads(state_file.read_text()) if state_file is not None and state_file.is_file() else None
    if state is not None:
        rng.bit_generator.state = state["rng"]
        pool = [tuple(g) for g in state["population"]]
        cache, trajectory, start = state["cache"], state["trajectory"], state["generation"]
    else:
        pool = list(dict.fromkeys(tuple(g) for g in initial))[:population]
        while len(pool) < min(population, space):
            genes = tuple(int(x) for x in rng.integers(0, teacher_layers, student_layers))
            if genes not in pool:
                pool.append(genes)
        cache, trajectory, start = {}, [], 0

    for generation in range(start, generations):
        scores = []
        for genes in pool:
            key = genes_to_map(genes)
            if key not in cache:
                cache[key] = float(fitness(key))
            scores.append(cache[key])
        best_key = max(cache, key=lambda k: (cache[k], -list(cache).index(k)))  # ties: the first scored
        trajectory.append({"generation": generation, "best_score": cache[best_key], "best_layer_map": best_key,
                           "population_best": max(scores), "population_mean": sum(scores) / len(scores),
                           "evaluated": len(cache)})
        if log is not None:
            log(f"generation {generation}: best {cache[best_key]:.4f} ({best_key}), this population's mean "
                f"{trajectory[-1]['population_mean']:.4f}, {len(cache)} maps scored")
        pool = _next_population(pool, scores, rng, population, teacher_layers, rate, space)
        if state_file is not None:
            state = {"generation": generation + 1, "population": [list(g) for g in pool], "cache": cache,
                     "trajectory": trajectory, "rng": rng.bit_generator.state}
            state_file.with_suffix(".new").write_text(json.dumps(state, indent=1) + "\n")
            state_file.with_suffix(".new").replace(state_file)
    best_key = max(cache, key=lambda k: (cache[k], -list(cache).index(k)))
    return {"best": {"layer_map": best_key, "score": cache[best_key]}, "trajectory": trajectory, "evaluated": cache}


def _next_population(pool: list[Genes], scores: list[float], rng, size: int, teacher_layers: int, rate: float,
                     space: int) -> list[Genes]:
    """Elites, then children of tournament winners: uniform crossover, then mutation; no map twice."""
    ranked = sorted(range(len(pool)), key=lambda i: -scores[i])
    children = [pool[i] for i in ranked[:ELITES]]

    def parent() -> Genes:
        entrants = rng.choice(len(pool), size=min(TOURNAMENT, len(pool)), replace=False)
        return pool[max(entrants, key=lambda i: scores[i])]

    for _ in range(100 * size):
        if len(children) >= min(size, space):
            break
        a, b = parent(), parent()
        take = rng.random(len(a)) < 0.5
        child = [x if t else y for x, y, t in zip(a, b, take)]
        redraw = rng.random(len(child)) < rate
        child = tuple(int(rng.integers(0, teacher_layers)) if r else int(g) for g, r in zip(child, redraw))
        if child not in children:
            children.append(child)
    return children


def plot_trajectory(trajectory: list[dict[str, Any]], path: Path, metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    generations = [t["generation"] for t in trajectory]
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.plot(generations, [t["best_score"] for t in trajectory], marker="o", label="best so far")
    axis.plot(generations, [t["population_mean"] for t in trajectory], marker=".", label="population mean")
    axis.set_xlabel("generation")
    axis.set_ylabel(f"proxy dev {metric}")
    axis.set_title(f"layer-map search: best {trajectory[-1]['best_layer_map']}", fontsize=9)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


# ---- the command ---------------------------------------------------------------------------------------------


def layer_map_search(config) -> dict[str, Any]:
    """Run the search of `config` (a LayerMapSearchConfig) into its output folder; return the result."""
    import copy
    import shutil

    from torch import nn

    from nasbert.common.lock import folder_lock, other_entries
    from nasbert.finetune.distill.job import load_job
    from nasbert.finetune.distill.registry import Recipe, Stage
    from nasbert.finetune.distill.run import evaluate_model, run_stage
    from nasbert.finetune.trainer import check_config

    checks = [(config.population >= 2, "--population must be at least 2"),
              (config.generations >= 1, "--generations must be at least 1"),
              (config.proxy_steps >= 1, "--proxy-steps must be positive"),
              (config.mutation_rate is None or 0 <= config.mutation_rate <= 1, "--mutation-rate must be in [0, 1]")]
    for ok, message in checks:
        if not ok:
            raise UserError(message)
    if config.teacher is None:
        raise UserError("--teacher is required: the proxy distils from a teacher fine-tuned on the task")
    alpha = 0.5 if config.kd_alpha is None else config.kd_alpha
    config = dataclasses.replace(config, kd_alpha=alpha, kd_temperature=config.kd_temperature or 1.0,
                                 layer_map="uniform", max_train_samples=config.proxy_train_samples,
                                 max_eval_samples=config.proxy_eval_samples, report_to="none")
    check_config(config)
    stages = [Stage("proxy-latent", {"hidden_mse": 1.0, "attention_mse": 1.0}),
              Stage("proxy-prediction", {"soft": alpha, "hard": 1 - alpha})]
    recipe = Recipe("layer-map-proxy", "the search's proxy", lambda c, shape: stages)
    model = Path(config.model)
    output = Path(config.output) if config.output else model.with_name(model.name + "-layer-map-search")
    state_file, result_file = output / "state.json", output / "layer_map_search.json"
    if state_file.is_file() and not config.resume:
        raise UserError(f"{output} holds a layer-map search; continue it with --resume, or remove it")
    if not state_file.is_file() and other_entries(output):
        raise UserError(f"output folder {output} already exists and is not empty; remove it or pick another --output")
    main = int(os.environ.get("RANK", "0")) == 0
    with folder_lock(output, "layer-map-search", enabled=main):
        job = load_job(config, recipe)
        m, n = job.student_view.num_layers, job.teachers["task"][0][1].num_layers
        settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("resume", "generations")}
        settings_file = output / "search_args.json"
        if state_file.is_file() and json.loads(settings_file.read_text()) != json.loads(json.dumps(settings)):
            raise UserError(f"--resume with other options than the search in {output}; use the same options "
                            "(only --generations may grow)")
        settings_file.write_text(json.dumps(settings, indent=2) + "\n")
        start, work = job.student, output / "proxy"

        def fitness(layer_map: str) -> float:
            job.pairs, job.projections = parse_layer_map(layer_map), nn.ModuleDict()
            job.set_student(copy.deepcopy(start))
            try:
                for index, stage in enumerate(stages):
                    run_stage(job, stage, index, work=work, max_steps=config.proxy_steps, report=False)
                return evaluate_model(job, job.student)
            finally:
                shutil.rmtree(work, ignore_errors=True)

        initial = [tuple(t for _, t in named_layer_map(name, m, n)) for name in ("uniform", "top") if n >= m]
        print(f"layer-map search: a {m}-layer student, a {n}-layer teacher ({n ** m:,} maps), population "
              f"{config.population}, {config.generations} generations, proxy: {config.proxy_steps} + "
              f"{config.proxy_steps} steps on {len(job.train['task']):,} rows, scored by dev {job.metric}")
        result = genetic_search(fitness, m, n, population=config.population, generations=config.generations,
                                seed=config.seed, mutation_rate=config.mutation_rate, state_file=state_file,
                                initial=initial, log=print)
        result = {"student_layers": m, "teacher_layers": n, "metric": job.metric, **result}
        result_file.write_text(json.dumps(result, indent=2) + "\n")
        plot_trajectory(result["trajectory"], output / "trajectory.png", job.metric)
        print(f"best map {result['best']['layer_map']} (proxy dev {job.metric} {result['best']['score']:.4f}); "
              f"use it with: nasbert distill ... --layer-map {output}")
        print(f"wrote {output}")
        return result
