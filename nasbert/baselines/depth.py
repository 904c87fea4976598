"""`depth`: the depth-pruned teacher (DistilBERT: keep every other layer). d of the teacher's L layers at the
teacher's width with its own weights (`nasbert export --init teacher-layers`: each kept layer is one M,F pair of
the student, copied whole), for every d from one layer per block to L - 1.

Which layers: evenly spaced (`floor(i * L / d)`, i < d: L = 6, d = 3 keeps 0, 2, 4 as DistilBERT does), or with
`--depth-layers importance` the d that change their input most (ShortGPT's block influence, `importance.py`),
at least one in every block (a student block needs one op).
"""

from __future__ import annotations

from nasbert.baselines.registry import Family, Member, NoMembers, ProposalContext, pairs_arch, register


def evenly_spaced(total: int, kept: int) -> list[int]:
    """kept of `total` layers, evenly spaced from the first: floor(i * total / kept)."""
    return [i * total // kept for i in range(kept)]


def layers_per_student_block(layers: list[int], per_block: int, blocks: int) -> list[int]:
    """How many of the kept teacher `layers` fall in each student block's share (per_block teacher layers each)."""
    return [sum(n * per_block <= t < (n + 1) * per_block for t in layers) for n in range(blocks)]


def by_importance(scores: list[float], kept: int, per_block: int) -> list[int]:
    """The `kept` highest-scoring layers, the best of every block of `per_block` layers among them."""
    blocks = range(0, len(scores), per_block)
    chosen = {max(range(b, b + per_block), key=lambda t: scores[t]) for b in blocks}
    rest = sorted(set(range(len(scores))) - chosen, key=lambda t: -scores[t])
    return sorted(chosen | set(rest[: kept - len(chosen)]))


def propose(context: ProposalContext) -> list[Member]:
    space, hidden = context.space, context.space.hidden_size
    if hidden not in space.widths:
        raise NoMembers(f"the space has no block of the teacher's width {hidden} (its widths are "
                        f"{', '.join(map(str, space.widths))}); a depth-pruned teacher needs it: train the supernet "
                        f"with --widths ... {hidden}")
    total, per_block = context.teacher_layers_count, context.teacher_layers_per_block
    members = []
    for kept in range(space.num_blocks, total):
        layers = (evenly_spaced(total, kept) if context.depth_layers == "evenly"
                  else by_importance(context.layer_scores(), kept, per_block))
        counts = layers_per_student_block(layers, per_block, space.num_blocks)
        if max(counts) <= space.layers_per_block // 2:
            members.append(Member("depth", pairs_arch(space, hidden, counts), "teacher-layers", tuple(layers)))
    if not members:
        raise NoMembers(f"the teacher's {total} layers leave no depth-pruned student with one layer per block "
                        f"({space.num_blocks} blocks)")
    return members


register(Family("depth", "d of the teacher's layers at its width and weights (DistilBERT-style; evenly spaced or "
                "by importance)", propose))
