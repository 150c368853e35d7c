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
from ._noise._circular import VonMises as VonMises
from ._noise._positive import Beta as Beta
from ._noise._positive import Gamma as Gamma

# -- combinators --
from ._algebra import Censored as Censored
from ._algebra import FromLoss as FromLoss
from ._algebra import Heteroscedastic as Heteroscedastic
from ._algebra import Mixture as Mixture
from ._algebra import NotALikelihood as NotALikelihood
from ._algebra import Reparam as Reparam
from ._algebra import Switch as Switch
from ._algebra import Transform as Transform
from ._algebra import ZeroInflated as ZeroInflated
from ._algebra import censored as censored
from ._algebra import from_loss as from_loss
from ._algebra import heteroscedastic as heteroscedastic
from ._algebra import mixture as mixture
from ._algebra import reparam as reparam
from ._algebra import switch as switch
from ._algebra import transform as transform
from ._algebra import zero_inflated as zero_inflated

# -- objectives --
from ._objective import AbstractObjective as AbstractObjective
from ._objective import AbstractTerm as AbstractTerm
from ._objective import Likelihood as Likelihood
from ._objective import Objective as Objective
from ._objective import Prior as Prior
from ._objective import likelihood as likelihood
from ._objective import prior as prior

# -- fitting --
from ._fit import FitError as FitError
from ._fit import FitResult as FitResult
from ._fit import Status as Status
from ._fit import fit as fit

# -- diagnostics and comparison --
from ._compare import Comparison as Comparison
from ._compare import compare as compare
from ._compare import select_noise as select_noise
from ._diagnostics import calibration as calibration
from ._diagnostics import pit as pit

__version__ = "0.1.0"


def __getattr__(name: str):
    # `llx.plot` without importing matplotlib at `import likelax` time
    if name == "plot":
        import importlib

        return importlib.import_module(".plot", __name__)
    raise AttributeError(f"module 'likelax' has no attribute {name!r}")
