"""Tests of the photo-D inputs: constants and loaders (skstellar.io.photod) and the LSST simulator
(skstellar.datasets.photod)."""

import numpy as np
import pandas as pd
import pytest
from photod_toys import toy_locus, toy_priors

from skstellar.datasets import photod as P
from skstellar.datasets.photod import (
    LSST_GAMMA,
    LSST_M5_COADD,
    lsst_magnitude_error,
    make_lsst_catalog,
)
from skstellar.io import find_shared_data
from skstellar.io import photod as io_photod
from skstellar.io.photod import (
    EXTINCTION_COEFFICIENTS,
    ColourLocus,
    PriorMaps,
    ar_prior_max,
    load_locus,
    load_prior_maps,
    load_stripe82_priors,
    load_stripe82_sample,
    reddening_vector,
)

SNR5_MAG = 2.5 / np.log(10.0) / 5.0  # 0.2171 mag


# --------------------------------------------------------------------------
# Small synthetic locus and priors (tests run without the shared data)
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy():
    return toy_locus(), toy_priors()


def photod_folder_or_skip():
    folder = find_shared_data("photod")
    if folder is None:
        pytest.skip("photod data not found in ../shared/data")
    return folder


# --------------------------------------------------------------------------
# Constants, errors, reddening
# --------------------------------------------------------------------------
def test_constants_match_the_documented_values():
    assert EXTINCTION_COEFFICIENTS == {"u": 1.810, "g": 1.400, "r": 1.000, "i": 0.759, "z": 0.561}
    assert LSST_M5_COADD["u"] == 25.73 and LSST_M5_COADD["r"] == 26.88
    assert LSST_GAMMA["u"] == 0.038 and LSST_GAMMA["z"] == 0.039


def test_lsst_error_model():
    # at m = m5, x = 1: sigma^2 = 0.005^2 + (0.04 - gamma) + gamma = 0.005^2 + 0.04
    at_m5 = lsst_magnitude_error(LSST_M5_COADD["g"], "g")
    assert at_m5 == pytest.approx(np.sqrt(0.005**2 + 0.04))
    # bright: the floor; faint: grows ~ 10**(0.4 m)
    assert lsst_magnitude_error(10.0, "r") == pytest.approx(0.005, rel=1e-3)
    mags = np.linspace(15, 27, 50)
    err = lsst_magnitude_error(mags, "u")
    assert err.shape == mags.shape and np.all(np.diff(err) > 0)
    # explicit depth and gamma
    x = 10 ** (0.4 * (24.0 - 25.0))
    assert lsst_magnitude_error(24.0, "i", m5=25.0, gamma=0.03) == pytest.approx(
        np.sqrt(0.005**2 + 0.01 * x + 0.03 * x**2))
    assert lsst_magnitude_error(24.0, "i", m5={"i": 25.0}) == pytest.approx(
        lsst_magnitude_error(24.0, "i", m5=25.0))
    with pytest.raises(ValueError, match="Unknown LSST band"):
        lsst_magnitude_error(20.0, "w")
    with pytest.raises(ValueError, match="no depth for band 'r'"):
        lsst_magnitude_error(20.0, "r", m5={"g": 25.0})


def test_reddening_vector_and_ar_prior():
    red = reddening_vector()
    assert red == pytest.approx([1.810 - 1.400, 1.400 - 1.000, 1.000 - 0.759, 0.759 - 0.561])
    assert reddening_vector(["gi"]) == pytest.approx([1.400 - 0.759])
    with pytest.raises(ValueError, match="two band letters"):
        reddening_vector(["g-r"])
    assert ar_prior_max(0.2) == pytest.approx(0.36)
    assert ar_prior_max(np.array([0.0, 1.0])) == pytest.approx([0.1, 1.4])


def test_galactic_transform_matches_astropy():
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    rng = np.random.default_rng(0)
    ra, dec = rng.uniform(0, 360, 200), np.degrees(np.arcsin(rng.uniform(-1, 1, 200)))
    lon, lat = P._galactic(ra, dec)
    gal = SkyCoord(ra=ra * u.deg, dec=dec * u.deg, frame="icrs").galactic
    dlon = (lon - gal.l.deg + 180) % 360 - 180
    assert np.abs(dlon * np.cos(np.radians(lat))).max() < 1e-4
    assert np.abs(lat - gal.b.deg).max() < 1e-4


# --------------------------------------------------------------------------
# ColourLocus and PriorMaps containers
# --------------------------------------------------------------------------
def test_colour_locus_validation_and_interpolation(toy):
    locus, _ = toy
    assert locus.valid.shape == (21, 61)
    assert not locus.valid[0, 0] and locus.valid[-1, 0]
    mr, feh = locus.grid_points()
    assert mr.size == feh.size == 21 * 61
    # on the nodes: exact values (NaN only at undefined nodes)
    got = locus.colours_at(mr, feh)
    np.testing.assert_allclose(got, locus.colours.reshape(-1, 4), equal_nan=True, atol=1e-12)
    # half-way between two valid nodes: the average
    i, j = 15, 20
    mid = locus.colours_at([locus.mr[j] + 0.05], [locus.feh[i]])
    np.testing.assert_allclose(mid[0], 0.5 * (locus.colours[i, j] + locus.colours[i, j + 1]))
    # outside the grid, or touching an undefined node with weight > 0: NaN
    assert np.isnan(locus.colours_at([2.0], [-1.0])).all()
    assert np.isnan(locus.colours_at([3.45], [-1.75])).all()
    with pytest.raises(ValueError, match=r"shape \(n_feh, n_mr, n_colours\)"):
        ColourLocus(mr=locus.mr, feh=locus.feh, colours=locus.colours[:, :-1])
    with pytest.raises(ValueError, match="constant step"):
        ColourLocus(mr=[0.0, 0.1, 0.3], feh=[0.0, 0.1], colours=np.zeros((2, 3, 4)))
    assert "n_valid=" in repr(locus) and len(repr(locus)) < 200
    frame = locus.to_frame()
    assert list(frame.columns) == ["Mr", "FeH", "ug", "gr", "ri", "iz"]
    assert len(frame) == int(locus.valid.sum())


def test_prior_maps_bins_and_interpolation(toy):
    _, maps = toy
    assert maps.r_coverage == (13.5, 22.5)
    # nearest centre, halves rounded up, as photoD does
    idx = maps.bin_index([14.0, 14.24, 14.25, 14.26, 21.9])
    assert list(idx) == [0, 0, 1, 1, 16]
    # out-of-range r: clip to the end bins, or raise naming the row
    assert list(maps.bin_index([10.0, 30.0])) == [0, 16]
    with pytest.raises(ValueError, match=r"Column 'rmag' .* outside .* row 1"):
        maps.bin_index([15.0, 30.0], policy="raise")
    with pytest.raises(ValueError, match="non-finite"):
        maps.bin_index([15.0, np.nan])
    with pytest.raises(ValueError, match="r_policy"):
        maps.bin_index([15.0], policy="nearest")
    # interpolation: exact on the map nodes, 0 outside
    vals = maps.on_grid([maps.mr[5], 50.0], [maps.feh[7], 0.0])
    assert vals.shape == (17, 2)
    np.testing.assert_allclose(vals[:, 0], maps.density[:, 5, 7])
    assert np.all(vals[:, 1] == 0)
    with pytest.raises(ValueError, match="non-negative"):
        PriorMaps(r_centres=[14.0], mr=[0.0, 1.0], feh=[0.0, 1.0], density=-np.ones((1, 2, 2)))


# --------------------------------------------------------------------------
# Loaders on synthetic files (no shared data needed)
# --------------------------------------------------------------------------
def test_load_locus_first_passage_envelope(tmp_path):
    """A track with a turn-off hook, a giant branch and a post-tip branch."""
    t = np.round(np.arange(1.0, 10.0001, 0.01), 4)
    mr = np.where(t >= 4, t, np.where(t >= 3.5, 4 + 0.6 * (4 - t),  # hook: back to 4.3
                                      np.where(t >= 2, 4.3 - 2.8667 * (3.5 - t), 0.0 + (2 - t))))
    ug = np.where(t >= 4, t, np.where(t >= 3.5, 50.0, np.where(t >= 2, 10 + mr, 100.0)))
    rows = []
    for feh in (-1.0, 0.0):
        rows.append(np.column_stack([t, mr, np.full_like(t, feh), ug + feh, ug, ug, ug]))
    table = np.vstack(rows)
    path = tmp_path / "locus.txt"
    with open(path, "w") as fh:
        fh.write("# toy locus\n   tLoc    Mr    FeH     ug      gr      ri      iz\n")
        np.savetxt(fh, table, fmt="%.5f")
    locus = load_locus(path, mr_step=0.1, mr_range=(-1.0, 9.9))
    assert locus.colours.shape == (2, 110, 4)
    assert locus.meta["parameter"] == "tLoc"
    col = locus.colours[1, :, 1]  # g-r of the [Fe/H] = 0 track = the ug profile
    on = lambda m: col[int(round((m + 1.0) / 0.1))]  # noqa: E731
    # main sequence: colour = Mr; giant branch below the turn-off Mr: 10 + Mr
    assert on(6.0) == pytest.approx(6.0, abs=1e-6)
    assert on(2.0) == pytest.approx(12.0, abs=1e-6)
    # neither the hook (50) nor the post-tip branch (100) leaks into the grid
    assert np.nanmax(col) < 20
    # brighter than the tip (Mr ~ 0): undefined
    assert np.isnan(on(-0.5)) and np.isfinite(on(0.1))
    np.testing.assert_allclose(locus.colours[0, :, 0], locus.colours[1, :, 0] - 1.0, equal_nan=True)


def test_load_locus_errors(tmp_path):
    with pytest.raises(ValueError, match="age must be one of"):
        load_locus(age="5Gyr")
    with pytest.raises(FileNotFoundError):
        load_locus(tmp_path / "nope.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("Mr FeH ug gr\n1 0 1 1\n2 0 1 1\n")
    with pytest.raises(ValueError, match="Missing column 'ri'"):
        load_locus(bad)


def test_missing_shared_data_names_the_environment_variable(monkeypatch):
    monkeypatch.setattr(io_photod, "find_shared_data", lambda sub="": None)
    for loader in (load_locus, load_prior_maps, load_stripe82_sample, load_stripe82_priors):
        with pytest.raises(FileNotFoundError, match="SKSTELLAR_DATA"):
            loader()


# --------------------------------------------------------------------------
# Loaders on the real files (skipped when ../shared/data/photod is absent)
# --------------------------------------------------------------------------
def test_load_locus_real_matches_table_on_main_sequence():
    folder = photod_folder_or_skip()
    locus = load_locus()
    assert locus.colours.shape == (31, 180, 4)
    np.testing.assert_allclose(locus.mr[[0, -1]], [-2.0, 15.9])
    np.testing.assert_allclose(locus.feh[[0, -1]], [-2.5, 0.5])
    raw = pd.read_csv(folder / "locus" / "SDSSDSEDlocus_10Gyr.txt", sep=r"\s+", skiprows=2,
                      names=["tLoc", "Mr", "FeH", "ug", "gr", "ri", "iz"])
    # on the main sequence Mr = tLoc and grid nodes coincide with table rows
    for feh in (-2.0, -0.5, 0.3):
        i = int(round((feh + 2.5) / 0.1))
        for mr in (6.0, 9.3, 14.0):
            row = raw[np.isclose(raw.FeH, feh) & np.isclose(raw.Mr, mr) & np.isclose(raw.tLoc, mr)]
            j = int(round((mr + 2.0) / 0.1))
            expected = row[["ug", "gr", "ri", "iz"]].to_numpy()[0]
            np.testing.assert_allclose(locus.colours[i, j], expected, atol=1e-9)
    # giants exist at all [Fe/H]; the brightest defined node is the first-passage tip
    for i, feh in enumerate(locus.feh):
        tr = raw[np.isclose(raw.FeH, feh)]
        tip = tr.Mr.min()
        defined = locus.mr[locus.valid[i]]
        assert defined.max() == pytest.approx(15.9)
        assert defined.min() == pytest.approx(max(-2.0, np.ceil(tip / 0.1 - 1e-9) * 0.1), abs=1e-9)
    # the 1 Gyr table loads too
    assert load_locus(age="1Gyr").colours.shape[0] == 31


def test_load_prior_maps_real():
    photod_folder_or_skip()
    maps = load_prior_maps()
    assert maps.density.shape == (27, 96, 36)
    np.testing.assert_allclose(maps.r_centres, np.linspace(14, 27, 27))
    np.testing.assert_allclose(maps.mr[[0, -1]], [-2.0, 17.0])
    np.testing.assert_allclose(maps.feh[[0, -1]], [-2.5, 1.0])
    assert maps.r_half_width == 0.5
    norm = maps.density.sum(axis=(1, 2)) * 0.2 * 0.1
    np.testing.assert_allclose(norm, 1.0, atol=0.01)
    assert np.all(np.diff(maps.counts) > 0)  # fainter bins hold more TRILEGAL stars
    assert maps.meta["metadata"].shape == (27, 12)
    pytest.importorskip("pyarrow")
    s82 = load_stripe82_priors(0)
    assert s82.density.shape == (27, 96, 36) and s82.counts is None
    np.testing.assert_allclose(s82.mr, maps.mr)
    np.testing.assert_allclose(s82.density.sum(axis=(1, 2)) * 0.02, 1.0, atol=0.01)
    assert not np.allclose(s82.density, maps.density)  # a different sky patch


def test_load_stripe82_sample_real():
    photod_folder_or_skip()
    pytest.importorskip("pyarrow")
    df = load_stripe82_sample()
    assert len(df) == 3981
    for col in ("ra", "dec", "glon", "glat", "Ar", "Ar_max", "umag", "rmag", "uErr", "rErr",
                "ug", "gr", "ri", "iz", "ugErr", "grErr", "riErr", "izErr"):
        assert col in df.columns
        assert df[col].dtype == np.float64
    assert "MrEst" not in df.columns and "FeH" not in df.columns
    np.testing.assert_allclose(df["Ar_max"], 1.3 * df["Ar"] + 0.1)
    np.testing.assert_allclose(df["ug"], df["umag"] - df["gmag"], atol=2e-3)
    np.testing.assert_allclose(df["ugErr"], np.hypot(df["uErr"], df["gErr"]), atol=1e-3)
    assert df["rmag"].between(13.9, 21.8).all()
    assert "MrEst" in load_stripe82_sample(drop_placeholders=False).columns


# --------------------------------------------------------------------------
# make_lsst_catalog
# --------------------------------------------------------------------------
TRUTH = ["Mr_true", "FeH_true", "Ar_true", "DM_true", "dist_pc"]
OBSERVED = ["ra", "dec", "glon", "glat", "Ar", "Ar_max", "umag", "gmag", "rmag", "imag", "zmag",
            "uErr", "gErr", "rErr", "iErr", "zErr", "ug", "gr", "ri", "iz",
            "ugErr", "grErr", "riErr", "izErr"]


def test_simulator_columns_snr_and_internal_consistency(toy):
    locus, maps = toy
    cat = make_lsst_catalog(1500, locus=locus, prior_maps=maps, r_range=(15, 22), random_state=0)
    assert list(cat.columns) == OBSERVED + TRUTH
    assert len(cat) == 1500 and np.isfinite(cat.to_numpy()).all()
    errs = cat[[f"{b}Err" for b in "ugriz"]].to_numpy()
    assert errs.max() < SNR5_MAG and errs.min() >= 0.005  # SNR > 5 in every band
    for c, (b1, b2) in zip(("ug", "gr", "ri", "iz"), ("ug", "gr", "ri", "iz")):
        np.testing.assert_allclose(cat[c], cat[f"{b1}mag"] - cat[f"{b2}mag"], atol=1e-12)
        np.testing.assert_allclose(cat[f"{c}Err"], np.hypot(cat[f"{b1}Err"], cat[f"{b2}Err"]))
    # reported errors follow the LSST model at the observed magnitudes
    np.testing.assert_allclose(cat["uErr"], lsst_magnitude_error(cat["umag"].to_numpy(), "u"))
    np.testing.assert_allclose(cat["Ar_max"], 1.3 * cat["Ar"] + 0.1)
    np.testing.assert_allclose(cat["dist_pc"], 10 ** (0.2 * cat["DM_true"] + 1))
    assert cat["ra"].between(340, 350).all() and cat["dec"].between(-1.3, 1.3).all()
    assert cat["Mr_true"].between(3.0 - 0.05, 9.0).all()
    assert cat["FeH_true"].between(-2.0, 0.0).all()
    # the default dust layer: 0 <= A_r <= A_SFD, consistent with the distance
    sinb = np.abs(np.sin(np.radians(cat["glat"])))
    layer = cat["Ar"] * (1 - np.exp(-cat["dist_pc"] * sinb / 100.0))
    np.testing.assert_allclose(cat["Ar_true"], layer, atol=1e-9)
    assert (cat["Ar_true"] <= cat["Ar"] + 1e-12).all()


def test_simulator_noiseless_colours_lie_on_the_locus(toy):
    locus, maps = toy
    cat = make_lsst_catalog(800, locus=locus, prior_maps=maps, r_range=(15, 21), add_noise=False,
                            ar_distribution="uniform", random_state=1)
    red = reddening_vector()
    intrinsic = cat[["ug", "gr", "ri", "iz"]].to_numpy() - cat["Ar_true"].to_numpy()[:, None] * red
    expected = locus.colours_at(cat["Mr_true"], cat["FeH_true"])
    np.testing.assert_allclose(intrinsic, expected, atol=1e-9)
    dm = cat["rmag"] - cat["Mr_true"] - cat["Ar_true"]
    np.testing.assert_allclose(cat["DM_true"], dm, atol=1e-9)
    assert cat["rmag"].between(15, 21).all()
    assert (cat["Ar_true"] >= 0).all() and (cat["Ar_true"] <= cat["Ar_max"]).all()
    # uniform A_r fills [0, Ar_max]: mean fraction ~ 1/2
    assert (cat["Ar_true"] / cat["Ar_max"]).mean() == pytest.approx(0.5, abs=0.05)
    # without jitter the truth sits on the locus nodes
    cat2 = make_lsst_catalog(300, locus=locus, prior_maps=maps, r_range=(15, 21), add_noise=False,
                             jitter=False, random_state=2)
    np.testing.assert_allclose(cat2["Mr_true"] / 0.1, np.round(cat2["Mr_true"] / 0.1), atol=1e-6)
    np.testing.assert_allclose(cat2["FeH_true"] / 0.1, np.round(cat2["FeH_true"] / 0.1), atol=1e-6)


def test_simulator_draws_from_the_prior_of_each_r_bin(toy):
    locus, maps = toy
    cat = make_lsst_catalog(3000, locus=locus, prior_maps=maps, r_range=(15, 21), jitter=False,
                            random_state=3)
    # the toy prior's Mr centre moves by +0.2 mag per mag of r, [Fe/H] by -0.1 dex/mag
    r = cat["rmag"].to_numpy()
    slope_mr = np.polyfit(r, cat["Mr_true"], 1)[0]
    slope_feh = np.polyfit(r, cat["FeH_true"], 1)[0]
    assert 0.1 < slope_mr < 0.3
    assert -0.16 < slope_feh < -0.04
    # number counts rise with r (counts ~ 10**(0.2 r)): more stars in the faint half
    assert (r > 18).mean() > 0.6


def test_simulator_is_seeded():
    locus, maps = toy_locus(), toy_priors()
    kw = dict(locus=locus, prior_maps=maps, r_range=(15, 21))
    a = make_lsst_catalog(200, random_state=7, **kw)
    b = make_lsst_catalog(200, random_state=7, **kw)
    c = make_lsst_catalog(200, random_state=8, **kw)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["rmag"], c["rmag"])


def test_simulator_bad_arguments(toy):
    locus, maps = toy
    kw = dict(locus=locus, prior_maps=maps)
    with pytest.raises(ValueError, match="n_stars"):
        make_lsst_catalog(0, **kw)
    with pytest.raises(ValueError, match="r_range"):
        make_lsst_catalog(10, r_range=(20, 15), **kw)
    with pytest.raises(ValueError, match="ar_distribution"):
        make_lsst_catalog(10, ar_distribution="flat", **kw)
    with pytest.raises(ValueError, match="errors_from"):
        make_lsst_catalog(10, errors_from="both", **kw)
    with pytest.raises(ValueError, match="prior_maps must be a PriorMaps"):
        make_lsst_catalog(10, locus=locus, prior_maps="maps")
    with pytest.raises(RuntimeError, match="pass SNR > 5"):
        make_lsst_catalog(50, r_range=(28.0, 29.0), **kw)


def test_simulator_on_real_locus_and_priors():
    photod_folder_or_skip()
    cat = make_lsst_catalog(2000, random_state=0)
    assert cat["Mr_true"].between(-2.05, 15.95).all()
    assert cat["FeH_true"].between(-2.55, 0.55).all()
    assert cat[[f"{b}Err" for b in "ugriz"]].to_numpy().max() < SNR5_MAG
    assert cat["rmag"].between(13.5, 25.5).all()
    # with the SNR cut the u band limits the sample: u < ~25.8
    assert cat["umag"].max() < 25.9
