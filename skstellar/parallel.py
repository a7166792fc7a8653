"""Run any fitted skstellar estimator or Pipeline over a Dask collection, partition by partition.

One scale-out path for every method: a fitted estimator (or ``Pipeline``)
is shipped once to the workers of a ``distributed`` cluster and its
``predict`` (with ``return_std``), ``predict_proba`` or ``transform`` runs on
each partition of a ``dask.dataframe``, a row-chunked ``dask.array``, a
:class:`DaskSpectra` (spectra whose flux/ivar are dask arrays) or an LSDB/HATS
catalogue (HEALPix partitions). Nothing is fitted on the cluster: the model
is trained in-process on a training set, then applied to a survey.

What comes from where:

* plain single-output ``predict`` and 1-D ``transform`` outputs of a dask
  array go through dask-ml's :class:`dask_ml.wrappers.ParallelPostFit` when
  dask-ml is installed;
* written here, because ``ParallelPostFit`` cannot do it: ``predict(X,
  return_std=True)`` (two outputs), multi-output predictions of a dask array
  (``ParallelPostFit`` drops the output axis: dask-ml 2025.1 fails with
  "could not broadcast input array from shape (25,2) into shape (25,)"),
  dataframes (dask-expr's ``map_partitions`` tokenizes ParallelPostFit's
  model argument and a fitted torch model has no deterministic pickle:
  ``TokenizationError``; here the model is one ``dask.delayed`` key),
  :class:`~skstellar.covariance.CovariantFeatures` outputs (values and packed
  covariance blocks, as :class:`LazyCovariantFeatures`), spectra batches as
  input, LSDB catalogues, and the torch thread count of each task.

Results are identical to in-process calls on the whole table: every
skstellar estimator predicts a row independently of the other rows of its
batch (deterministic passes and ``mc_mode="network"`` MC dropout, whose
masks are re-seeded from ``random_state`` in every call). ``mc_mode=
"per_sample"`` draws masks per row position and is therefore not
partition-invariant.

For streaming on one machine (bounded memory without a cluster) use
:func:`iter_chunks`.
"""

from __future__ import annotations

import operator

import numpy as np

from .covariance import CovariantFeatures
from .spectrum import SpectrumBatch

__all__ = [
    "DaskSpectra",
    "LazyCovariantFeatures",
    "iter_chunks",
    "merged_row_chunks",
    "predict_partitions",
    "transform_partitions",
    "worker_torch_threads",
]


def _require_dask():
    try:
        import dask.array  # noqa: F401
    except ImportError as exc:  # pragma: no cover - dask is a dev dependency
        raise ImportError("skstellar.parallel needs dask: pip install 'skstellar[dask]'.") from exc


def worker_torch_threads():
    """Torch threads a task should use: the worker's thread count inside a Dask worker.

    Returns
    -------
    int or None
        ``nthreads`` of the ``distributed`` worker running the caller, or
        None outside a worker (torch's setting is then left alone).
    """
    try:
        from distributed import get_worker

        return int(get_worker().state.nthreads)
    except (ImportError, ValueError, AttributeError):
        return None


def _call(estimator, part, method, kwargs, threads):
    """Run ``estimator.method(part, **kwargs)`` with a torch thread count (worker side)."""
    n = worker_torch_threads() if threads == "worker" else threads
    if n is None:
        return getattr(estimator, method)(part, **kwargs)
    from .nn.threads import torch_threads

    with torch_threads(n):
        return getattr(estimator, method)(part, **kwargs)


# ------------------------------------------------------------------ spectra
class DaskSpectra:
    """A partitioned spectra batch, the dask counterpart of a SpectrumBatch.

    See :class:`~skstellar.spectrum.SpectrumBatch`.

    Parameters
    ----------
    wavelength : ndarray of shape (n_pixels,) or dask array of shape (n_spectra, n_pixels)
        Wavelengths in Angstrom: one grid shared by all spectra (numpy), or
        one grid per spectrum (a dask array chunked like ``flux``).
    flux : dask array of shape (n_spectra, n_pixels)
        Fluxes; partitions are its row chunks (pixel chunks are merged).
    ivar, mask : dask arrays like ``flux``, optional
        Inverse variance [flux**-2] and bad-pixel mask.

    Notes
    -----
    Each partition becomes a ``SpectrumBatch`` on the worker, so any
    estimator or Pipeline that takes a ``SpectrumBatch`` (the resampler,
    the galaxy CNN pipeline) runs unchanged.
    """

    def __init__(self, wavelength, flux, ivar=None, mask=None):
        _require_dask()
        import dask.array as da

        if not isinstance(flux, da.Array) or flux.ndim != 2:
            raise ValueError("DaskSpectra: flux must be a 2-D dask array (n_spectra, n_pixels).")
        self.flux = flux.rechunk({1: -1})
        self.wavelength = self._like(wavelength, "wavelength", shared_ok=True)
        self.ivar = self._like(ivar, "ivar")
        self.mask = self._like(mask, "mask")

    def _like(self, a, name, shared_ok=False):
        import dask.array as da

        if a is None:
            return None
        if shared_ok and not isinstance(a, da.Array) and np.ndim(a) == 1:
            a = np.asarray(a, dtype=np.float64)
            if a.shape[0] != self.flux.shape[1]:
                raise ValueError(
                    f"DaskSpectra: shared wavelength grid has {a.shape[0]} pixels but flux "
                    f"has {self.flux.shape[1]}."
                )
            return a
        if not isinstance(a, da.Array):
            a = da.from_array(np.asarray(a), chunks=self.flux.chunks)
        if a.shape != self.flux.shape:
            raise ValueError(
                f"DaskSpectra: {name} shape {a.shape} differs from flux {self.flux.shape}.")
        return a.rechunk(self.flux.chunks)

    def __len__(self):
        return int(self.flux.shape[0])

    def partitions(self):
        """(delayed SpectrumBatch, n_rows) for each row chunk."""
        import dask

        def blocks(a):
            if a is None or isinstance(a, np.ndarray):
                return [a] * len(self.flux.chunks[0])
            return list(a.to_delayed()[:, 0])

        cols = [blocks(a) for a in (self.wavelength, self.flux, self.ivar, self.mask)]
        make = dask.delayed(SpectrumBatch, pure=True)
        return [(make(*parts), n) for parts, n in zip(zip(*cols), self.flux.chunks[0])]

    def head(self, n=1):
        """The first ``n`` spectra as an in-memory SpectrumBatch (computed)."""
        w = self.wavelength
        w = w if (w is None or isinstance(w, np.ndarray)) else w[:n].compute()
        pick = [None if a is None else a[:n].compute() for a in (self.ivar, self.mask)]
        return SpectrumBatch(w, self.flux[:n].compute(), *pick)


# --------------------------------------------------------------- partitions
def _partitions(X):
    """(list of (delayed partition, n_rows or nan), head(1) computed in-process)."""
    _require_dask()
    import dask.array as da
    import dask.dataframe as dd

    if type(X).__module__.startswith("lsdb") and hasattr(X, "to_dask_dataframe"):
        X = X.to_dask_dataframe()
    if isinstance(X, DaskSpectra):
        return X.partitions(), X.head(1)
    if isinstance(X, dd.DataFrame):
        return [(p, np.nan) for p in X.to_delayed()], X.head(1, npartitions=-1)
    if isinstance(X, da.Array):
        if X.ndim != 2:
            raise ValueError(f"Need a 2-D dask array (n_rows, n_features); got {X.ndim}-D.")
        X = X.rechunk({1: -1})
        return list(zip(X.to_delayed()[:, 0], X.chunks[0])), X[:1].compute()
    raise TypeError(
        "Expected a dask.dataframe.DataFrame, a 2-D dask.array, a DaskSpectra or an LSDB "
        f"catalogue; got {type(X).__name__}. For in-memory data call the estimator directly, "
        "or use iter_chunks to stream."
    )


def merged_row_chunks(chunks, rows_per_task):
    """Row chunk sizes with consecutive chunks merged until each holds ``rows_per_task`` rows.

    Parameters
    ----------
    chunks : sequence of int
        Rows of each partition, in order.
    rows_per_task : int
        Minimum rows of a merged partition (the last one may hold fewer,
        unless it can join the one before).

    Returns
    -------
    tuple of int
        New chunk sizes with the same total.
    """
    rows_per_task = int(rows_per_task)
    if rows_per_task < 1:
        raise ValueError(f"rows_per_task must be >= 1, got {rows_per_task}.")
    out, acc = [], 0
    for c in chunks:
        acc += int(c)
        if acc >= rows_per_task:
            out.append(acc)
            acc = 0
    if acc and out:
        out[-1] += acc  # a short tail joins the chunk before it
    elif acc:
        out.append(acc)
    return tuple(out)


def _with_rows_per_task(X, rows_per_task):
    """``X`` with its row partitions merged to ``rows_per_task`` rows (arrays and spectra)."""
    if rows_per_task is None:
        return X
    import dask.array as da

    if isinstance(X, DaskSpectra):
        rows = merged_row_chunks(X.flux.chunks[0], rows_per_task)
        return DaskSpectra(X.wavelength, X.flux.rechunk({0: rows}), X.ivar, X.mask)
    if isinstance(X, da.Array):
        return X.rechunk({0: merged_row_chunks(X.chunks[0], rows_per_task)})
    raise ValueError(
        "rows_per_task applies to dask arrays and DaskSpectra; repartition a dask dataframe "
        "with its own .repartition()."
    )


def _lazy_rows(parts, like):
    """``(delayed output, n_rows)`` parts as one dask array, in order, typed like ``like``."""
    import dask.array as da

    like = np.asarray(like)
    arrays = [da.from_delayed(o, shape=(n,) + like.shape[1:], dtype=like.dtype) for o, n in parts]
    return arrays[0] if len(arrays) == 1 else da.concatenate(arrays, axis=0)


def _parallel_post_fit(estimator, X, method, probe):
    """dask-ml's ParallelPostFit for the cases it handles, else None."""
    try:
        from dask_ml.wrappers import ParallelPostFit
    except ImportError:
        return None
    import dask.array as da

    probe = np.asarray(probe)
    if not isinstance(X, da.Array) or method == "predict_proba" or probe.ndim != 1:
        return None  # our own tasks (see the module docstring)
    meta = np.empty((0,) + probe.shape[1:], dtype=probe.dtype)
    if method == "predict":
        return ParallelPostFit(estimator, predict_meta=meta).predict(X)
    return ParallelPostFit(estimator, transform_meta=meta).transform(X)


def _partition_tasks(estimator, X, method, kwargs, threads, use_dask_ml, rows_per_task):
    """Probe, then dask-ml's lazy output or one delayed task per partition.

    Returns ``(probe, out, tasks)``: the method's output on the first row
    (computed in-process, so that errors show early), dask-ml's lazy result
    (or None) and, when that is None, ``(delayed output, n_rows)`` per partition.
    """
    X = _with_rows_per_task(X, rows_per_task)
    parts, head = _partitions(X)
    probe = _call(estimator, head, method, kwargs, None)  # fails early, in-process
    if use_dask_ml and not kwargs and threads is None:  # (it takes dask arrays only)
        out = _parallel_post_fit(estimator, X, method, probe)
        if out is not None:
            return probe, out, None
    import dask

    # One key for the fitted model: a distributed scheduler ships it once per worker.
    est = dask.delayed(estimator, pure=True, traverse=False)
    run = dask.delayed(_call, pure=True)
    return probe, None, [(run(est, p, method, kwargs, threads), n) for p, n in parts]


def predict_partitions(estimator, X, *, return_std=False, method="predict", threads=None,
                       use_dask_ml=True, rows_per_task=None):
    """Lazy ``predict`` (optionally ``return_std``) of a fitted estimator, partition by partition.

    Parameters
    ----------
    estimator : fitted estimator or Pipeline
        Any skstellar estimator (or a Pipeline ending in one).
    X : dask.dataframe.DataFrame, 2-D dask.array, DaskSpectra or lsdb.Catalog
        The survey table, spectra or HEALPix catalogue.
    return_std : bool, default=False
        Also return the standard deviation (``predict(X, return_std=True)``).
    method : {"predict", "predict_proba"}, default="predict"
    threads : int, "worker" or None, default=None
        Torch intra-op threads of each task: ``"worker"`` uses the Dask
        worker's ``nthreads``, an int that many; None leaves torch's
        setting alone (a ``distributed`` nanny starts its workers with
        ``OMP_NUM_THREADS=1``, so torch already runs one thread per worker
        process and ``n_workers`` processes do not oversubscribe the cores).
    use_dask_ml : bool, default=True
        Route the cases dask-ml's ``ParallelPostFit`` supports through it
        (single-output predictions of a dask array, with ``threads=None``).
    rows_per_task : int or None, default=None
        Merge consecutive row chunks of a dask array or ``DaskSpectra`` so
        each task predicts at least this many rows (None keeps the input's
        chunks). Every task costs the client and scheduler about 15-30 ms
        of CPU on the 2-core test machine, taken from the workers when they
        share its cores: give each task at least a few hundred
        milliseconds of work (e.g. 512 spectra for the galaxy CNN).

    Returns
    -------
    dask.array.Array, or (mean, std) of dask arrays
        One row per input row, partition order kept. Compute ``mean`` and
        ``std`` together (``dask.compute(mean, std)``) so each partition
        runs once.

    Examples
    --------
    >>> from distributed import Client, LocalCluster          # doctest: +SKIP
    >>> client = Client(LocalCluster(n_workers=2, threads_per_worker=1))  # doctest: +SKIP
    >>> mean, std = predict_partitions(pipe, ddf, return_std=True)        # doctest: +SKIP
    >>> mean, std = dask.compute(mean, std)                               # doctest: +SKIP
    """
    if method not in ("predict", "predict_proba"):
        raise ValueError(f"method must be 'predict' or 'predict_proba', got {method!r}.")
    if return_std and method != "predict":
        raise ValueError("return_std=True is only available with method='predict'.")
    kwargs = {"return_std": True} if return_std else {}
    probe, out, outs = _partition_tasks(estimator, X, method, kwargs, threads, use_dask_ml,
                                        rows_per_task)
    if out is not None:
        return out
    import dask

    if not return_std:
        return _lazy_rows(outs, probe)
    get = dask.delayed(operator.getitem, pure=True)
    return tuple(_lazy_rows([(get(o, i), n) for o, n in outs], probe[i]) for i in (0, 1))


# ------------------------------------------------------------- transform
class LazyCovariantFeatures:
    """Lazy :class:`~skstellar.covariance.CovariantFeatures`: values and blocks as dask arrays.

    Attributes
    ----------
    values : dask array of shape (n_samples, n_features)
    blocks : tuple of (columns, dask array of shape (n_samples, k(k+1)/2))
    feature_names : ndarray of str or None

    Notes
    -----
    Memory stays bounded when the arrays are written partition by
    partition (``dask.array.to_zarr``, ``to_npy_stack``) or reduced;
    :meth:`compute` brings everything into one in-memory container.
    """

    def __init__(self, values, blocks, feature_names=None):
        self.values = values
        self.blocks = tuple(blocks)
        self.feature_names = feature_names

    @property
    def shape(self):
        """(n_samples, n_features) of the values."""
        return self.values.shape

    def compute(self, **kwargs):
        """All partitions in memory as one ``CovariantFeatures`` (one pass over the data)."""
        import dask

        arrays = dask.compute(self.values, *[p for _, p in self.blocks], **kwargs)
        return CovariantFeatures(
            arrays[0], [(c, a) for (c, _), a in zip(self.blocks, arrays[1:])], self.feature_names)


def transform_partitions(estimator, X, *, threads=None, use_dask_ml=True, rows_per_task=None):
    """Lazy ``transform`` of a fitted transformer or Pipeline, partition by partition.

    Parameters
    ----------
    estimator : fitted transformer or Pipeline
    X : dask.dataframe.DataFrame, 2-D dask.array, DaskSpectra or lsdb.Catalog
    threads : int, "worker" or None, default=None
        As in :func:`predict_partitions`.
    use_dask_ml : bool, default=True
        Route 1-D outputs of a dask array through dask-ml's
        ``ParallelPostFit`` (only with ``threads=None``, as it cannot set
        torch threads per task).
    rows_per_task : int or None, default=None
        As in :func:`predict_partitions`.

    Returns
    -------
    dask.array.Array or LazyCovariantFeatures
        An array output (pandas outputs become arrays) or, for transformers
        that return :class:`~skstellar.covariance.CovariantFeatures` (the
        XP normaliser), their lazy counterpart.
    """
    # (dask-ml's wrapper returns None for a CovariantFeatures probe: it is 2-D)
    probe, out, outs = _partition_tasks(estimator, X, "transform", {}, threads, use_dask_ml,
                                        rows_per_task)
    if out is not None:
        return out
    import dask

    if not isinstance(probe, CovariantFeatures):
        arr = dask.delayed(np.asarray, pure=True)
        return _lazy_rows([(arr(o), n) for o, n in outs], probe)
    attr = dask.delayed(_cov_part, pure=True)
    values = _lazy_rows([(attr(o, -1), n) for o, n in outs], probe.values)
    blocks = [(cols, _lazy_rows([(attr(o, b), n) for o, n in outs], packed))
              for b, (cols, packed) in enumerate(probe.blocks)]
    return LazyCovariantFeatures(values, blocks, probe.feature_names)


def _cov_part(cf, b):
    return cf.values if b < 0 else cf.blocks[b][1]


# --------------------------------------------------------------- streaming
def iter_chunks(estimator, X, *, method="predict", chunk_rows=65536, **kwargs):
    """Apply a fitted estimator to consecutive row chunks of in-memory data (a generator).

    Bounded memory without a cluster: with ``chunk_rows`` rows at a time
    a Gaia-size XP table never needs all its covariances at once (the XP
    normaliser's output is ~12 kB per source). Rows are independent, so the
    concatenated results equal one call on everything.

    Parameters
    ----------
    estimator : fitted estimator or Pipeline
    X : DataFrame, ndarray, SpectrumBatch, dict of columns or anything with ``iloc``/slicing
    method : str, default="predict"
        Method to call (``"predict"``, ``"predict_proba"``, ``"transform"``...).
    chunk_rows : int, default=65536
        Rows per call.
    **kwargs
        Passed to the method (e.g. ``return_std=True``).

    Yields
    ------
    (slice, result)
        The rows of ``X`` each result belongs to and the method's output.
    """
    chunk_rows = int(chunk_rows)
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}.")
    n = len(X)
    for start in range(0, n, chunk_rows):
        rows = slice(start, min(start + chunk_rows, n))
        yield rows, getattr(estimator, method)(_take(X, rows), **kwargs)


def _take(X, rows):
    if hasattr(X, "iloc"):
        return X.iloc[rows]
    if isinstance(X, dict):
        return {k: v[rows] for k, v in X.items()}
    return X[rows]
