"""Table rows: binary and categorical families (logit parametrisations)."""

import numpy as np
import optax
from case import Case
from scipy import special, stats

import likelax as llx


def _logits(rng):
    return rng.normal(0.0, 3.0, size=25)


class CategoricalRef:
    """Independent float64 categorical law with logits on the last axis (numpy only).

    Labels are cast to integers (the low-precision test passes them as floats).
    Broadcasting: logits `(K,)` with labels of any shape, or logits `(n, K)` with
    labels `(n,)`.
    """

    def __init__(self, logits):
        self.logits = np.asarray(logits, np.float64)
        m = self.logits.max(axis=-1, keepdims=True)
        lse = m + np.log(np.exp(self.logits - m).sum(axis=-1, keepdims=True))
        self.log_probs = self.logits - lse
        self.probs = np.exp(self.log_probs)

    def logpmf(self, x):
        x = np.asarray(x).astype(np.int64)
        if self.log_probs.ndim == 1:
            return self.log_probs[x]
        return np.take_along_axis(self.log_probs, x[..., None], axis=-1)[..., 0]

    def pmf(self, x):
        return np.exp(self.logpmf(x))

    def rvs(self, random_state):
        cum = np.cumsum(self.probs, axis=-1)
        u = random_state.random((*cum.shape[:-1], 1))
        labels = (u > cum).sum(axis=-1)
        return np.minimum(labels, self.probs.shape[-1] - 1).astype(np.int64)

    def mean(self):
        return self.probs


def _binomial_loss(n, x, xh):
    # the binary cross-entropy summed over n trials: n softplus(l) - x l
    total = float(n.total_count)
    return total * np.logaddexp(0.0, xh) - x * xh


ROWS = [
    Case(
        id="Bernoulli",
        instances=lambda: [llx.Bernoulli(), llx.Bernoulli()],
        oracle=lambda n, xh: stats.bernoulli(p=special.expit(xh)),
        x_hat=_logits,
        kind="discrete",
        support=lambda n, xh: (0, 1),
        predict=lambda d: d.mean(),
        familiar_loss=lambda n, x, xh: np.asarray(
            optax.sigmoid_binary_cross_entropy(xh, x)
        ),
    ),
    Case(
        id="Binomial",
        instances=lambda: [llx.Binomial(10.0), llx.Binomial(3.0), llx.Binomial(25.0)],
        oracle=lambda n, xh: stats.binom(n=int(n.total_count), p=special.expit(xh)),
        x_hat=_logits,
        kind="discrete",
        support=lambda n, xh: (0, int(n.total_count)),
        predict=lambda d: d.mean(),
        familiar_loss=_binomial_loss,
        no_grad=("total_count",),
    ),
    Case(
        id="Categorical",
        instances=lambda: [llx.Categorical(), llx.Categorical()],
        oracle=lambda n, xh: CategoricalRef(xh),
        x_hat=lambda rng: rng.normal(0.0, 2.0, size=(25, 5)),
        kind="categorical",
        support=lambda n, xh: (0, np.shape(xh)[-1] - 1),
        predict=lambda d: d.probs,
        familiar_loss=lambda n, x, xh: np.asarray(
            optax.softmax_cross_entropy_with_integer_labels(xh, x)
        ),
        univariate=False,
    ),
]
