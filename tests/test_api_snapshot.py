"""No public name disappears and no estimator parameter changes without a deliberate
re-recording of ``tests/golden/api.json`` (``python -m tests.golden.api``)."""

from __future__ import annotations

import json

import pytest

from tests.golden.api import ESTIMATORS, MODULES, PATH, public_names, snapshot

RECORDED = json.loads(PATH.read_text())


@pytest.mark.parametrize("module", MODULES)
def test_no_public_name_disappears(module):
    missing = sorted(set(RECORDED["modules"][module]) - set(public_names(module)))
    assert not missing, f"{module} no longer has {missing}"


def test_estimator_parameters_are_unchanged():
    params = snapshot()["params"]
    for name in ESTIMATORS:
        assert params[name] == RECORDED["params"][name], name
