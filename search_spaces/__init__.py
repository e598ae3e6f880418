"""Search spaces: NAS-Bench-201 (tabular and one-shot), elastic MobileNetV3 (one-shot) and FBNet (one-shot)."""

from search_spaces.base import SPACES, Arch, SearchSpace, get_space
from search_spaces.fbnet import FBNetSpace
from search_spaces.mobilenet import MobileNetV3Space
from search_spaces.nb201 import NB201Space

__all__ = ["SPACES", "Arch", "FBNetSpace", "MobileNetV3Space", "NB201Space", "SearchSpace", "get_space"]
