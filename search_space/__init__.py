"""What can be built: op specs (the op registry), block and model architectures, the NAS-BERT space, costs.
Pure Python + numpy."""

from search_space.arch import Arch, ArchError, BlockArch
from search_space.ops import FAMILIES, OPS, OpFamily, OpSpec, get_op, register_family, register_op, sepconv_op
from search_space.space import SearchSpace

__all__ = ["FAMILIES", "OPS", "Arch", "ArchError", "BlockArch", "OpFamily", "OpSpec", "SearchSpace", "get_op",
           "register_family", "register_op", "sepconv_op"]
