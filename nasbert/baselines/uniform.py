"""`uniform`: NAS-BERT's hand-designed baselines (BERT_x): M,F layers at one width, supernet weights
(`nasbert export --init supernet`). Every width of the space and every depth per block."""

from __future__ import annotations

from nasbert.baselines.registry import Family, Member, ProposalContext, pair_counts, pairs_arch, register
from search_space import Arch, SearchSpace


def uniform_archs(space: SearchSpace) -> list[Arch]:
    """Every uniform student of the space: one width, 1 .. layers_per_block // 2 pairs of M,F in each block."""
    return [pairs_arch(space, w, counts) for w in space.widths for counts in pair_counts(space)]


def propose(context: ProposalContext) -> list[Member]:
    return [Member("uniform", arch, "supernet") for arch in uniform_archs(context.space)]


register(Family("uniform", "M,F layers at one width with the supernet's weights (NAS-BERT's baselines)", propose))
