"""One BLAS thread while fitting: the matrices are small and chains already run in parallel."""

from __future__ import annotations

from contextlib import nullcontext

__all__ = ["single_threaded_blas"]


def single_threaded_blas():
    """Limit BLAS and OpenMP to one thread inside a ``with`` block.

    Every BLAS call of a fit here is small (K-by-K, (d+1)-square, L-BFGS-B's vector updates,
    a collapsed model's Cholesky), so waking BLAS threads costs more than the arithmetic:
    with multithreaded OpenBLAS, SciPy's C L-BFGS-B (>= 1.15) spends most of its time
    waking threads (scipy/scipy#22438, #23191), and so does a collapsed model's
    log-density and gradient. threadpoolctl ships with scikit-learn; without it we do not
    limit.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return nullcontext()
    return threadpool_limits(limits=1)
