"""Golden results: canonical seeded fits reproduce their recorded values bit for bit.

The cases and the recording command are in :mod:`tests.golden.cases`. Draws, the pointwise
log-likelihood and every stored attribute must be identical; predictions and other derived
floats may move by 1e-12 relative (a reordered sum), never more.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.golden.cases import CASES, reference_path, run

#: derived quantities whose summation order a refactor may legitimately change
DERIVED = ("predict/", "predict_dist", "predict_proba")
RTOL = 1e-12


def _compare_json(name: str, got: str, want: str) -> None:
    a, b = json.loads(got), json.loads(want)
    assert a.keys() == b.keys(), f"{name}: keys differ: {sorted(a.keys() ^ b.keys())}"
    for key in a:
        va, vb = a[key], b[key]
        if isinstance(vb, str) and vb.startswith("{"):
            _compare_json(f"{name}[{key}]", va, vb)
        elif isinstance(vb, float):
            assert va == pytest.approx(vb, rel=RTOL, nan_ok=True), f"{name}[{key}]"
        else:
            assert va == vb, f"{name}[{key}]: {va!r} != {vb!r}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case):
    path = reference_path(case)
    assert path.exists(), f"no reference for {case}: python -m tests.golden.cases {case}"
    want = dict(np.load(path))
    got = run(case)
    assert got.keys() == want.keys(), f"arrays differ: {sorted(got.keys() ^ want.keys())}"
    for name, ref in want.items():
        value = got[name]
        if ref.dtype.kind == "U":
            _compare_json(name, str(value), str(ref))
        elif name.startswith(DERIVED):
            np.testing.assert_allclose(value, ref, rtol=RTOL, atol=0, err_msg=name)
        else:
            assert value.shape == ref.shape, f"{name}: shape {value.shape} != {ref.shape}"
            np.testing.assert_array_equal(value, ref, err_msg=name, strict=True)
