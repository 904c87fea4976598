"""Architecture value objects and the one human format, the arch string.

    256:M,F,S5,F,I,I/512:M,F,M,F,M,F

One `width:ops` per block, blocks separated by `/`, ops separated by `,`. `str(Arch.parse(s)) == s` for
every valid string. The JSON form mirrors it: `[{"width": 256, "ops": ["M", "F", ...]}, ...]`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from search_space.ops import describe_op_names, is_identity, is_op_name


class ArchError(ValueError):
    """A malformed or out-of-space architecture; the message is one sentence a user can act on."""


@dataclass(frozen=True, order=True)
class BlockArch:
    """One block: a width shared by all its layers and one op per layer (identities only at the end)."""

    width: int
    ops: tuple[str, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.width, int) or isinstance(self.width, bool) or self.width <= 0:
            raise ArchError(f"block width must be a positive integer, got {self.width!r}")
        object.__setattr__(self, "ops", tuple(self.ops))
        if not self.ops:
            raise ArchError("a block must have at least one layer")
        for op in self.ops:
            if not is_op_name(op):
                raise ArchError(f"unknown op {op!r}; ops are {describe_op_names()}")
        first_identity = next((i for i, op in enumerate(self.ops) if is_identity(op)), len(self.ops))
        if not all(is_identity(op) for op in self.ops[first_identity:]):
            raise ArchError(
                f"identity before a non-identity op in block {self}: identities may only end a block"
            )
        if first_identity == 0:
            raise ArchError(f"block {self} is all identity: every block needs at least one real op")

    @property
    def active_ops(self) -> tuple[str, ...]:
        """The ops that are built (identities dropped)."""
        return tuple(op for op in self.ops if not is_identity(op))

    def __str__(self) -> str:
        return f"{self.width}:{','.join(self.ops)}"

    @classmethod
    def parse(cls, text: str) -> BlockArch:
        width_text, sep, ops_text = text.partition(":")
        if not sep:
            raise ArchError(f"block {text!r} has no ':'; write it as width:ops, e.g. 256:M,F,I")
        if not re.fullmatch(r"[1-9][0-9]*", width_text.strip()):
            raise ArchError(f"block {text!r} has width {width_text!r}, which is not a positive integer")
        if not ops_text.strip():
            raise ArchError(f"block {text!r} has no ops after ':'")
        ops = tuple(op.strip() for op in ops_text.split(","))
        if any(not op for op in ops):
            raise ArchError(f"block {text!r} has an empty op between commas")
        return cls(int(width_text), ops)

    def to_json(self) -> dict[str, Any]:
        return {"width": self.width, "ops": list(self.ops)}


@dataclass(frozen=True, order=True)
class Arch:
    """A whole student: its blocks in order."""

    blocks: tuple[BlockArch, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", tuple(self.blocks))
        if not self.blocks:
            raise ArchError("an architecture needs at least one block")

    def __str__(self) -> str:
        return "/".join(str(b) for b in self.blocks)

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, n: int) -> BlockArch:
        return self.blocks[n]

    def __iter__(self):
        return iter(self.blocks)

    @classmethod
    def parse(cls, text: str) -> Arch:
        """Parse an arch string; raises ArchError with a sentence naming the problem."""
        if not isinstance(text, str):
            raise ArchError(f"an arch string must be text, got {type(text).__name__}")
        if not text.strip():
            raise ArchError("the arch string is empty; write blocks as width:ops separated by '/'")
        if text != text.strip() or " " in text:
            raise ArchError(f"the arch string {text!r} contains spaces; write it without any")
        parts = text.split("/")
        for n, part in enumerate(parts):
            if not part:
                raise ArchError(f"block {n + 1} of {text!r} is empty (two '/' in a row, or one at an end)")
        blocks = []
        for n, part in enumerate(parts):
            try:
                blocks.append(BlockArch.parse(part))
            except ArchError as error:
                raise ArchError(f"block {n + 1}: {error}") from None
        return cls(tuple(blocks))

    def to_json(self) -> list[dict[str, Any]]:
        return [b.to_json() for b in self.blocks]

    @classmethod
    def from_json(cls, data: Any) -> Arch:
        if isinstance(data, str):
            data = json.loads(data)
        if not isinstance(data, list):
            raise ArchError("an arch in JSON is a list of {\"width\": ..., \"ops\": [...]} blocks")
        blocks = []
        for n, item in enumerate(data):
            if not isinstance(item, dict) or set(item) != {"width", "ops"} or not isinstance(item["ops"], list):
                raise ArchError(f"block {n + 1} in JSON must be {{\"width\": int, \"ops\": [str, ...]}}")
            blocks.append(BlockArch(item["width"], tuple(item["ops"])))
        return cls(tuple(blocks))

    @property
    def num_layers(self) -> int:
        """Layers that are built (identities excluded)."""
        return sum(len(b.active_ops) for b in self.blocks)
