"""`width`: the width-pruned teacher (ETD-Impt; Minitron's width pruning). Every width of the space below the
teacher's, the same width in every block, any depth per block; heads, FFN neurons and hidden dimensions kept by
importance (`nasbert export --init etd-impt`: each student layer starts from its mapped teacher layer). Where no
member at the space's widths fits a budget, the grid is refined: every multiple of the head dim between the space's
smallest width and the teacher's (the teacher keeps any number of its heads; no supernet weights are needed)."""

from __future__ import annotations

from nasbert.baselines.registry import Family, Member, NoMembers, ProposalContext, pair_counts, pairs_arch, register


def propose(context: ProposalContext) -> list[Member]:
    space = context.space
    widths = [w for w in space.widths if w < space.hidden_size]
    if not widths:
        raise NoMembers(f"the space has no width below the teacher's {space.hidden_size}; a width-pruned teacher "
                        "needs one: train the supernet with --widths")
    return [Member("width", pairs_arch(space, w, counts), "etd-impt") for w in widths for counts in pair_counts(space)]


def refine(context: ProposalContext) -> list[Member]:
    space = context.space
    widths = [w for w in range(space.widths[0] + space.head_dim, space.hidden_size, space.head_dim)
              if w not in space.widths]
    return [Member("width", pairs_arch(space, w, counts), "etd-impt") for w in widths for counts in pair_counts(space)]


register(Family("width", "the teacher pruned to one narrower width (heads, neurons, dims by importance: ETD-Impt), "
                "any depth per block; where none fits, widths between the space's", propose, refine))
