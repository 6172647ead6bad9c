r"""The interaction learning-curve study, run cell by cell on dask.distributed.

How fast do models with interaction terms converge as the training set grows, and does a
model that *learns* its prior scales get the best of both worlds: the base model's speed
on little data and the interaction model's accuracy on a lot?

For a scenario (a configuration of :func:`~bayesmoe.experiments.make_interaction_data`,
:mod:`~.scenarios`) and a replicate :math:`r`, one data set of ``n`` rows is drawn; the
first half is the training pool and the second half the test set. Each model of the zoo
(:mod:`~.zoo`) is fitted to the first :math:`n_k` training rows for every :math:`n_k` of
the log grid (:func:`training_sizes`) and scored on the test half by

.. math::

    \text{mse}_k = \frac1{m}\sum_{i \in \text{test}} (\hat y_i - y_i)^2, \qquad
    \text{excess}_k = \frac1{m}\sum_{i \in \text{test}} (\hat y_i - f(x_i))^2,

where :math:`f` is the true mean, so :math:`\text{mse} \approx \text{excess} + \sigma^2`.
The cumulative regret prices every training row at the excess risk of the model fitted on
the grid block that contains it:

.. math::

    \text{regret}_k = \sum_{j \le k} (n_j - n_{j-1})\, \text{excess}_j, \qquad n_0 = 0,

i.e. the total excess squared error if rows arrived one by one and the model were
refitted at every grid size.

A *cell* is one (scenario, replicate, model): it fits all grid sizes of one data set
(:func:`run_cell`, :mod:`~.cells`) and is the unit of work sent to a dask worker
(:func:`run_study`, :mod:`~.runner`). Cells are saved one Parquet file each as they
finish (atomically), so an interrupted study resumes where it stopped, and a cell that
raises is saved with its error instead of stopping the others. :mod:`~.summaries` compares
the learned models with the best fixed choice cell by cell (:func:`headline`) and over the
grid (:func:`grid_average`); :mod:`~.plots` draws the figures.

The learned-hyperprior models are :func:`~bayesmoe.builders.interaction_regression` in its
collapsed form, fitted by :func:`bayesmoe.fit` with nutpie: the compiled sampler is cached
by model structure, so each worker compiles once per (design shape, hyperprior family) and
every later fit swaps its sufficient statistics in; a fit's cost does not grow with
:math:`n`.
"""

from bayesmoe.studies.learning_curve.cells import run_cell
from bayesmoe.studies.learning_curve.runner import (
    WORKER_ENV,
    cell_path,
    gather,
    run_study,
    write_parquet_atomic,
)
from bayesmoe.studies.learning_curve.scenarios import (
    ALL_SCENARIOS,
    SCENARIOS,
    Scenario,
    StudySettings,
    training_sizes,
)
from bayesmoe.studies.learning_curve.summaries import (
    grid_average,
    headline,
    summary_text,
    write_report,
)
from bayesmoe.studies.learning_curve.zoo import (
    ADAPTIVE_MODELS,
    FIXED_MODELS,
    LEARNED_MODELS,
    MODELS,
    STUDY_MODELS,
    compile_designs,
)

__all__ = [
    "ADAPTIVE_MODELS",
    "ALL_SCENARIOS",
    "FIXED_MODELS",
    "LEARNED_MODELS",
    "MODELS",
    "SCENARIOS",
    "STUDY_MODELS",
    "WORKER_ENV",
    "Scenario",
    "StudySettings",
    "cell_path",
    "compile_designs",
    "gather",
    "grid_average",
    "headline",
    "run_cell",
    "run_study",
    "summary_text",
    "training_sizes",
    "write_parquet_atomic",
    "write_report",
]
