"""`width`: the width-pruned teacher (ETD-Impt; Minitron's width pruning). Every width of the space below the
teacher's, the same width in every block, any depth per block; heads, FFN neurons and hidden dimensions kept by
importance (`nasbert export --init etd-impt`: each student layer starts from its mapped teacher layer). Where no
member at the space's widths fits a budget, the grid is refined, as the teacher keeps any number of its heads and
neurons and no supernet weights are needed: first every multiple of the head dim between the space's smallest width
and the teacher's; then, where none of those fits either, every such width with a narrower feed-forward (inner
ratio * width for each ratio below the space's: the most important neurons kept, as Minitron prunes the MLP)."""

from __future__ import annotations

from nasbert.baselines.registry import Family, Member, NoMembers, ProposalContext, pair_counts, pairs_arch, register


def propose(context: ProposalContext) -> list[Member]:
    space = context.space
    widths = [w for w in space.widths if w < space.hidden_size]
    if not widths:
        raise NoMembers(f"the space has no width below the teacher's {space.hidden_size}; a width-pruned teacher "
                        "needs one: train the supernet with --widths")
    return [Member("width", pairs_arch(space, w, counts), "etd-impt") for w in widths for counts in pair_counts(space)]


def refine(context: ProposalContext) -> list[list[Member]]:
    space = context.space
    every = range(space.widths[0], space.hidden_size, space.head_dim)
    between = [Member("width", pairs_arch(space, w, counts), "etd-impt") for w in every if w not in space.widths
               for counts in pair_counts(space)]
    narrower = [Member("width", pairs_arch(space, w, counts), "etd-impt", ffn_ratio=ratio)
                for ratio in range(space.ffn_ratio - 1, 0, -1) for w in every for counts in pair_counts(space)]
    return [grid for grid in (between, narrower) if grid]


register(Family("width", "the teacher pruned to one narrower width (heads, neurons, dims by importance: ETD-Impt), "
                "any depth per block; where none fits, widths between the space's, then narrower FFNs", propose,
                refine))
