"""Tests of skstellar.mdwarf.selection (Table 1 cuts and validity domain)."""

import astropy.units as u
import numpy as np
import pandas as pd
import pytest
from astropy.table import MaskedColumn, QTable, Table

from skstellar import columns as C
from skstellar.mdwarf.selection import (
    SELECTION_COLUMNS,
    quality_mask,
    select_mdwarfs,
    validity_mask,
)
from skstellar.preprocessing import AbsoluteMagnitudes

GOOD = {
    "parallax": 20.0,
    "parallax_error": 0.1,
    "parallax_over_error": 200.0,
    "ruwe": 1.0,
    "phot_g_mean_flux_over_error": 500.0,
    "phot_bp_mean_flux_over_error": 100.0,
    "phot_rp_mean_flux_over_error": 100.0,
    "ph_qual": "AAA",
    "ph_qual_wise": "AAUU",
    "phot_g_mean_mag": 13.0,  # G - J = 2.5
    "j_m": 10.5,
    "w1mpro": 9.6,  # W1 - W2 = 0.1
    "w2mpro": 9.5,
    "fe_h": 0.0,
}

# (row label, column, bad value): each row fails exactly one quality cut; the
# bad values sit on the boundary where possible (the paper's cuts are strict).
QUALITY_FAILS = [
    ("poe", "parallax_over_error", 10.0),
    ("ruwe", "ruwe", 1.4),
    ("g_foe", "phot_g_mean_flux_over_error", 50.0),
    ("bp_foe", "phot_bp_mean_flux_over_error", 19.9),
    ("rp_foe", "phot_rp_mean_flux_over_error", np.nan),
    ("tmass", "ph_qual", "AAB"),
    ("wise", "ph_qual_wise", "ABAA"),
]

# rows that fail one validity cut (and pass every quality cut)
VALIDITY_FAILS = [
    ("feh", "fe_h", 0.46),
    ("gj", "phot_g_mean_mag", 10.5 + 3.2),
    ("w12", "w1mpro", 9.5 + 0.25),
]


def make_catalog():
    rows = {"good": dict(GOOD), "good2": dict(GOOD, ruwe=1.39, ph_qual_wise="AABB")}
    for label, col, value in QUALITY_FAILS + VALIDITY_FAILS:
        rows[label] = dict(GOOD, **{col: value})
    return pd.DataFrame.from_dict(rows, orient="index")


@pytest.fixture
def catalog():
    return make_catalog()


def expected(df, failing_labels):
    return ~df.index.isin(failing_labels)


# --------------------------------------------------------------------------
# quality_mask
# --------------------------------------------------------------------------
def test_quality_mask_each_cut(catalog):
    mask = quality_mask(catalog)
    q_labels = [r[0] for r in QUALITY_FAILS]
    np.testing.assert_array_equal(mask, expected(catalog, q_labels))


@pytest.mark.parametrize(
    "param, label",
    [
        ("parallax_over_error_min", "poe"),
        ("ruwe_max", "ruwe"),
        ("g_flux_over_error_min", "g_foe"),
        ("bp_flux_over_error_min", "bp_foe"),
        ("rp_flux_over_error_min", "rp_foe"),
        ("twomass_quality", "tmass"),
        ("wise_quality", "wise"),
    ],
)
def test_disabling_one_cut_restores_its_row(catalog, param, label):
    mask = quality_mask(catalog, **{param: None})
    others = [r[0] for r in QUALITY_FAILS if r[0] != label]
    np.testing.assert_array_equal(mask, expected(catalog, others))


def test_disabled_cut_does_not_need_its_column(catalog):
    df = catalog.drop(columns="ruwe")
    with pytest.raises(ValueError, match="Missing column 'ruwe' for the ruwe cut"):
        quality_mask(df)
    mask = quality_mask(df, ruwe_max=None)
    q_labels = [r[0] for r in QUALITY_FAILS if r[0] != "ruwe"]
    np.testing.assert_array_equal(mask, expected(catalog, q_labels))


def test_parallax_over_error_computed_when_column_absent(catalog):
    df = catalog.drop(columns="parallax_over_error")
    df.loc["poe", "parallax"] = 0.9  # 0.9 / 0.1 = 9 < 10
    df.loc["ruwe", "parallax_error"] = 2.0  # 20 / 2 = 10, not > 10
    mask = quality_mask(df, ruwe_max=None)
    fails = ["poe", "ruwe"] + [r[0] for r in QUALITY_FAILS[2:]]
    np.testing.assert_array_equal(mask, expected(df, fails))
    msg = r"parallax_over_error' \(or 'parallax' and 'parallax_error'\)"
    with pytest.raises(ValueError, match=msg):
        quality_mask(df.drop(columns="parallax_error"))


def test_missing_skip_warns_and_skips(catalog):
    df = catalog.drop(columns=["ph_qual_wise", "ruwe"])
    with pytest.warns(UserWarning, match="skipped.*ruwe.*ph_qual_wise"):
        mask = quality_mask(df, missing="skip")
    fails = [r[0] for r in QUALITY_FAILS if r[0] not in ("ruwe", "wise")]
    np.testing.assert_array_equal(mask, expected(catalog, fails))
    with pytest.raises(ValueError, match="missing must be"):
        quality_mask(df, missing="ignore")


def test_columns_override(catalog):
    df = catalog.rename(columns={"ruwe": "RUWE", "ph_qual": "Qfl"})
    mask = quality_mask(df, columns={"ruwe": "RUWE", "twomass_quality": "Qfl"})
    np.testing.assert_array_equal(mask, quality_mask(catalog))
    with pytest.raises(ValueError, match="Unknown key\\(s\\) in columns: rwe"):
        quality_mask(df, columns={"rwe": "RUWE"})


def test_quality_mask_astropy_table_with_bytes_and_masks(catalog):
    t = Table.from_pandas(catalog.reset_index(drop=True))
    # FITS tables give bytes; missing flags arrive masked
    t["ph_qual"] = np.char.encode(np.asarray(t["ph_qual"], dtype=str), "ascii")
    t["ph_qual_wise"] = MaskedColumn(t["ph_qual_wise"], mask=[i == 1 for i in range(len(t))])
    t["parallax"].unit = "mas"
    mask = quality_mask(t)
    exp = np.asarray(expected(catalog, [r[0] for r in QUALITY_FAILS]))
    exp[1] = False  # masked WISE flag fails
    np.testing.assert_array_equal(mask, exp)


def test_quality_mask_needs_names():
    with pytest.raises(ValueError, match="needs a catalogue with column names"):
        quality_mask(np.ones((3, 4)))


# --------------------------------------------------------------------------
# validity_mask
# --------------------------------------------------------------------------
def test_validity_mask_colours_and_feh(catalog):
    colour_fails = ["gj", "w12"]
    np.testing.assert_array_equal(validity_mask(catalog), expected(catalog, colour_fails))
    np.testing.assert_array_equal(
        validity_mask(catalog, feh="fe_h"), expected(catalog, colour_fails + ["feh"])
    )
    feh = catalog["fe_h"].to_numpy()
    np.testing.assert_array_equal(
        validity_mask(catalog, feh=feh, g_minus_j_range=None),
        expected(catalog, ["w12", "feh"]),
    )


def test_validity_bounds_inclusive():
    g = np.array([10.5 + 1.85, 10.5 + 3.10, 10.5 + 1.84, 10.5 + 3.11])
    df = pd.DataFrame(
        {"phot_g_mean_mag": g, "j_m": 10.5, "w1mpro": [9.4, 9.74, 9.5, 9.5], "w2mpro": 9.5}
    )
    np.testing.assert_array_equal(validity_mask(df), [True, True, False, False])
    feh = np.array([-0.45, 0.45, np.nan, 0.0])
    np.testing.assert_array_equal(
        validity_mask(df, feh=feh, g_minus_j_range=None), [True, True, False, True]
    )


def test_validity_from_absolute_magnitudes(catalog):
    absm = AbsoluteMagnitudes(bands=C.MDWARF_BANDS).set_output(transform="pandas")
    full = catalog.assign(
        phot_bp_mean_mag=14.0, phot_rp_mean_mag=12.0, h_m=10.0, ks_m=9.8
    )
    M = absm.fit_transform(full)
    np.testing.assert_array_equal(validity_mask(M), validity_mask(catalog))
    # plain array in MDWARF_BANDS order, as AbsoluteMagnitudes() outputs
    np.testing.assert_array_equal(validity_mask(M.to_numpy()), validity_mask(catalog))
    with pytest.raises(ValueError, match="eight M-dwarf bands"):
        validity_mask(M.to_numpy()[:, :5])


def test_validity_missing_colour_columns(catalog):
    with pytest.raises(ValueError, match="Missing column\\(s\\) for the W1-W2 cut.*w1mpro"):
        validity_mask(catalog.drop(columns="w2mpro"))
    mask = validity_mask(catalog.drop(columns="w2mpro"), w1_minus_w2_range=None)
    np.testing.assert_array_equal(mask, expected(catalog, ["gj"]))
    with pytest.raises(ValueError, match="Missing column 'feh_x'"):
        validity_mask(catalog, feh="feh_x")


def test_validity_quantities():
    t = QTable(
        {
            "phot_g_mean_mag": [13.0, 15.0] * u.mag,
            "j_m": [10.5, 10.5] * u.mag,
            "w1mpro": [9.6, 9.6] * u.mag,
            "w2mpro": [9.5, 9.5] * u.mag,
        }
    )
    np.testing.assert_array_equal(validity_mask(t), [True, False])
    t["j_m"] = [1.0, 1.0] * u.Jy
    with pytest.raises(ValueError, match="wrong units"):
        validity_mask(t)


# --------------------------------------------------------------------------
# select_mdwarfs
# --------------------------------------------------------------------------
def test_select_mdwarfs_report(catalog):
    selected, report = select_mdwarfs(catalog, feh="fe_h")
    assert list(selected.index) == ["good", "good2"]
    assert list(report["cut"]) == [
        "parallax_over_error",
        "ruwe",
        "phot_g_mean_flux_over_error",
        "phot_bp_mean_flux_over_error",
        "phot_rp_mean_flux_over_error",
        "2MASS ph_qual",
        "WISE ph_qual",
        "[Fe/H]",
        "G-J",
        "W1-W2",
    ]
    assert report["n_removed"].tolist() == [1] * 10
    assert report["n_failed"].tolist() == [1] * 10
    assert report["n_remaining"].tolist() == list(range(len(catalog) - 1, 1, -1))
    assert report["applied"].all()


def test_select_mdwarfs_counts_overlaps_once():
    df = make_catalog()
    df.loc["ruwe", "phot_g_mean_flux_over_error"] = 10.0  # fails ruwe and G cut
    _, report = select_mdwarfs(df, validity=False)
    g_row = report.set_index("cut").loc["phot_g_mean_flux_over_error"]
    assert g_row["n_failed"] == 2 and g_row["n_removed"] == 1


def test_select_mdwarfs_astropy_table(catalog):
    t = Table.from_pandas(catalog.reset_index(names="name"))
    selected, report = select_mdwarfs(t, ruwe_max=None)
    assert isinstance(selected, Table)
    assert sorted(selected["name"]) == ["feh", "good", "good2", "ruwe"]  # no feh cut
    assert "ruwe" not in set(report["cut"])


def test_select_mdwarfs_dict_and_errors(catalog):
    d = {c: catalog[c].to_numpy() for c in catalog.columns}
    selected, _ = select_mdwarfs(d)
    assert isinstance(selected, dict) and len(selected["ruwe"]) == 3  # good, good2, feh
    with pytest.raises(TypeError, match="unexpected keyword.*ruwe_min"):
        select_mdwarfs(catalog, ruwe_min=1.0)
    with pytest.raises(ValueError, match="Missing column 'ph_qual_wise'"):
        select_mdwarfs(catalog.drop(columns="ph_qual_wise"))


def test_selection_columns_match_survey_defaults():
    assert SELECTION_COLUMNS["wise_quality"] == C.WISE["quality"]
    assert SELECTION_COLUMNS["twomass_quality"] == C.TWOMASS["quality"]
    assert SELECTION_COLUMNS["G"] == C.BAND_COLUMNS["G"]
