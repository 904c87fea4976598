"""`nasbert arch` and `nasbert space`: look at the search space and at one architecture."""

from __future__ import annotations

import argparse
import json

from nasbert.commands.base import SPACE_HELP, command, load_space
from search_space import SearchSpace


def _space_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--space", help=SPACE_HELP)


def _arch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("arch", help="arch string, e.g. 256:M,F,S5,F,I,I/512:M,F,M,F,M,F/...")
    _space_arguments(parser)


@command("arch", "validate an arch string and print its parameters and FLOPs", _arch_arguments)
def run_arch(args: argparse.Namespace) -> int:
    return arch_info(args.arch, load_space(args.space))


def arch_info(text: str, space: SearchSpace) -> int:
    arch = space.validate(text)
    print(f"arch        {arch}")
    print(f"layers      {arch.num_layers} (identities dropped)")
    print(f"params      {space.params(arch):,} (encoder and embeddings)")
    print(f"FLOPs       {space.flops(arch) / 1e9:.3f} G at batch 1 x seq {space.seq_len}")
    return 0


@command("space", "print the search space and how many architectures it holds", _space_arguments)
def run_space(args: argparse.Namespace) -> int:
    space = load_space(args.space)
    print(json.dumps(space.to_json(), indent=2))
    per_block = space.num_block_candidates()
    print(f"block candidates: {per_block:,}; whole models: {per_block:,}^{space.num_blocks} "
          f"= {float(per_block) ** space.num_blocks:.2e}")
    return 0


