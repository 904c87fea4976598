"""The NAS-BERT search space: what can be built, how many there are, and what each costs.

Defaults are the paper's (4 blocks x 6 layers, widths 128..512, head dim 64, FFN x4, kernels 3/5/7);
every number is configurable. Costs are computed from the spec and equal the built student's exactly:

    params(student) = embeddings            vocab*E + max_pos*E + type_vocab*E + 2E
                    + embedding projection  E*w_1 + w_1
                    + fused projections     sum_n (w_{n-1}*w_n + w_n)           n = 2..N
                    + layers                sum of OpSpec.params over non-identity layers
                    + output projection     w_N*H + H                          H = hidden_size (the teacher's)
                    (+ pooler               H*H + H)
    flops(student)  = 2 * seq_len * (E*w_1 + sum w_{n-1}*w_n + w_N*H) + sum of OpSpec.flops   (batch 1)
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from search_space.arch import Arch, ArchError, BlockArch
from search_space.ops import FAMILIES, IDENTITY_NAME, get_op


@dataclass(frozen=True)
class SearchSpace:
    """Every number of the space. `hidden_size` and `vocab_size` are the teacher's."""

    num_blocks: int = 4
    layers_per_block: int = 6
    widths: tuple[int, ...] = (128, 192, 256, 384, 512)
    head_dim: int = 64
    ffn_ratio: int = 4
    kernels: tuple[int, ...] = (3, 5, 7)
    families: tuple[str, ...] = ("M", "F", "S")  # op families (search_space.ops.FAMILIES); S takes the kernels
    hidden_size: int = 768
    vocab_size: int = 30522
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    embedding_size: int | None = None  # None: the teacher's hidden size
    seq_len: int = 128  # the sequence length FLOPs are counted at
    _ops: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(sorted(int(w) for w in self.widths)))
        object.__setattr__(self, "kernels", tuple(int(k) for k in self.kernels))
        object.__setattr__(self, "families", tuple(self.families))
        for name in ("num_blocks", "layers_per_block", "head_dim", "ffn_ratio", "hidden_size", "vocab_size",
                     "max_position_embeddings", "seq_len"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"search space {name} must be positive, got {getattr(self, name)}")
        if not self.widths:
            raise ValueError("search space needs at least one width")
        for w in self.widths:
            if w <= 0 or w % self.head_dim:
                raise ValueError(f"width {w} is not a positive multiple of the head dim {self.head_dim}")
        for k in self.kernels:
            if k <= 0 or k % 2 == 0:
                raise ValueError(f"kernel {k} must be a positive odd number (convolutions keep the length)")
        for family in self.families:
            if family not in FAMILIES or family == IDENTITY_NAME:
                known = [f for f in FAMILIES if f != IDENTITY_NAME]
                raise ValueError(f"op family {family!r} is not registered; known families are {known}")
        ops = tuple(op for family in self.families for op in FAMILIES[family].op_names(self.kernels))
        for op in ops:
            get_op(op)  # registers S<k> for this space's kernels
        object.__setattr__(self, "_ops", ops)

    # ---- construction -------------------------------------------------------------------------------

    @classmethod
    def tiny(cls, **overrides: Any) -> SearchSpace:
        """A space small enough for tests: hidden 32, 2 blocks x 4 layers, widths 16/32."""
        values = dict(num_blocks=2, layers_per_block=4, widths=(16, 32), head_dim=8, kernels=(3, 5),
                      hidden_size=32, vocab_size=99, max_position_embeddings=64, seq_len=16)
        values.update(overrides)
        return cls(**values)

    def with_widths(self, widths: Iterable[int]) -> SearchSpace:
        """This space with more widths (each a multiple of the head dim): the grid refined for students that start
        from the teacher, which keeps any number of its heads (the supernet trained only the space's own widths)."""
        return replace(self, widths=tuple(sorted(set(self.widths) | {int(w) for w in widths})))

    def with_ffn_ratio(self, ffn_ratio: int) -> SearchSpace:
        """This space with another feed-forward ratio (inner ffn_ratio * width): the width family's narrower FFNs,
        for students that start from the teacher (they keep its most important neurons; the supernet trained one
        ratio)."""
        return replace(self, ffn_ratio=int(ffn_ratio))

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("_ops", None)
        data["widths"] = list(self.widths)
        data["kernels"] = list(self.kernels)
        data["families"] = list(self.families)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SearchSpace:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    # ---- what is in the space -------------------------------------------------------------------------

    @property
    def ops(self) -> tuple[str, ...]:
        """Non-identity op names, e.g. ('M', 'F', 'S3', 'S5', 'S7')."""
        return self._ops

    @property
    def embedding_dim(self) -> int:
        return self.embedding_size or self.hidden_size

    @property
    def max_width(self) -> int:
        return self.widths[-1]

    def num_block_candidates(self) -> int:
        """Per block: widths x (ops^1 + ... + ops^L), identities only at the end."""
        n_ops = len(self.ops)
        return len(self.widths) * sum(n_ops**depth for depth in range(1, self.layers_per_block + 1))

    def block_candidates(self, width: int | None = None) -> Iterator[BlockArch]:
        """Every block candidate (of one width, or of all), deepest-first within a width."""
        widths = self.widths if width is None else (width,)
        for w in widths:
            for depth in range(self.layers_per_block, 0, -1):
                padding = ("I",) * (self.layers_per_block - depth)
                for ops in itertools.product(self.ops, repeat=depth):
                    yield BlockArch(w, ops + padding)

    def sample_block(self, rng: np.random.Generator) -> BlockArch:
        """One block uniformly over all block candidates."""
        n_ops = len(self.ops)
        w = self.widths[rng.integers(len(self.widths))]
        depths = np.arange(1, self.layers_per_block + 1)
        counts = np.array([n_ops**int(d) for d in depths], dtype=np.float64)
        depth = int(rng.choice(depths, p=counts / counts.sum()))
        ops = tuple(self.ops[i] for i in rng.integers(n_ops, size=depth))
        return BlockArch(int(w), ops + ("I",) * (self.layers_per_block - depth))

    def sample(self, rng: np.random.Generator | int | None = None) -> Arch:
        """One architecture, each block uniform over its candidates; `rng` may be a seed."""
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        return Arch(tuple(self.sample_block(rng) for _ in range(self.num_blocks)))

    def largest_arch(self, pattern: Sequence[str] = ("M", "F")) -> Arch:
        """The teacher-shaped arch: `pattern` repeated at the largest width in every block."""
        ops = tuple(pattern[i % len(pattern)] for i in range(self.layers_per_block))
        return Arch(tuple(BlockArch(self.max_width, ops) for _ in range(self.num_blocks)))

    # ---- validation -----------------------------------------------------------------------------------

    def validate_block(self, block: BlockArch, index: int = 0) -> None:
        where = f"block {index + 1}"
        if block.width not in self.widths:
            raise ArchError(f"{where} has width {block.width}, which is not in the space's widths "
                            f"{list(self.widths)}")
        if len(block.ops) != self.layers_per_block:
            raise ArchError(f"{where} has {len(block.ops)} layers but the space has {self.layers_per_block} "
                            f"per block; pad with I")
        for op in block.active_ops:
            if op not in self.ops:
                raise ArchError(f"{where} uses op {op}, which is not in the space's ops {list(self.ops)}")

    def validate(self, arch: Arch | str) -> Arch:
        """The arch, parsed if given as a string; raises ArchError naming the first problem."""
        arch = Arch.parse(arch) if isinstance(arch, str) else arch
        if len(arch) != self.num_blocks:
            raise ArchError(f"the arch has {len(arch)} blocks but the space has {self.num_blocks}")
        for n, block in enumerate(arch):
            self.validate_block(block, n)
        return arch

    # ---- costs -----------------------------------------------------------------------------------------

    def layer_params(self, op: str, width: int) -> int:
        return get_op(op).params(width, self.head_dim, self.ffn_ratio)

    def layer_flops(self, op: str, width: int, seq_len: int | None = None) -> int:
        return get_op(op).flops(width, self.head_dim, self.ffn_ratio, seq_len or self.seq_len)

    def block_params(self, block: BlockArch) -> int:
        """Parameters of the block's layers (projections excluded: they depend on the neighbours)."""
        return sum(self.layer_params(op, block.width) for op in block.active_ops)

    def block_flops(self, block: BlockArch, seq_len: int | None = None) -> int:
        return sum(self.layer_flops(op, block.width, seq_len) for op in block.active_ops)

    def embedding_params(self) -> int:
        e = self.embedding_dim
        return (self.vocab_size + self.max_position_embeddings + self.type_vocab_size) * e + 2 * e

    def projection_widths(self, arch: Arch) -> list[tuple[int, int]]:
        """(in, out) of every linear projection of the student: embedding->block 1, between blocks, last->H."""
        widths = [b.width for b in arch]
        return list(zip([self.embedding_dim] + widths, widths + [self.hidden_size]))

    def params(self, arch: Arch | str, pooler: bool = False) -> int:
        """Exact parameter count of the bare student encoder (NasbertModel)."""
        arch = self.validate(arch)
        total = self.embedding_params()
        total += sum(i * o + o for i, o in self.projection_widths(arch))
        total += sum(self.block_params(b) for b in arch)
        if pooler:
            total += self.hidden_size * self.hidden_size + self.hidden_size
        return total

    def flops(self, arch: Arch | str, seq_len: int | None = None) -> int:
        """FLOPs of the bare encoder at batch 1 (2 per multiply-add; see module docstring)."""
        arch = self.validate(arch)
        t = seq_len or self.seq_len
        return sum(2 * t * i * o for i, o in self.projection_widths(arch)) + sum(
            self.block_flops(b, t) for b in arch)
