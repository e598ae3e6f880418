"""Search spaces: NAS-Bench-201 (tabular and trainable), more to come."""

from search_spaces.base import SPACES, Arch, SearchSpace, get_space
from search_spaces.nb201 import NB201Space

__all__ = ["SPACES", "Arch", "NB201Space", "SearchSpace", "get_space"]
