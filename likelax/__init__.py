"""likelax: every loss is a negative log-likelihood under a noise model you choose.

Public names are listed once, here. Keep each group's imports in its own section.
"""

from ._config import checks as checks
from ._data import load_dataset as load_dataset
from ._config import get_checks as get_checks
from ._config import set_checks as set_checks
from ._noise._base import AbstractNoise as AbstractNoise

# -- noise families: real line (location) --
from ._noise._location import AsymmetricLaplace as AsymmetricLaplace
from ._noise._location import Cauchy as Cauchy
from ._noise._location import Gaussian as Gaussian
from ._noise._location import GeneralizedNormal as GeneralizedNormal
from ._noise._location import Huber as Huber
from ._noise._location import Laplace as Laplace
from ._noise._location import StudentT as StudentT

# -- noise families: binary, categorical, counts --
from ._noise._count import NegativeBinomial as NegativeBinomial
from ._noise._count import Poisson as Poisson
from ._noise._discrete import Bernoulli as Bernoulli
from ._noise._discrete import Binomial as Binomial
from ._noise._discrete import Categorical as Categorical

# -- noise families: positive, unit interval, circular --

# -- combinators --

# -- objectives --
from ._objective import AbstractObjective as AbstractObjective
from ._objective import AbstractTerm as AbstractTerm
from ._objective import Likelihood as Likelihood
from ._objective import Objective as Objective
from ._objective import Prior as Prior
from ._objective import likelihood as likelihood
from ._objective import prior as prior

# -- fitting --

# -- diagnostics and comparison --
from ._diagnostics import calibration as calibration
from ._diagnostics import pit as pit

__version__ = "0.1.0"
