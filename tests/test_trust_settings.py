"""Smaller input checks: a positive prior's transform, the standardize flag."""

from __future__ import annotations

import pytest

import bayesmoe as bm
from bayesmoe.priors import Prior, check_prior


def test_a_transform_that_breaks_a_scale_is_refused_by_name():
    with pytest.raises(ValueError, match=r"priors\['sigma'\].*transform='neg'.*positive"):
        check_prior("sigma", Prior("HalfNormal", sigma=1, transform="neg"), Prior("HalfNormal"))


@pytest.mark.parametrize("transform", [None, "exp", "softplus"])
def test_positive_transforms_of_a_positive_family_stay_allowed(transform):
    check_prior("sigma", Prior("HalfNormal", sigma=1, transform=transform), Prior("HalfNormal"))


def test_the_estimator_refuses_it_before_compiling(small_data):
    est = bm.InteractionRegression(
        method="advi", priors={"sigma": Prior("HalfNormal", sigma=1, transform="neg")}
    )
    with pytest.raises(ValueError, match="transform='neg'"):
        est.fit(small_data.X, small_data.y)


@pytest.mark.parametrize("value", ["no", 0, None, "False"])
def test_standardize_must_be_a_bool(small_data, value):
    for cls in (bm.InteractionRegression, bm.MixtureRegression, bm.GatedExperts):
        with pytest.raises(TypeError, match="standardize must be True or False"):
            cls(standardize=value).fit(small_data.X, small_data.y)
