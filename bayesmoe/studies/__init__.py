"""Research studies run on the library; not part of its API.

:mod:`bayesmoe.studies.learning_curve`
    How fast do regressions with interaction terms converge as the training set grows, and
    does a model that learns separate prior scales for base and interaction weights match
    the best fixed choice at every size? Run by ``bayesmoe convergence`` and rendered in
    ``notebooks/convergence_study.ipynb``.

The library does not import this package (it pulls in scikit-learn and dask.distributed);
the command line and the old import paths :mod:`bayesmoe.experiments.convergence` and
:mod:`bayesmoe.experiments.study_plots` do.
"""
