"""skstellar.parallel: estimators and Pipelines over Dask partitions on a 2-worker LocalCluster."""

import numpy as np
import pandas as pd
import pytest

dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")
import dask.array as da  # noqa: E402
import dask.dataframe as dd  # noqa: E402

from skstellar.parallel import (  # noqa: E402
    DaskSpectra,
    LazyCovariantFeatures,
    iter_chunks,
    predict_partitions,
    transform_partitions,
)


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=40)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def mdwarf():
    from skstellar.cli import make_mdwarf_pipeline
    from skstellar.datasets import make_mdwarf_photometry
    from skstellar.mdwarf.selection import select_mdwarfs

    cat, _ = select_mdwarfs(make_mdwarf_photometry(900, random_state=1), feh="fe_h")
    cat = cat.reset_index(drop=True)
    pipe = make_mdwarf_pipeline(random_state=0, max_epochs=2).fit(cat, cat["fe_h"])
    return pipe, cat


@pytest.fixture(scope="module")
def galaxy():
    from sklearn.pipeline import make_pipeline

    from skstellar.datasets import make_galaxy_spectra
    from skstellar.galaxy import SpectralCNNRegressor
    from skstellar.galaxy.evaluation import galaxy_input_pipeline

    batch = make_galaxy_spectra(96, random_state=3, z_range=(0.0, 0.1))
    y = np.asarray(batch.meta["oh"])
    cnn = SpectralCNNRegressor(channels=(4, 8), max_epochs=1, batch_size=32, dropout=0.2,
                               n_mc_passes=5, random_state=0)
    pipe = make_pipeline(galaxy_input_pipeline(step=8.0), cnn).fit(batch, y)
    return pipe, batch


def test_mdwarf_pipeline_dataframe_matches_in_process(client, mdwarf):
    pipe, cat = mdwarf
    ddf = dd.from_pandas(cat, npartitions=3)
    mean, std = predict_partitions(pipe, ddf, return_std=True)
    mean, std = dask.compute(mean, std)
    ref_mean, ref_std = pipe.predict(cat, return_std=True)
    assert mean.shape == ref_mean.shape == (len(cat),)
    np.testing.assert_allclose(mean, ref_mean, rtol=0, atol=1e-6)
    np.testing.assert_allclose(std, ref_std, rtol=0, atol=1e-6)
    assert std.std() > 0  # an MC-dropout spread, not a constant
    # plain predict and a per-task torch thread count
    np.testing.assert_allclose(predict_partitions(pipe, ddf, threads=1).compute(), ref_mean,
                               atol=1e-6)


def test_mdwarf_transform_dataframe(client, mdwarf):
    pipe, cat = mdwarf
    mags = pipe[:-1]  # AbsoluteMagnitudes, pandas output
    out = transform_partitions(mags, dd.from_pandas(cat, npartitions=4))
    assert out.shape[1] == 8
    np.testing.assert_array_equal(out.compute(), np.asarray(mags.transform(cat)))


def test_galaxy_cnn_spectra_partitions(client, galaxy):
    pipe, batch = galaxy
    spectra = DaskSpectra(
        da.from_array(batch.wavelength, chunks=(40, -1)) if batch.wavelength.ndim == 2
        else batch.wavelength,
        da.from_array(batch.flux, chunks=(40, -1)),
        ivar=None if batch.ivar is None else da.from_array(batch.ivar, chunks=(40, -1)),
    )
    mean, std = predict_partitions(pipe, spectra, return_std=True)
    assert mean.numblocks[0] == 3
    mean, std = dask.compute(mean, std)
    ref = pipe.predict(batch, return_std=True)
    np.testing.assert_allclose(mean, ref[0], rtol=0, atol=1e-5)
    np.testing.assert_allclose(std, ref[1], rtol=0, atol=1e-5)
    # 3 partitions of 40, 40, 16 rows merged into one task of at least 64 rows
    merged = predict_partitions(pipe, spectra, return_std=True, rows_per_task=64)
    assert merged[0].numblocks[0] == 1
    merged = dask.compute(*merged)
    np.testing.assert_allclose(merged[0], ref[0], rtol=0, atol=1e-5)
    np.testing.assert_allclose(merged[1], ref[1], rtol=0, atol=1e-5)
    # deterministic pass of the same CNN with a worker thread count set per task
    pipe[-1].set_params(n_mc_passes=0)
    try:
        det = predict_partitions(pipe, spectra, threads="worker").compute()
        np.testing.assert_allclose(det, pipe.predict(batch), rtol=0, atol=1e-5)
    finally:
        pipe[-1].set_params(n_mc_passes=5)


def test_dask_array_single_and_multi_output(client):
    pytest.importorskip("dask_ml")
    from skstellar.mdwarf import MDwarfMetallicityRegressor

    rng = np.random.RandomState(0)
    X = rng.normal(size=(300, 8))
    Y = np.c_[X[:, 0] + X[:, 1], X[:, 2]]
    x = da.from_array(X, chunks=(70, -1))
    # single output: dask-ml's ParallelPostFit builds the graph
    reg1 = MDwarfMetallicityRegressor(max_epochs=2, random_state=0).fit(X, Y[:, 0])
    lazy = predict_partitions(reg1, x)
    assert any("_predict" in str(k) for k in dict(lazy.__dask_graph__()))
    np.testing.assert_allclose(lazy.compute(), reg1.predict(X), rtol=0, atol=1e-6)
    # two outputs: ParallelPostFit drops the output axis, our tasks keep it
    reg = MDwarfMetallicityRegressor(max_epochs=2, random_state=0).fit(X, Y)
    out = predict_partitions(reg, x).compute()
    np.testing.assert_allclose(out, reg.predict(X), rtol=0, atol=1e-6)
    assert out.shape == (300, 2)


def test_rows_per_task_merges_partitions(client):
    from skstellar.mdwarf import MDwarfMetallicityRegressor
    from skstellar.parallel import merged_row_chunks

    assert merged_row_chunks((70, 70, 70, 70, 20), 128) == (140, 160)
    assert merged_row_chunks((70, 70, 70, 70, 20), 1) == (70, 70, 70, 70, 20)
    assert merged_row_chunks((30,), 100) == (30,)
    with pytest.raises(ValueError, match="rows_per_task"):
        merged_row_chunks((10,), 0)
    rng = np.random.RandomState(1)
    X = rng.normal(size=(300, 8))
    reg = MDwarfMetallicityRegressor(max_epochs=2, random_state=0).fit(X, X[:, 0])
    x = da.from_array(X, chunks=(70, -1))
    for threads in (None, 1):  # dask-ml's route and ours
        lazy = predict_partitions(reg, x, rows_per_task=128, threads=threads)
        assert lazy.chunks[0] == (140, 160)
        np.testing.assert_allclose(lazy.compute(), reg.predict(X), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="repartition"):
        predict_partitions(reg, dd.from_pandas(pd.DataFrame(X), npartitions=2), rows_per_task=9)


def test_xp_normalizer_covariances_partitioned(client):
    from skstellar.datasets import make_xp_catalog
    from skstellar.preprocessing import XPNormalizer

    cat = make_xp_catalog(60, random_state=4)
    norm = XPNormalizer().fit(cat)
    with dask.config.set({"dataframe.convert-string": False}):
        ddf = dd.from_pandas(cat, npartitions=3)
        lazy = transform_partitions(norm, ddf)
    assert isinstance(lazy, LazyCovariantFeatures)
    got, ref = lazy.compute(), norm.transform(cat)
    np.testing.assert_array_equal(got.values, ref.values)
    assert len(got.blocks) == len(ref.blocks)
    for (c1, p1), (c2, p2) in zip(got.blocks, ref.blocks):
        np.testing.assert_array_equal(c1, c2)
        np.testing.assert_array_equal(p1, p2)


def test_iter_chunks_bounded_and_identical(mdwarf):
    pipe, cat = mdwarf
    parts = list(iter_chunks(pipe, cat, chunk_rows=97, return_std=True))
    assert len(parts) == -(-len(cat) // 97)
    mean = np.concatenate([m for _, (m, _) in parts])
    std = np.concatenate([s for _, (_, s) in parts])
    ref = pipe.predict(cat, return_std=True)
    np.testing.assert_allclose(mean, ref[0], atol=1e-6)
    np.testing.assert_allclose(std, ref[1], atol=1e-6)
    with pytest.raises(ValueError, match="chunk_rows"):
        next(iter_chunks(pipe, cat, chunk_rows=0))


def test_iter_chunks_xp_normalizer_streams_identical_rows():
    """Bounded memory for XP covariances: each chunk equals the same rows of one call."""
    from skstellar.datasets import make_xp_catalog
    from skstellar.preprocessing import XPNormalizer

    cat = make_xp_catalog(50, random_state=5)
    norm = XPNormalizer(chunk_size=8).fit(cat)
    full = norm.transform(cat)
    seen = 0
    for rows, part in iter_chunks(norm, cat, method="transform", chunk_rows=19):
        assert len(part) == rows.stop - rows.start <= 19
        ref = full[rows]
        np.testing.assert_array_equal(part.values, ref.values)
        for (_, a), (_, b) in zip(part.blocks, ref.blocks):
            np.testing.assert_array_equal(a, b)
        seen += len(part)
    assert seen == len(cat)


def test_bad_inputs(mdwarf):
    pipe, cat = mdwarf
    with pytest.raises(TypeError, match="dask.dataframe"):
        predict_partitions(pipe, cat)
    with pytest.raises(ValueError, match="return_std"):
        predict_partitions(pipe, dd.from_pandas(cat, npartitions=2), method="predict_proba",
                           return_std=True)
    with pytest.raises(ValueError, match="flux"):
        DaskSpectra(np.arange(5.0), np.ones((3, 5)))


def test_lsdb_catalog(client, mdwarf):
    lsdb = pytest.importorskip("lsdb")
    pipe, cat = mdwarf
    rng = np.random.RandomState(0)
    sky = cat.assign(ra=rng.uniform(0, 360, len(cat)),
                     dec=np.degrees(np.arcsin(rng.uniform(-1, 1, len(cat)))))
    catalog = lsdb.from_dataframe(sky, ra_column="ra", dec_column="dec",
                                  lowest_order=0, highest_order=1, partition_rows=400)
    assert catalog.npartitions > 1
    mean, std = dask.compute(*predict_partitions(pipe, catalog, return_std=True))
    ordered = catalog.compute()  # HEALPix order, as the partitions
    ref = pipe.predict(pd.DataFrame(ordered[list(cat.columns)]), return_std=True)
    np.testing.assert_allclose(mean, ref[0], atol=1e-6)
    np.testing.assert_allclose(std, ref[1], atol=1e-6)
