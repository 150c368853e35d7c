"""Combinators: noise models built from noise models (they nest)."""

from ._censored import Censored as Censored
from ._censored import censored as censored
from ._errors import NotALikelihood as NotALikelihood
from ._from_loss import FromLoss as FromLoss
from ._from_loss import from_loss as from_loss
from ._mixture import Mixture as Mixture
from ._mixture import mixture as mixture
from ._reparam import Heteroscedastic as Heteroscedastic
from ._reparam import Reparam as Reparam
from ._reparam import heteroscedastic as heteroscedastic
from ._reparam import reparam as reparam
from ._switch import Switch as Switch
from ._switch import switch as switch
from ._transform import Transform as Transform
from ._transform import transform as transform
from ._zero_inflated import ZeroInflated as ZeroInflated
from ._zero_inflated import zero_inflated as zero_inflated
