"""The hybrid photo-D on Dask: a patch-shuffled DataFrame, one task per partition.

The bodies of :meth:`HybridPhotoD.fit_predict_dask` and
:meth:`HybridPhotoD.predict_dask` (documented there); each partition is
processed by :func:`~skstellar.photod.patch_job._run_partition` in a Dask task.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from ..parameters import validate_parameters
from .patch_job import _ROW, _UNIQ, _run_partition

__all__ = ["fit_predict_dask", "predict_dask"]


def fit_predict_dask(hybrid, catalog, client=None, npartitions=None, shuffle_method=None):
    """Run :meth:`HybridPhotoD.fit_predict_dask` for ``hybrid`` (see there).

    Parameters
    ----------
    hybrid : HybridPhotoD
        The estimator; fitted in place (``patch_models_`` etc.).
    catalog : pandas.DataFrame or dask.dataframe.DataFrame
        Stars with sky positions [deg] and the feature columns [mag].
    client : distributed.Client or None, default=None
        Where to compute; None uses Dask's current default.
    npartitions : int or None, default=None
        Partitions after the shuffle; None uses the number of patches (<= 256).
    shuffle_method : {"p2p", "tasks", "disk"} or None, default=None
        Dask's shuffle algorithm.

    Returns
    -------
    pandas.DataFrame
        As :meth:`HybridPhotoD.fit_predict`.
    """
    import dask
    import dask.dataframe as dd

    t_start = time.perf_counter()
    validate_parameters(hybrid)
    if isinstance(hybrid.warm_start, str):
        raise ValueError(
            "warm_start='first' needs one patch trained before the others and is supported "
            "by fit_predict only; on Dask pass a StudentWeights (e.g. "
            "PhotoDNetwork.export_weights() of a prior or neighbouring patch's student)."
        )
    hybrid.warm_start_patch_ = None
    if isinstance(catalog, dd.DataFrame):
        ddf = catalog
        hybrid._check_columns(ddf.columns)
        plain = hybrid._plain()
        base_d = ddf.map_partitions(
            lambda p: pd.Series(plain._base_pixels(p), index=p.index, dtype=np.int64),
            meta=pd.Series(dtype=np.int64))
        counts = base_d.value_counts().compute()
        if counts.sum() == 0:
            raise ValueError("Found a catalogue with 0 stars while a minimum of 1 is required.")
        mapping = hybrid._plan(counts.index.to_numpy(), counts.to_numpy())
        lengths = ddf.map_partitions(len).compute()
        offsets = np.concatenate([[0], np.cumsum(np.asarray(lengths))[:-1]]).tolist()
        index_d = ddf.map_partitions(lambda p: p.index.to_series(),
                                     meta=pd.Series(dtype=ddf.index.dtype))

        def tag(p, offsets, partition_info=None):
            start = offsets[partition_info["number"]] if partition_info else 0
            return p.assign(**{_UNIQ: plain._patch_uniq(plain._base_pixels(p), mapping),
                               _ROW: np.arange(start, start + len(p), dtype=np.int64)})

        meta = ddf._meta.assign(**{_UNIQ: np.int64(0), _ROW: np.int64(0)}).iloc[:0]
        work = ddf.map_partitions(tag, offsets, meta=meta)
        index = None
    else:
        frame, work_pd, mapping = hybrid._prepare(catalog)
        n_patches = work_pd[_UNIQ].nunique()
        work = dd.from_pandas(work_pd, npartitions=max(1, min(n_patches, 256)), sort=False)
        index = frame.index
    n_parts = npartitions or max(1, min(len(set(mapping.values())), 256))
    shuffled = work.shuffle(on=_UNIQ, npartitions=int(n_parts), shuffle_method=shuffle_method)
    job = hybrid._job()
    job_d = dask.delayed(job, pure=True, traverse=False)
    tasks = [dask.delayed(_run_partition, pure=True)(part, job_d) for part in shuffled.to_delayed()]
    outs = client.gather(client.compute(tasks)) if client is not None else dask.compute(*tasks)
    frames, models, summaries = [], {}, []
    for res, mods, summ in outs:
        frames.append(res)
        models.update(mods)
        summaries.extend(summ)
        for s in summ:
            hybrid._log(s)
    if index is None:
        index = pd.Index(index_d.compute().to_numpy())
    result = hybrid._assemble(frames, index)
    hybrid._store(job, mapping, models, summaries, time.perf_counter() - t_start)
    return result


def predict_dask(hybrid, ddf):
    """Run :meth:`HybridPhotoD.predict_dask` for ``hybrid`` (see there).

    Parameters
    ----------
    hybrid : HybridPhotoD
        A fitted estimator.
    ddf : dask.dataframe.DataFrame
        Stars with sky positions and the feature columns.

    Returns
    -------
    dask.dataframe.DataFrame
        Partition-wise :meth:`HybridPhotoD.predict` tables (lazy).
    """
    check_is_fitted(hybrid, "patch_models_")
    meta = hybrid._empty_result()
    meta.index = ddf._meta.index[:0]
    return ddf.map_partitions(lambda p: hybrid.predict(p) if len(p) else
                              hybrid._empty_result().set_axis(p.index[:0]), meta=meta)
