"""The baseline families: a registry of proposers, as `nasbert.finetune.distill.registry` holds the recipes.

A family proposes every member it has in a run's space (`Family.propose(context)`, a list of `Member`s); the
budget picks among them by the latency table's prediction and by measurement (`choose.py`); where none fits, a
family with `refine` proposes finer grids, tried in turn (the width family: widths between the space's, then
narrower FFNs). A new
family is one `register(Family(...))` in a module imported by `families.py`. Light: no torch (the command line
lists the families in `--help`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from nasbert.errors import UserError
from search_space import Arch, BlockArch, SearchSpace


@dataclass(frozen=True)
class Member:
    """One student of a family: its arch, how `nasbert export` initialises it, (depth) the teacher layers, and (a
    narrower FFN) its feed-forward ratio."""

    family: str
    arch: Arch
    init: str
    teacher_layers: tuple[int, ...] | None = None
    ffn_ratio: int | None = None  # None: the space's

    @property
    def label(self) -> str:
        """The arch, and the FFN ratio where it is not the space's: what a sentence names it by."""
        return f"{self.arch}{ffn_suffix(self.ffn_ratio)}"


def ffn_suffix(ffn_ratio: int | None) -> str:
    """' (FFN ratio N)' after an arch whose feed-forward is narrower than the space's; '' otherwise."""
    return "" if ffn_ratio is None else f" (FFN ratio {ffn_ratio})"


@dataclass
class ProposalContext:
    """What a family needs to know of the run: its space and teacher, and how the user asked to choose layers."""

    space: SearchSpace
    teacher_layers_count: int  # L, the teacher's encoder layers
    teacher_layers_per_block: int  # k: block n of the space stands for teacher layers n*k .. n*k+k-1
    depth_layers: str = "evenly"  # evenly | importance
    layer_scores: Callable[[], list[float]] | None = None  # per teacher layer, higher = keep (computed on demand)


class NoMembers(UserError):
    """The family has no member in this space; the message says why in one sentence."""


@dataclass(frozen=True)
class Family:
    name: str
    summary: str  # one line for --help
    propose: Callable[[ProposalContext], list[Member]]  # raises NoMembers
    # finer grids off the space's (widths between its widths, narrower FFNs), each tried in turn, and only when
    # none of the ones before it fits
    refine: Callable[[ProposalContext], list[list[Member]]] | None = None


FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    FAMILIES[family.name] = family
    return family


def pair_counts(space: SearchSpace) -> Iterator[tuple[int, ...]]:
    """Every depth per block: 1 .. layers_per_block // 2 pairs of M,F in each block (at least one: no block is
    empty in a NAS-BERT student)."""
    return itertools.product(range(1, space.layers_per_block // 2 + 1), repeat=space.num_blocks)


def pairs_arch(space: SearchSpace, width: int, counts: tuple[int, ...] | list[int]) -> Arch:
    """`width:M,F,...,I` in every block, counts[n] pairs of M,F in block n (BERT layers, post-LN)."""
    return Arch(tuple(BlockArch(width, ("M", "F") * c + ("I",) * (space.layers_per_block - 2 * c)) for c in counts))
