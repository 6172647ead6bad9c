"""Post-hoc relabelling (ECR and Stephens) on synthetic label-switched draws."""

import ast
import inspect
import warnings

import numpy as np
import pytest

from bayesmoe.numerics import relabel as relabel_module
from bayesmoe.numerics.relabel import (
    _stephens,
    _stephens_objective,
    apply_permutations,
    ecr_permutations,
    relabel,
    stephens_permutations,
)


def _switched_draws(rng, S=200, n=120, K=4, noise=0.6, concentration=0.3):
    """Noisy draws around a true (n, K) matrix, each with a known random labelling.

    Returns ``truth`` (n, K), ``clean`` (S, n, K) in the true labelling, ``observed`` with
    ``observed[s][:, k] = clean[s][:, switch[s, k]]`` and ``switch`` (S, K). Old label k of draw
    s is therefore true label ``switch[s, k]``, and the permutation that undoes it is
    ``argsort(switch[s])``.
    """
    truth = rng.dirichlet(np.full(K, concentration), size=n)
    logits = np.log(np.maximum(truth, 1e-12))[None] + noise * rng.normal(size=(S, n, K))
    clean = np.exp(logits - logits.max(axis=2, keepdims=True))
    clean /= clean.sum(axis=2, keepdims=True)
    switch = np.array([rng.permutation(K) for _ in range(S)])
    observed = np.take_along_axis(clean, switch[:, None, :], axis=2)
    return truth, clean, observed, switch


def _common_global_perm(perms, switch):
    """True label of each new label, per draw: ``switch[s, perms[s, j]]`` (S, K)."""
    return np.take_along_axis(switch, perms, axis=1)


# --------------------------------------------------------------------------- recovery


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_ecr_recovers_known_permutations(rng, dtype):
    truth, clean, observed, switch = _switched_draws(rng)
    perms = ecr_permutations(observed.astype(dtype), truth)
    np.testing.assert_array_equal(perms, np.argsort(switch, axis=1))
    np.testing.assert_allclose(apply_permutations(observed, perms, axis=2), clean)


def test_ecr_accepts_integer_labels_as_pivot(rng):
    truth, _, observed, switch = _switched_draws(rng)
    perms = ecr_permutations(observed, truth.argmax(axis=1))
    np.testing.assert_array_equal(perms, np.argsort(switch, axis=1))


def test_stephens_without_pivot_makes_all_draws_agree(rng):
    _, clean, observed, switch = _switched_draws(rng)
    perms, n_iter = stephens_permutations(observed)
    assert 1 < n_iter < 100
    # Without a pivot the labelling is defined up to one global permutation tau: new label j
    # is true label tau(j) in every draw.
    true_label = _common_global_perm(perms, switch)
    np.testing.assert_array_equal(true_label, np.broadcast_to(true_label[0], true_label.shape))
    tau = true_label[0]
    np.testing.assert_allclose(apply_permutations(observed, perms, axis=2), clean[:, :, tau])


def test_stephens_from_ecr_keeps_the_pivot_labelling(rng):
    truth, _, observed, switch = _switched_draws(rng)
    init = ecr_permutations(observed, truth)
    perms, n_iter = stephens_permutations(observed, init=init)
    np.testing.assert_array_equal(perms, np.argsort(switch, axis=1))
    assert n_iter == 1  # ECR already optimal: one sweep that changes nothing


@pytest.mark.parametrize("method", ["stephens", "ecr"])
def test_relabel_with_pivot(rng, method):
    truth, _, observed, switch = _switched_draws(rng)
    perms = relabel(observed, pivot=truth, method=method)
    np.testing.assert_array_equal(perms, np.argsort(switch, axis=1))


def test_relabel_without_pivot_is_stephens(rng):
    _, _, observed, _ = _switched_draws(rng)
    np.testing.assert_array_equal(relabel(observed), stephens_permutations(observed)[0])


# --------------------------------------------------------------------------- Stephens' descent


def test_stephens_objective_non_increasing_and_terminates(rng):
    # Heavy noise and weak separation, so several sweeps do real work.
    _, _, observed, _ = _switched_draws(rng, S=300, n=60, K=4, noise=2.0, concentration=1.0)
    perms, n_iter, history = _stephens(observed, None, 100, track=True)
    assert 2 < n_iter < 100
    assert len(history) == n_iter
    assert np.all(np.diff(history) <= 1e-9 * abs(history[0]))
    assert history[-1] < history[0]
    # The tracked loss is the loss of the returned labelling, and the identity start's.
    assert history[-1] == pytest.approx(_stephens_objective(observed, perms), rel=1e-10)
    identity = np.tile(np.arange(4), (300, 1))
    assert history[0] == pytest.approx(_stephens_objective(observed, identity), rel=1e-10)


def test_stephens_warns_when_max_iter_reached(rng):
    _, _, observed, _ = _switched_draws(rng)
    with pytest.warns(RuntimeWarning, match="max_iter=1"):
        _, n_iter = stephens_permutations(observed, max_iter=1)
    assert n_iter == 1


def test_stephens_exact_ties_keep_the_start():
    # Identical, uniform draws: every labelling has the same loss.
    probs = np.full((50, 10, 3), 1 / 3)
    init = np.tile([2, 0, 1], (50, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        perms, n_iter = stephens_permutations(probs, init=init)
    np.testing.assert_array_equal(perms, init)
    assert n_iter == 1


def test_zero_probabilities_are_finite(rng):
    _, _, observed, switch = _switched_draws(rng, K=3)
    observed = np.where(observed < 0.05, 0.0, observed)
    perms, _ = stephens_permutations(observed)
    true_label = _common_global_perm(perms, switch)
    assert (true_label == true_label[0]).all()


# --------------------------------------------------------------------------- apply


def test_apply_permutations_component_axis_not_last(rng):
    S, d, K = 30, 5, 4
    theta = rng.normal(size=(S, d, K))
    switch = np.array([rng.permutation(K) for _ in range(S)])
    switched = np.take_along_axis(theta, switch[:, None, :], axis=2)
    undo = np.argsort(switch, axis=1)
    # (S, K, d): components in the middle, addressed both ways.
    middle = np.moveaxis(switched, 2, 1)
    for axis in (1, -2):
        np.testing.assert_array_equal(
            apply_permutations(middle, undo, axis=axis), np.moveaxis(theta, 2, 1)
        )
    np.testing.assert_array_equal(apply_permutations(switched, undo, axis=-1), theta)
    # Round trip: applying perms then their inverses is the identity.
    there = apply_permutations(theta, switch, axis=2)
    np.testing.assert_array_equal(apply_permutations(there, undo, axis=2), theta)


def test_apply_permutations_component_axis_last(rng):
    S, K = 40, 3
    weights = rng.dirichlet(np.ones(K), size=S)
    perms = np.array([rng.permutation(K) for _ in range(S)])
    out = apply_permutations(weights, perms, axis=1)
    np.testing.assert_array_equal(out, weights[np.arange(S)[:, None], perms])
    np.testing.assert_array_equal(
        apply_permutations(out, np.argsort(perms, axis=1), axis=-1), weights
    )
    assert out.dtype == weights.dtype


# --------------------------------------------------------------------------- edge cases


def test_single_component_is_identity(rng):
    probs = np.ones((20, 7, 1))
    np.testing.assert_array_equal(ecr_permutations(probs, np.zeros(7, dtype=int)), 0)
    perms, n_iter = stephens_permutations(probs)
    assert perms.shape == (20, 1) and n_iter == 0
    np.testing.assert_array_equal(relabel(probs), np.zeros((20, 1), dtype=int))


_P = np.full((4, 5, 3), 1 / 3)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: relabel(_P[0]), "probs"),
        (lambda: relabel(np.where(np.arange(3) == 0, np.nan, _P)), "probs"),
        (lambda: relabel(-_P), "probs"),
        (lambda: relabel(_P[:, :0]), "probs"),
        (lambda: relabel(_P, pivot=np.ones((5, 2))), "pivot"),
        (lambda: relabel(_P, pivot=np.ones((6, 3))), "pivot"),
        (lambda: relabel(_P, pivot=np.full((5, 3), np.nan)), "pivot"),
        (lambda: relabel(_P, pivot=np.array([0, 1, 2, 3, 0])), "pivot"),
        (lambda: relabel(_P, pivot=np.zeros(4, dtype=int)), "pivot"),
        (lambda: relabel(_P, pivot=np.zeros(5)), "pivot"),
        (lambda: relabel(_P, method="ecr"), "pivot"),
        (lambda: relabel(_P, method="kl"), "method"),
        (lambda: relabel(_P, max_iter=0), "max_iter"),
        (lambda: stephens_permutations(_P, init=np.zeros((4, 3), dtype=int)), "init"),
        (lambda: stephens_permutations(_P, init=np.zeros((4, 2), dtype=int)), "init"),
        (lambda: stephens_permutations(_P, init=np.zeros((4, 3))), "init"),
        (lambda: apply_permutations(_P, np.zeros((4, 3), dtype=int), axis=2), "perms"),
        (lambda: apply_permutations(_P, np.tile(np.arange(3), (4, 1)), axis=1), "perms"),
        (lambda: apply_permutations(_P, np.tile(np.arange(3), (4, 1)), axis=0), "axis"),
        (lambda: apply_permutations(_P, np.tile(np.arange(3), (4, 1)), axis=3), "axis"),
        (lambda: apply_permutations(_P[:, 0, 0], np.tile(np.arange(3), (4, 1)), 1), "values"),
    ],
)
def test_bad_inputs_raise_value_error_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_module_imports_only_numpy_and_scipy():
    tree = ast.parse(inspect.getsource(relabel_module))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module.split(".")[0])
    assert roots <= {"__future__", "collections", "numpy", "scipy", "warnings"}
