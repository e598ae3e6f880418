"""Search spaces: NAS-Bench-201 (tabular and one-shot) and elastic MobileNetV3 (one-shot)."""

from search_spaces.base import SPACES, Arch, SearchSpace, get_space
from search_spaces.mobilenet import MobileNetV3Space
from search_spaces.nb201 import NB201Space

__all__ = ["SPACES", "Arch", "MobileNetV3Space", "NB201Space", "SearchSpace", "get_space"]
