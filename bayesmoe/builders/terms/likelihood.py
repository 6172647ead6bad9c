r"""The likelihood families: the outcome's distribution given the linear predictor.

Every model of the package has a linear predictor :math:`\eta_i` per row (per expert for
the mixtures). A family maps it to the outcome through its inverse link and its own
parameters:

============================  ========  =====================================================
family                        link      :math:`y_i \mid \eta_i`
============================  ========  =====================================================
``"gaussian"``                identity  :math:`N(\eta_i, \sigma^2)`
``"student_t"``               identity  :math:`t_\nu(\eta_i, \sigma)`
``"bernoulli"``               logit     :math:`\mathrm{Bernoulli}(\mathrm{logit}^{-1}\eta_i)`
``"binomial"``                logit     :math:`\mathrm{Binomial}(n_i, \mathrm{logit}^{-1}\eta_i)`
``"poisson"``                 log       :math:`\mathrm{Poisson}(e^{\eta_i + o_i})`
``"negative_binomial"``       log       :math:`\mathrm{NB}(\mu_i = e^{\eta_i + o_i}, \alpha)`,
                                        :math:`\mathrm{Var} = \mu_i + \mu_i^2/\alpha`
============================  ========  =====================================================

:math:`n_i` are the binomial trials (``trials=``) and :math:`o_i = \log(\text{exposure}_i)`
the count families' offset (``exposure=``). The families' own parameters and their
default priors (:meth:`Family.default_priors`):

* ``sigma`` :math:`\sim \mathrm{HalfNormal}(s)`, :math:`s` the outcome's sd (gaussian and
  student_t, as before);
* ``nu`` :math:`\sim \mathrm{Gamma}(2, 0.1)` (student_t; Juárez & Steel 2010), mean 20,
  mass on both heavy tails (:math:`\nu < 5`) and near-Gaussian ones;
* ``alpha`` :math:`\sim \mathrm{InvGamma}(1/2, 1/2)` (negative_binomial), which is
  :math:`1/\sqrt\alpha \sim \mathrm{HalfNormal}(1)` (the prior on the overdispersion
  recommended by the Stan developers): large :math:`\alpha` is the Poisson limit.

Only the Gaussian family has conjugate weights: the collapsed form, ``partial_fit``,
streamed statistics and the closed-form VEM stay Gaussian, and every other family
refuses them through :meth:`Family.refuse` (one message, naming the alternative).

Each family exists in three forms that are kept equal by the tests: the PyMC observed
variable (:meth:`Family.observe`), the PyTensor elementwise log density
(:meth:`Family.logp`, for a mixture's log-sum-exp) and the numpy one
(:meth:`Family.logpdf`, for the pointwise log-likelihood of draws).

References
----------
Juárez, M. A. & Steel, M. F. J. (2010). Model-based clustering of non-Gaussian panel data
based on skew-t distributions. *J. Bus. Econ. Stat.* 28(1), 52-66.
Piironen, J. & Vehtari, A. (2017). Sparsity information and regularization in the
horseshoe and other shrinkage priors. *Electron. J. Stat.* 11(2), 5018-5051.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from pymc_extras.prior import Prior
from scipy.special import expit, gammaln

from bayesmoe.data import validate_counts, validate_positive

__all__ = ["FAMILIES", "Family", "get_family"]

FAMILIES = ("gaussian", "student_t", "bernoulli", "binomial", "poisson", "negative_binomial")

#: Default prior of Student-t's degrees of freedom.
NU_PRIOR = {"alpha": 2.0, "beta": 0.1}
#: Default prior of the negative binomial's dispersion (``1/sqrt(alpha) ~ HalfNormal(1)``).
ALPHA_PRIOR = {"alpha": 0.5, "beta": 0.5}


@dataclass(frozen=True)
class Family:
    """One likelihood family (module docstring): link, parameters, densities, draws.

    Attributes
    ----------
    name : str
        One of :data:`FAMILIES`.
    link : {"identity", "logit", "log"}
    params : tuple of str
        The family's own parameters (model variables named so), e.g. ``("sigma", "nu")``.
    supports_collapsed : bool
        Whether the weights are conjugate (collapsed form, VEM, ``partial_fit``, streamed
        statistics): the Gaussian family only.
    pseudo_sigma : float or None
        The noise scale the local-global priors measure the weights' scales in: the
        family's ``sigma`` when it has one, else Piironen & Vehtari's (2017, sec. 3.5)
        plug-in, :math:`2` for the logit link (the sd of a Bernoulli's Gaussian
        approximation at :math:`p = 1/2`) and :math:`1` for the log link.

    Notes
    -----
    ``params`` passed to the methods map each parameter name to a value broadcastable
    against ``eta`` (numpy or PyTensor): a scalar, or one value per draw with the
    observation axis last, e.g. shape ``(chain, draw, 1)``.
    """

    name: str
    link: str
    params: tuple[str, ...]
    supports_collapsed: bool
    pseudo_sigma: float | None

    @property
    def is_gaussian(self) -> bool:
        return self.name == "gaussian"

    @property
    def needs_trials(self) -> bool:
        return self.name == "binomial"

    @property
    def takes_exposure(self) -> bool:
        return self.link == "log"

    @property
    def discrete(self) -> bool:
        return self.link != "identity"

    # -- priors and data ------------------------------------------------------------------
    def default_priors(self, y_scale: float) -> dict[str, Prior]:
        """The family parameters' default priors; ``y_scale`` is the outcome's sd."""
        s = float(y_scale) if y_scale > 0 else 1.0
        out: dict[str, Prior] = {}
        if "sigma" in self.params:
            out["sigma"] = Prior("HalfNormal", sigma=s)
        if "nu" in self.params:
            out["nu"] = Prior("Gamma", **NU_PRIOR)
        if "alpha" in self.params:
            out["alpha"] = Prior("InverseGamma", **ALPHA_PRIOR)
        return out

    def check_y(self, y, *, trials=None, name: str = "y") -> np.ndarray:
        """Check a validated float target for this family's support; ValueError naming it.

        0/1 for bernoulli, whole numbers in :math:`[0, n_i]` for binomial (``trials``
        required), whole numbers :math:`\\ge 0` for the count families, any finite
        number otherwise. Returns float64.
        """
        values = np.asarray(y, dtype=np.float64)
        if self.name == "bernoulli":
            return validate_counts(values, name=name, binary=True)
        if self.name == "binomial":
            if trials is None:
                raise ValueError('family="binomial" needs trials= (the number of trials per row)')
            return validate_counts(values, name=name, upper=np.asarray(trials, float))
        if self.discrete:
            return validate_counts(values, name=name)
        return values

    def check_extras(self, n_rows: int, *, trials=None, exposure=None):
        """Validate ``trials`` / ``exposure`` for ``n_rows`` rows; returns ``(trials, offset)``.

        A family that takes neither refuses them (ValueError naming the argument); the
        offset is ``log(exposure)`` or None.
        """
        if trials is not None and not self.needs_trials:
            raise ValueError(f'trials= is only used with family="binomial", not "{self.name}"')
        if exposure is not None and not self.takes_exposure:
            raise ValueError(
                f'exposure= is only used with family="poisson" or "negative_binomial", '
                f'not "{self.name}"'
            )
        if self.needs_trials and trials is None:
            raise ValueError('family="binomial" needs trials= (the number of trials per row)')
        t = (
            None
            if trials is None
            else validate_positive(trials, n_rows, name="trials", whole=True)
        )
        o = (
            None
            if exposure is None
            else np.log(validate_positive(exposure, n_rows, name="exposure"))
        )
        return t, o

    def eta_location(self, y, *, trials=None, offset=None) -> float:
        """A central value of the linear predictor for ``y`` (the intercept prior's mean)."""
        y = np.asarray(y, float)
        if self.link == "identity" or y.size == 0:
            return float(y.mean()) if y.size else 0.0
        if self.link == "logit":
            n = 1.0 if trials is None else np.asarray(trials, float)
            p = float(np.clip(np.sum(y) / np.sum(n * np.ones_like(y)), 0.01, 0.99))
            return float(np.log(p / (1 - p)))
        rate = np.sum(y) / np.sum(np.exp(offset) if offset is not None else np.ones_like(y))
        return float(np.log(max(rate, 0.01)))

    def refuse(self, what: str, alternative: str) -> NoReturn:
        """Raise the one refusal message of an unsupported method (ValueError)."""
        raise ValueError(f'family="{self.name}" does not support {what}; use {alternative}')

    # -- the three forms of the density -----------------------------------------------------
    def _dist(self, eta, params, trials, offset):
        """The PyMC distribution class and its keyword arguments."""
        if self.name == "gaussian":
            return pm.Normal, {"mu": eta, "sigma": params["sigma"]}
        if self.name == "student_t":
            return pm.StudentT, {"nu": params["nu"], "mu": eta, "sigma": params["sigma"]}
        if self.name == "bernoulli":
            return pm.Bernoulli, {"logit_p": eta}
        if self.name == "binomial":
            return pm.Binomial, {"n": trials, "logit_p": eta}
        mu = pt.exp(eta if offset is None else eta + offset)
        if self.name == "poisson":
            return pm.Poisson, {"mu": mu}
        return pm.NegativeBinomial, {"mu": mu, "alpha": params["alpha"]}

    def observe(self, name, eta, y, params: dict, *, trials=None, offset=None, dims=None):
        """The observed PyMC variable ``name`` of ``y`` given ``eta`` (inside a model)."""
        dist, kwargs = self._dist(eta, params, trials, offset)
        return dist(name, observed=y, dims=dims, **kwargs)

    def logp(self, y, eta, params: dict, *, trials=None, offset=None):
        """The PyTensor elementwise log density (PyMC's own, via ``pm.logp``)."""
        dist, kwargs = self._dist(eta, params, trials, offset)
        return pm.logp(dist.dist(**kwargs), y)

    def logpdf(self, y, eta, params: dict, *, trials=None, offset=None) -> np.ndarray:
        """The numpy elementwise log density, broadcasting ``y`` against ``eta``'s draws."""
        y = np.asarray(y, float)
        eta = np.asarray(eta, float)
        if self.link == "identity":
            sigma = np.asarray(params["sigma"], float)
            z = (y - eta) / sigma
            if self.name == "gaussian":
                return -0.5 * z**2 - np.log(sigma) - 0.5 * np.log(2 * np.pi)
            nu = np.asarray(params["nu"], float)
            return (
                gammaln((nu + 1) / 2)
                - gammaln(nu / 2)
                - 0.5 * np.log(nu * np.pi)
                - np.log(sigma)
                - (nu + 1) / 2 * np.log1p(z**2 / nu)
            )
        if self.link == "logit":
            # log p = y eta - n log(1 + e^eta) (+ the binomial coefficient)
            n = 1.0 if trials is None else np.asarray(trials, float)
            out = y * eta - n * np.logaddexp(0.0, eta)
            if trials is not None:
                out = out + gammaln(n + 1) - gammaln(y + 1) - gammaln(n - y + 1)
            return out
        log_mu = eta if offset is None else eta + np.asarray(offset, float)
        mu = np.exp(log_mu)
        if self.name == "poisson":
            return y * log_mu - mu - gammaln(y + 1)
        a = np.asarray(params["alpha"], float)
        log_a_mu = np.logaddexp(np.log(a), log_mu)  # log(alpha + mu)
        return (
            gammaln(y + a)
            - gammaln(a)
            - gammaln(y + 1)
            + a * (np.log(a) - log_a_mu)
            + y * (log_mu - log_a_mu)
        )

    # -- predictions --------------------------------------------------------------------------
    def mean(self, eta, params: dict, *, trials=None, offset=None) -> np.ndarray:
        """:math:`E[y \\mid \\eta]` on the response scale (Student-t: its location)."""
        eta = np.asarray(eta, float)
        if self.link == "identity":
            return eta
        if self.link == "logit":
            p = expit(eta)
            return p if trials is None else p * np.asarray(trials, float)
        return np.exp(eta if offset is None else eta + np.asarray(offset, float))

    def draw(self, rng, eta, params: dict, *, trials=None, offset=None) -> np.ndarray:
        """Draws of :math:`y` given ``eta`` (one per element), as float64."""
        eta = np.asarray(eta, float)
        if self.name == "gaussian":
            return rng.normal(eta, np.asarray(params["sigma"], float))
        if self.name == "student_t":
            t = rng.standard_t(np.broadcast_to(np.asarray(params["nu"], float), eta.shape))
            return eta + np.asarray(params["sigma"], float) * t
        mean = self.mean(eta, params, trials=trials, offset=offset)
        if self.link == "logit":
            n = np.ones_like(eta) if trials is None else np.asarray(trials) * np.ones_like(eta)
            return rng.binomial(n.astype(np.int64), expit(eta)).astype(float)
        if self.name == "negative_binomial":
            a = np.broadcast_to(np.asarray(params["alpha"], float), eta.shape)
            mean = rng.gamma(a, mean / a)  # the gamma-Poisson mixture
        return rng.poisson(mean).astype(float)


_FAMILY_TABLE = {
    "gaussian": Family("gaussian", "identity", ("sigma",), True, None),
    "student_t": Family("student_t", "identity", ("sigma", "nu"), False, None),
    "bernoulli": Family("bernoulli", "logit", (), False, 2.0),
    "binomial": Family("binomial", "logit", (), False, 2.0),
    "poisson": Family("poisson", "log", (), False, 1.0),
    "negative_binomial": Family("negative_binomial", "log", ("alpha",), False, 1.0),
}


def get_family(name) -> Family:
    """The :class:`Family` called ``name`` (a Family is returned as is); ValueError else."""
    if isinstance(name, Family):
        return name
    if not isinstance(name, str) or name not in _FAMILY_TABLE:
        raise ValueError(f"family={name!r} is not known; choose one of {list(FAMILIES)}")
    return _FAMILY_TABLE[name]
