"""The public API as a snapshot: exported names per public module, estimator parameters.

``python -m tests.golden.api`` records ``api.json``; ``tests/test_api_snapshot.py`` checks
that no recorded name disappeared and that every estimator's ``get_params()`` keys are
unchanged. A deliberate change of the API re-records the file in its own commit.
"""

from __future__ import annotations

import importlib
import inspect
import json
from pathlib import Path

PATH = Path(__file__).parent / "api.json"

MODULES = (
    "bayesmoe",
    "bayesmoe.builders",
    "bayesmoe.comparison",
    "bayesmoe.data",
    "bayesmoe.estimators",
    "bayesmoe.experiments",
    "bayesmoe.fitting",
    "bayesmoe.formula",
    "bayesmoe.plots",
    "bayesmoe.prior_transfer",
    "bayesmoe.priors",
    "bayesmoe.stacking",
    "bayesmoe.streaming",
)
ESTIMATORS = ("InteractionRegression", "MixtureRegression", "GatedExperts", "HierarchicalStacking")


def public_names(module_name: str) -> list[str]:
    module = importlib.import_module(module_name)
    if hasattr(module, "__all__"):
        return sorted(module.__all__)
    names = []
    for name, value in vars(module).items():
        if name.startswith("_") or inspect.ismodule(value):
            continue
        origin = getattr(value, "__module__", None)
        if callable(value) and not (origin or "").startswith("bayesmoe"):
            continue  # an imported helper (np, pm, dataclass, ...) is not our API
        names.append(name)
    return sorted(names)


def snapshot() -> dict:
    import bayesmoe

    return {
        "modules": {m: public_names(m) for m in MODULES},
        "params": {e: sorted(getattr(bayesmoe, e)().get_params()) for e in ESTIMATORS},
    }


if __name__ == "__main__":
    PATH.write_text(json.dumps(snapshot(), indent=1) + "\n")
    print(f"recorded {PATH}")
