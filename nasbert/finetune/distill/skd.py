"""`skd`: SKDBERT's stochastic knowledge distillation (Ding et al., AAAI 2023) from a teacher team.

The team is `--teacher` and the `--team` folders, every one fine-tuned on the task (same vocabulary, same
labels; e.g. the teacher and larger or smaller students fine-tuned with `nasbert finetune`). At each
optimizer step one member k is drawn from p(k) and the step is plain logit KD from it,
(1 - alpha) CE + alpha T^2 KL; only the drawn teacher runs. p(k) (`--skd-sampling`):

    uniform       1 / K
    teacher-rank  by the members' own dev score (the metric of the task)
    student-rank  by the dev score the student reaches after --skd-probe-steps steps of KD from each member
    explicit      --skd-probs, one weight per member (normalised)

SKDBERT's rank formulas were not retrievable; chosen here: linear rank weights, p(k) = (K + 1 - rank_k) /
sum, rank 1 the best (ties broken by team order), so the best member is drawn K times as often as the worst.
The draw of step n comes from numpy's PCG64 seeded with (--seed, n): the sequence depends on the seed alone,
and a resumed run draws the same teachers; it is written to skd_teachers.json (and counted in stages.json).
Defaults: alpha 0.5, T 1 (SKDBERT distils logits one to one; their weights were not given).
"""

from __future__ import annotations

from collections.abc import Sequence

from nasbert.errors import UserError
from nasbert.finetune.distill.registry import Recipe, Stage, StudentShape, register_recipe

SAMPLINGS = ("uniform", "teacher-rank", "student-rank", "explicit")


def skd_stages(config, shape: StudentShape) -> list[Stage]:
    alpha = config.kd_alpha
    return [Stage("skd", {"hard": 1 - alpha, "soft": alpha}, teacher="team", evaluate=True)]


SKD = register_recipe(Recipe("skd", "SKDBERT: one teacher of a team (--team) drawn per step (uniform, teacher-rank, "
                             "student-rank or explicit probabilities), then logit KD", skd_stages,
                             {"kd_alpha": 0.5, "kd_temperature": 1.0}))


def rank_probabilities(scores: Sequence[float]) -> list[float]:
    """Linear rank weights: the best score gets K, the worst 1, normalised (ties: the earlier member first)."""
    k = len(scores)
    order = sorted(range(k), key=lambda i: (-scores[i], i))
    weights = [0.0] * k
    for rank, member in enumerate(order, start=1):
        weights[member] = float(k + 1 - rank)
    total = sum(weights)
    return [w / total for w in weights]


def explicit_probabilities(weights: Sequence[float] | None, members: int) -> list[float]:
    """--skd-probs normalised; one per member, none negative, not all zero (else a UserError)."""
    if weights is None or len(weights) != members:
        given = 0 if weights is None else len(weights)
        raise UserError(f"--skd-sampling explicit needs --skd-probs with one weight per team member ({members}: "
                        f"--teacher and each --team folder), got {given}")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise UserError("--skd-probs must be non-negative and not all zero")
    return [w / sum(weights) for w in weights]


def sampled_teacher(probabilities: Sequence[float], seed: int, step: int) -> int:
    """The member drawn at optimizer step `step`: a function of (seed, step) alone."""
    import numpy as np

    u = np.random.default_rng([seed, step]).random()
    cumulative = np.cumsum(probabilities)
    return int(min(np.searchsorted(cumulative, u * cumulative[-1], side="right"), len(probabilities) - 1))


def teacher_sequence(probabilities: Sequence[float], seed: int, steps: int) -> list[int]:
    """The members drawn at steps 0 .. steps-1."""
    return [sampled_teacher(probabilities, seed, step) for step in range(steps)]
