"""What can be built: op specs, block and model architectures, the NAS-BERT space, costs. Pure Python + numpy."""

from search_space.arch import Arch, ArchError, BlockArch
from search_space.ops import OPS, OpSpec, get_op, register_op, sepconv_op
from search_space.space import SearchSpace

__all__ = ["OPS", "Arch", "ArchError", "BlockArch", "OpSpec", "SearchSpace", "get_op", "register_op", "sepconv_op"]
