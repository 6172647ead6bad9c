"""``HierarchicalStacking``: a gated mixture over already-fitted models.

Keep the top N, then gate them: fit candidate models, then learn where in x each is worth
trusting. The weights come from the members' PSIS-LOO pointwise densities (never their
in-sample fit) through :func:`bayesmoe.builders.hierarchical_stacking`, fitted by NUTS
with :func:`bayesmoe.fit`; predictions mix the members' own predictive distributions.
"""

from __future__ import annotations

import json
import warnings

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr
from sklearn.utils.validation import check_is_fitted

from bayesmoe.builders.stacking import hierarchical_stacking
from bayesmoe.comparison import pointwise_elpd
from bayesmoe.data import Standardizer, validate_features, validate_target
from bayesmoe.estimators.base import SAMPLE_DIMS, BayesianRegressor, per_obs
from bayesmoe.estimators.io import (
    LOADABLE,
    check_draws,
    check_feature_names,
    check_format,
    check_params,
    check_standardizer,
    check_variable,
    estimator_class,
    group,
    register,
    saved_json,
    storable,
)
from bayesmoe.inference.loglik import add_log_likelihood

__all__ = ["HierarchicalStacking"]


def _paired(values: np.ndarray, chains: int, draws: int) -> np.ndarray:
    """Member draws re-indexed onto the stacking posterior's (chain, draw) grid.

    Stacking draw ``s`` of ``S`` takes member draw ``floor(s * S_m / S)``: evenly spread
    over the member's draws (each used once when ``S_m >= S``). Stacking weights and
    member parameters are independent in the posterior (the weights are fitted to LOO
    densities), so any fixed pairing gives draws from their product.
    """
    S_m = values.shape[0] * values.shape[1]
    flat = values.reshape(S_m, *values.shape[2:])
    S = chains * draws
    idx = (np.arange(S) * S_m) // S
    return flat[idx].reshape(chains, draws, *values.shape[2:])


def _prior_predictive(est: HierarchicalStacking, X, y, draws: int, random_seed) -> xr.DataTree:
    """:meth:`HierarchicalStacking.sample_prior_predictive`."""
    check_is_fitted(est, "idata_")
    seed = est.random_seed if random_seed is None else random_seed
    # the stacking score is a Potential of the data, not part of the gate's prior
    with est.model_, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The effect of Potentials")
        prior = pm.sample_prior_predictive(draws=draws, random_seed=seed)
    gate_prior = prior["prior"].to_dataset()
    if X is None:
        Xw, yv = est._training_rows(), est.idata_["observed_data"]["y"].values
    else:
        raw = est._raw(X)
        Xw = est.standardizer_.transform_X(raw)
        yv = None if y is None else validate_target(y, raw.shape[0], name="y")
    rng = np.random.default_rng(None if seed is None else [seed, 4])
    pp = est._blocked_draws(Xw, lambda rows: est._components(rows, gate_prior), rng)
    groups = {"prior": gate_prior, "prior_predictive": xr.Dataset(pp)}
    if yv is not None:
        groups["observed_data"] = xr.Dataset({"y": ("obs", yv)})
    return xr.DataTree.from_dict(groups)


class HierarchicalStacking(BayesianRegressor):
    r"""Input-dependent stacking of fitted models (Bayesian hierarchical stacking).

    .. math::

        p(\tilde y \mid x) &= \sum_{k=1}^K w_k(x)\, p(\tilde y \mid x, M_k), \qquad
        w(x) = \mathrm{softmax}(\alpha(x)) \\
        \alpha_k(x) &= \mu_k + f(x)^\top \beta_k,\quad \alpha_r = 0, \quad
        \beta_{jk} \sim N(0, \sigma_k^2),\quad \sigma_k \sim N^+(0, 1),\quad
        \mu_k \sim N(\log \hat w_k / \hat w_r, 1)

    fitted to :math:`\sum_i \log \sum_k w_k(x_i)\, p(y_i \mid x_i, y_{-i}, M_k)`, the
    members' PSIS-LOO densities (Yao, Pirš, Vehtari and Gelman 2022). The learned
    :math:`\sigma_k` pools the weights towards constants; the constants are centred on
    the global stacking weights :math:`\hat w` of :func:`arviz.compare`, the model with
    the largest of them being the reference :math:`r`. ``gate="linear"`` uses
    :math:`f(x) = x` (standardised), ``gate="mlp"`` :math:`f(x) = \tanh(W^\top x + a)`.
    See :func:`bayesmoe.builders.hierarchical_stacking`.

    Predictions mix the members' predictive distributions with :math:`w(x)`: every
    estimator method (``predict``, ``predict_dist``, ``log_predictive_density``,
    ``score``, ``save``/``bayesmoe.load``) works, plus :meth:`weights`.

    Parameters
    ----------
    gate : {"linear", "mlp"}
    gate_hidden : int, optional
        Hidden units of the mlp gate (required for ``gate="mlp"``).
    gate_features : list of column names or indices, optional
        Columns of ``X`` the weights depend on (default: all).
    priors : dict, optional
        Overrides of ``global_logit``, ``gate_weights`` (its ``sigma`` prior is the
        pooling scale), ``gate_hidden_weights``, ``gate_hidden_bias``.
    method, sampler, draws, tune, chains, random_seed, progressbar, log_likelihood,
    fit_kwargs
        As in :class:`bayesmoe.InteractionRegression`.

    Attributes
    ----------
    members_ : dict of name -> fitted estimator
    global_weights_ : Series
        ArviZ's global stacking weights (the complete-pooling solution).
    loo_ : DataFrame
        The members' pointwise LOO log densities used for fitting, (n, K).
    model_, idata_, feature_names_in_, standardizer_
    """

    def __init__(
        self,
        *,
        gate: str = "linear",
        gate_hidden: int | None = None,
        gate_features=None,
        priors: dict | None = None,
        method: str = "nuts",
        sampler: str = "nutpie",
        draws: int = 1000,
        tune: int = 1000,
        chains: int = 4,
        random_seed: int | None = None,
        progressbar: bool = True,
        log_likelihood: bool = True,
        fit_kwargs: dict | None = None,
    ):
        self.gate = gate
        self.gate_hidden = gate_hidden
        self.gate_features = gate_features
        self.priors = priors
        self.method = method
        self.sampler = sampler
        self.draws = draws
        self.tune = tune
        self.chains = chains
        self.random_seed = random_seed
        self.progressbar = progressbar
        self.log_likelihood = log_likelihood
        self.fit_kwargs = fit_kwargs

    # ------------------------------------------------------------------ fitting
    def fit(self, models, X, y) -> HierarchicalStacking:
        """Learn w(x) from the members' LOO densities on their training data ``X, y``.

        Parameters
        ----------
        models : dict of name -> fitted bayesmoe estimator
            At least two, all fitted on the rows ``X, y`` (each on its own columns of X).
        X : DataFrame or array-like, shape (n, p)
            The training features (every column a member uses, plus any gate-only ones).
        y : array-like, shape (n,)

        Returns
        -------
        self

        Notes
        -----
        A failed fit (``KeyboardInterrupt`` included) leaves the estimator as it was.
        """
        with self._transaction():
            return self._fit_members(models, X, y)

    def _fit_members(self, models, X, y) -> HierarchicalStacking:
        self._check_settings()
        members = self._check_members(models)
        Xv, names = validate_features(X, name="X")
        yv = validate_target(y, Xv.shape[0], name="y")
        frame = pd.DataFrame(Xv, columns=names)
        for name, member in members.items():
            self._check_member_data(name, member, frame, yv)
        gate_cols = self._gate_columns(names)

        # every_row: the stacking model needs each row's LOO density (no subsampled members)
        elpds, _ = pointwise_elpd(members, "loo", every_row=True)  # warns at high Pareto k
        lpd = np.column_stack([elpds[n].elpd_i.values.ravel() for n in members])
        table = az.compare(elpds, method="stacking", round_to="none")
        self.global_weights_ = table["weight"].reindex(list(members))
        self.loo_ = pd.DataFrame(lpd, columns=list(members))
        self.members_ = members
        self.feature_names_in_ = np.asarray(names, dtype=object)
        self.n_features_in_ = len(names)
        std = Standardizer.fit(Xv, None, enabled=True)
        # y stays on the user's scale: the members' densities already are
        self.standardizer_ = Standardizer(std.x_mean, std.x_scale, 0.0, 1.0)
        self.gate_columns_ = gate_cols
        self.model_ = self._build_from(self.standardizer_.transform_X(Xv), lpd, yv)
        self.idata_ = self._sample_model()
        self.idata_["constant_data"] = (
            self.idata_["constant_data"]
            .to_dataset()
            .assign(
                lpd=(("obs", "model"), lpd),
                global_weight=("model", self.global_weights_.values),
                X_full=(("obs", "column"), self.standardizer_.transform_X(Xv)),
            )
            .assign_coords(model=list(members), column=list(names))
        )
        self.idata_.attrs["bayesmoe_estimator"] = type(self).__name__
        return self

    def _build_from(self, Xw: np.ndarray, lpd: np.ndarray, y: np.ndarray) -> pm.Model:
        names = list(self.feature_names_in_)
        cols = [names.index(c) for c in self.gate_columns_]
        return hierarchical_stacking(
            pd.DataFrame(Xw[:, cols], columns=self.gate_columns_),
            lpd,
            y=y,
            model_names=list(self.members_),
            global_weights=self.global_weights_.values,
            gate=self.gate,
            gate_hidden=self.gate_hidden,
            priors=self.priors,
        )

    @staticmethod
    def _check_members(models) -> dict:
        if not isinstance(models, dict):
            raise TypeError(
                f"models must be a dict of name -> fitted estimator, got {type(models).__name__}"
            )
        if len(models) < 2:
            raise ValueError(f"models needs at least 2 fitted estimators, got {len(models)}")
        for name, m in models.items():
            if not isinstance(name, str):
                raise TypeError(f"models keys must be strings (model names), got {name!r}")
            if not isinstance(m, BayesianRegressor):
                raise TypeError(
                    f"models[{name!r}] must be a fitted bayesmoe estimator, got {type(m).__name__}"
                )
            check_is_fitted(m, "idata_", msg=f"models[{name!r}] is not fitted; fit it first")
        return dict(models)

    @staticmethod
    def _check_member_data(name: str, member, frame: pd.DataFrame, y: np.ndarray) -> None:
        """The member must have been fitted on exactly these rows (LOO is about them)."""
        cols = list(member.feature_names_in_)
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise ValueError(
                f"models[{name!r}] was fitted on columns {missing} that X lacks; "
                f"X has {list(frame.columns)}"
            )
        observed = member.idata_["observed_data"]["y"].values
        if observed.shape != y.shape or not np.allclose(observed, y, rtol=1e-9, atol=0):
            raise ValueError(
                f"models[{name!r}] was fitted on different data than (X, y): "
                f"{observed.size} vs {y.size} rows or different y values. Hierarchical "
                "stacking needs every member's LOO densities at the rows it learns from"
            )
        Xm = member.standardizer_.transform_X(frame[cols].to_numpy())
        stored = member.idata_["constant_data"]["X_base"].values
        if stored.shape != Xm.shape or not np.allclose(stored, Xm, rtol=1e-7, atol=1e-9):
            raise ValueError(f"models[{name!r}] was fitted on different X rows than the X given")

    def _gate_columns(self, names: list[str]) -> list[str]:
        if self.gate_features is None:
            return list(names)
        chosen = self.gate_features
        if isinstance(chosen, str) or not hasattr(chosen, "__iter__"):
            raise TypeError(f"gate_features must be a list of columns, got {chosen!r}")
        out = []
        for c in chosen:
            if isinstance(c, int | np.integer) and not isinstance(c, bool):
                if not 0 <= c < len(names):
                    raise ValueError(
                        f"gate_features index {c} is out of range for {len(names)} columns"
                    )
                out.append(names[c])
            elif str(c) in names:
                out.append(str(c))
            else:
                raise ValueError(
                    f"gate_features names {c!r}, which is not a column of X; columns are {names}"
                )
        if not out or len(set(out)) != len(out):
            raise ValueError(f"gate_features must list distinct columns, got {list(chosen)}")
        return out

    def add_log_likelihood(self) -> xr.DataTree:
        """Pointwise stacking score :math:`\\log \\sum_k w_k(x_i) p_{loo}(y_i | M_k)`."""
        check_is_fitted(self, "idata_")
        return add_log_likelihood(self.idata_, self.model_)

    def _training_rows(self) -> np.ndarray:
        # X_base holds the gate columns only; the members need every column
        return self.idata_["constant_data"]["X_full"].values

    # ------------------------------------------------------------------ predictions
    def _gate_X(self, Xw: np.ndarray) -> np.ndarray:
        names = list(self.feature_names_in_)
        return Xw[:, [names.index(c) for c in self.gate_columns_]]

    def _log_weights(self, Xw: np.ndarray, post: xr.Dataset | None = None) -> xr.DataArray:
        post = self.idata_["posterior"].to_dataset() if post is None else post
        return self.model_.bayesmoe_spec.log_weights(post, self._gate_X(Xw))

    def _components(self, Xw: np.ndarray, post: xr.Dataset | None = None):
        """Members' predictive mixtures, weighted by w(x): (log weights, means, sds).

        Everything on the user's scale of y (the stacking estimator's working scale).
        Member draws are paired with stacking draws by :func:`_paired`. ``post``: draws
        of the gate's parameters (default: the stacking posterior).
        """
        post = self.idata_["posterior"].to_dataset() if post is None else post
        C, D = post.sizes["chain"], post.sizes["draw"]
        logw_stack = self._log_weights(Xw, post).values  # (C, D, n, K)
        raw = Xw * self.standardizer_.x_scale + self.standardizer_.x_mean
        frame = pd.DataFrame(raw, columns=list(self.feature_names_in_))
        logws, mus, sds, labels = [], [], [], []
        for k, (name, m) in enumerate(self.members_.items()):
            mw = m.standardizer_.transform_X(frame[list(m.feature_names_in_)].to_numpy())
            lw, mu, sd = m._components(mw)
            sd = per_obs(sd, mu)
            mu = m.standardizer_.inverse_y(mu.values)
            sd = sd.values * m.standardizer_.y_scale
            logws.append(_paired(lw.values, C, D) + logw_stack[..., k : k + 1])
            mus.append(_paired(mu, C, D))
            sds.append(_paired(sd, C, D))
            labels += [f"{name}[{j}]" for j in range(mu.shape[-1])]
        dims = (*SAMPLE_DIMS, "obs", "expert")
        coords = {"chain": post["chain"].values, "draw": post["draw"].values, "expert": labels}

        def wrap(parts):
            return xr.DataArray(np.concatenate(parts, axis=-1), dims=dims, coords=coords)

        return wrap(logws), wrap(mus), wrap(sds)

    def weights(self, X, return_draws: bool = False):
        """Stacking weights w(x) at ``X``: a DataFrame (rows x models) of posterior means.

        With ``return_draws=True``, a DataArray of draws, dims (chain, draw, obs, model).
        Stored as ``idata_["predictions"]["stacking_weight"]``.
        """
        raw = self._raw(X)
        draws = np.exp(self._log_weights(self.standardizer_.transform_X(raw)))
        self._store_predictions(raw, stacking_weight=draws)
        if return_draws:
            return draws.assign_coords(obs=np.arange(raw.shape[0]))
        return pd.DataFrame(
            draws.mean(SAMPLE_DIMS).values, columns=list(self.members_), index=_row_index(X)
        )

    def _summary_vars(self) -> list[str]:
        post = self.idata_["posterior"]
        return [n for n in self.model_.bayesmoe_spec.identified_vars if n in post.data_vars]

    def sample_prior_predictive(
        self, X=None, y=None, draws: int = 500, random_seed=None
    ) -> xr.DataTree:
        """Prior predictive of the stacked model: prior weights mixing the members' predictives.

        The stacking weights have a prior (the gate's), the members have no prior here:
        each draw of y takes a draw of :math:`w(x)` from the gate's prior and mixes the
        members' posterior predictives with it,
        :math:`y \\sim \\sum_k w_k(x) p(y \\mid x, M_k)`. ``X`` defaults to the training
        rows; ``y`` (new rows only, optional) is stored as ``observed_data``. Returns a
        DataTree with ``prior`` (the gate's parameters), ``prior_predictive`` and
        ``observed_data``.
        """
        return _prior_predictive(self, X, y, draws, random_seed)

    # ------------------------------------------------------------------ persistence
    def _saved_tree(self) -> xr.DataTree:
        """The stacking fit, with every member's saved tree under ``members/<name>``."""
        tree = super()._saved_tree()
        groups = {node.path: node.to_dataset(inherit=False) for node in tree.subtree}
        for name, member in self.members_.items():
            sub = member._saved_tree()
            for node in sub.subtree:
                path = f"/members/{name}" + ("" if node.path == "/" else node.path)
                groups[path] = node.to_dataset(inherit=False)
        out = xr.DataTree.from_dict(groups)
        out.attrs.update(tree.attrs)
        out.attrs["bayesmoe_gate_columns"] = json.dumps(self.gate_columns_)
        return storable(out)

    def _saved_rows(self) -> np.ndarray:
        return self.idata_["constant_data"]["X_full"].values

    @classmethod
    def _check_saved(cls, tree: xr.DataTree, where: str = "") -> None:
        """Check the stacking fit's attributes and groups, then each member's file part."""
        _check_saved_stacking(cls, tree, where)

    @classmethod
    def _from_saved(cls, tree: xr.DataTree) -> HierarchicalStacking:
        from bayesmoe.priors import priors_from_json

        params = json.loads(tree.attrs["bayesmoe_params"])
        params["priors"] = priors_from_json(params.get("priors"))
        est = cls(**params)
        members = {}
        for name, node in tree["members"].children.items():
            sub = node.copy()  # a detached tree rooted at the member
            members[name] = estimator_class(sub.attrs["bayesmoe_estimator"])._from_saved(sub)
        own = xr.DataTree.from_dict(
            {
                n.path: n.to_dataset(inherit=False)
                for n in tree.subtree
                if not n.path.startswith("/members")
            }
        )
        own.attrs.update(tree.attrs)
        est.idata_ = own
        est.members_ = members
        est.feature_names_in_ = np.asarray(
            json.loads(tree.attrs["bayesmoe_feature_names"]), object
        )
        est.n_features_in_ = len(est.feature_names_in_)
        est.standardizer_ = Standardizer.from_dict(json.loads(tree.attrs["bayesmoe_standardizer"]))
        est.gate_columns_ = json.loads(tree.attrs["bayesmoe_gate_columns"])
        const = own["constant_data"]
        est.global_weights_ = pd.Series(const["global_weight"].values, index=list(members))
        est.loo_ = pd.DataFrame(const["lpd"].values, columns=list(members))
        est.model_ = est._build_from(
            const["X_full"].values, const["lpd"].values, own["observed_data"]["y"].values
        )
        est._check_draws_fit_model()
        return est


def _check_saved_stacking(cls: type, tree: xr.DataTree, where: str = "") -> None:
    """Check a saved stacking fit (``cls``) before it is rebuilt: its attributes, its groups
    and each member's part of the file (ValueError naming what is damaged)."""
    check_format(tree.attrs, where)
    check_params(cls, tree.attrs, where)
    names = saved_json(tree.attrs, "bayesmoe_feature_names", list, where)
    check_feature_names(names, where)
    check_standardizer(
        saved_json(tree.attrs, "bayesmoe_standardizer", dict, where), len(names), where
    )
    gate = saved_json(tree.attrs, "bayesmoe_gate_columns", list, where)
    if not all(isinstance(c, str) and c in names for c in gate):
        raise ValueError(f"{where}attribute 'bayesmoe_gate_columns' must list feature names")
    members = group(tree, "members", where).children
    if len(members) < 2:
        raise ValueError(f"{where}group 'members' must hold at least two member fits")
    for name, node in members.items():
        sub = f"{where}member {name!r}: "
        kind = node.attrs.get("bayesmoe_estimator")
        if not isinstance(kind, str) or kind not in LOADABLE or kind == cls.__name__:
            raise ValueError(
                f"{sub}attribute 'bayesmoe_estimator' is {kind!r}, not a bayesmoe "
                "estimator a stacking fit can hold"
            )
        estimator_class(kind)._check_saved(node.copy(), sub)
    const = group(tree, "constant_data", where)
    rows = const["X_full"].shape[0] if "X_full" in const.data_vars else -1
    sizes = {"obs": rows, "column": len(names)}
    check_variable(const, "X_full", ("obs", "column"), sizes, where)
    by = "the rows of variable 'X_full' and group 'members'"
    sizes = {"obs": rows, "model": len(members)}
    check_variable(const, "lpd", ("obs", "model"), sizes, where, sized_by=by)
    sizes = {"model": len(members)}
    check_variable(const, "global_weight", ("model",), sizes, where, sized_by=by)
    observed = group(tree, "observed_data", where)
    check_variable(observed, "y", ("obs",), {"obs": rows}, where, sized_by=by)
    check_draws(xr.DataTree.from_dict(
        {g: tree[g].to_dataset() for g in tree.children if g.startswith("posterior")}
    ), where)  # fmt: skip


def _row_index(X):
    return X.index if isinstance(X, pd.DataFrame) else None


register(HierarchicalStacking)
