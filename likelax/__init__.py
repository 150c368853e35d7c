"""likelax: every loss is a negative log-likelihood under a noise model you choose."""

from ._config import checks as checks
from ._config import get_checks as get_checks
from ._config import set_checks as set_checks
from ._noise._base import AbstractNoise as AbstractNoise
from ._noise._location import Gaussian as Gaussian

__version__ = "0.1.0"
