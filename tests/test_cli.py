"""The skstellar command line: demo, fit, predict, list."""

import json

import numpy as np
import pytest

from skstellar.cli import main
from skstellar.datasets import make_mdwarf_photometry
from skstellar.io import read_catalog, write_catalog


def test_demo_prints_table_and_writes_json(tmp_path, capsys):
    js = tmp_path / "demo.json"
    rc = main(["demo", "mdwarf", "--n-samples", "600", "--max-epochs", "3",
               "--plots", str(tmp_path / "plots"), "--json", str(js)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "residual std (dex)" in out and "paper" in out
    figures = json.loads(js.read_text())
    assert figures["n_test"] > 0 and figures["residual_std"] > 0
    assert figures["epochs"] == 3
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "mdwarf_calibration.png", "mdwarf_one_to_one.png", "mdwarf_residuals.png",
        "mdwarf_zscores.png"]
    assert "calibrated" in out and 0 < figures["coverage_68"] <= 1
    assert figures["zscore_std_mc"] > 0 and figures["calibration_b"] >= 0


@pytest.mark.parametrize("ext", ["csv", "fits", "parquet"])
def test_fit_then_predict_round_trip(tmp_path, ext, capsys):
    cat = make_mdwarf_photometry(300, random_state=3)
    cat["source_id"] = np.arange(len(cat)) + 10**17
    train_path = tmp_path / f"train.{ext}"
    write_catalog(cat, train_path)
    model = tmp_path / "model.joblib"
    assert main(["fit", "mdwarf", str(train_path), str(model), "--max-epochs", "2"]) == 0
    out_path = tmp_path / f"pred.{ext}"
    assert main(["predict", str(model), str(train_path), str(out_path),
                 "--keep", "source_id"]) == 0
    pred = read_catalog(out_path)
    assert len(pred) == len(cat)
    for col in ("source_id", "fe_h_pred", "fe_h_pred_error", "in_domain"):
        assert col in pred.columns
    assert np.all(pred["fe_h_pred_error"] > 0)
    np.testing.assert_array_equal(pred["source_id"], cat["source_id"])
    # refuses to overwrite
    assert main(["predict", str(model), str(train_path), str(out_path)]) == 2
    assert "exists" in capsys.readouterr().err.lower()


def test_fit_reports_missing_target(tmp_path, capsys):
    cat = make_mdwarf_photometry(50, random_state=0).drop(columns="fe_h")
    path = tmp_path / "c.csv"
    cat.to_csv(path, index=False)
    assert main(["fit", "mdwarf", str(path), str(tmp_path / "m.joblib")]) == 2
    err = capsys.readouterr().err
    assert "fe_h" in err and err.count("\n") == 1 and "Traceback" not in err


def test_predict_reports_bad_rows(tmp_path, capsys):
    cat = make_mdwarf_photometry(200, random_state=0)
    path = tmp_path / "c.csv"
    cat.to_csv(path, index=False)
    model = tmp_path / "m.joblib"
    assert main(["fit", "mdwarf", str(path), str(model), "--max-epochs", "1"]) == 0
    bad = cat.copy()
    bad.loc[5, "parallax"] = -1.0
    bad_path = tmp_path / "bad.csv"
    bad.to_csv(bad_path, index=False)
    assert main(["predict", str(model), str(bad_path), str(tmp_path / "p.csv")]) == 2
    assert "parallax" in capsys.readouterr().err


def test_galaxy_demo_runs_end_to_end(tmp_path, capsys):
    js = tmp_path / "galaxy.json"
    assert main(["demo", "galaxy", "--n-samples", "300", "--max-epochs", "1",
                 "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert "residual std (dex)" in out and "S/N_r bin" in out and "0.0829" in out
    figures = json.loads(js.read_text())
    assert figures["n_test"] == 60 and figures["epochs"] == 1
    assert figures["residual_std"] > 0 and figures["resample_per_second"] > 0


def test_xp_demo_runs_end_to_end(tmp_path, capsys):
    js = tmp_path / "xp.json"
    plots = tmp_path / "plots"
    assert main(["demo", "xp", "--n-samples", "400", "--max-epochs", "16", "--json", str(js),
                 "--plots", str(plots)]) == 0
    out = capsys.readouterr().out
    assert "paper RMSE" in out and "51.8" in out
    assert "sigma_input with the input noise doubled" in out
    figures = json.loads(js.read_text())
    assert figures["n_test"] == 100 and figures["n_iter"] == 16
    assert ([p["label"] for p in figures["per_label"]]
            == ["teff", "logg", "fe_h", "c_fe", "n_fe", "alpha_m"])
    assert all(p["median_sigma_total"] > 0 for p in figures["per_label"])
    assert (plots / "xp_zscores.png").exists()


def test_photod_demo_runs_end_to_end(tmp_path, capsys):
    from skstellar.io import find_shared_data

    if find_shared_data("photod") is None:
        pytest.skip("../shared/data/photod (locus and prior maps) not available")
    js = tmp_path / "photod.json"
    assert main(["demo", "photod", "--n-samples", "3000", "--max-epochs", "3",
                 "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert "0.123" in out  # the paper's NN-vs-Bayes M_r robust std is printed beside ours
    figures = json.loads(js.read_text())
    assert figures


def test_cyclestarnet_demo_runs_end_to_end(tmp_path, capsys):
    js = tmp_path / "csn.json"
    assert main(["demo", "cyclestarnet", "--n-samples", "40", "--max-epochs", "10",
                 "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert "2.00 -> 1.68" in out
    figures = json.loads(js.read_text())
    assert figures


# ------------------------------------------------------------- pretrained + all methods
def _one_line_error(capsys, *fragments):
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for f in fragments:
        assert f in err, err
    return err


def test_predict_with_pretrained_name_equals_python(tmp_path, capsys):
    import skstellar
    from skstellar.cli import predict_table

    cat = make_mdwarf_photometry(40, random_state=5)
    cat.insert(0, "source_id", np.arange(len(cat)) + 7)
    path = tmp_path / "stars.csv"
    cat.to_csv(path, index=False)
    out = tmp_path / "feh.csv"
    assert main(["predict", "mdwarf-feh", str(path), str(out)]) == 0
    pred = read_catalog(out)
    assert list(pred.columns[:3]) == ["source_id", "fe_h_pred", "fe_h_pred_error"]
    assert "in_domain" in pred.columns and "outside_colour_box" in pred.columns
    np.testing.assert_array_equal(pred["source_id"], cat["source_id"])
    py = predict_table(skstellar.load_pretrained("mdwarf-feh"), read_catalog(path))
    np.testing.assert_allclose(pred["fe_h_pred"], py["fe_h_pred"], rtol=1e-12)
    np.testing.assert_allclose(pred["fe_h_pred_error"], py["fe_h_pred_error"], rtol=1e-12)


def test_predict_one_line_errors(tmp_path, capsys):
    cat = make_mdwarf_photometry(10, random_state=0)
    cat.drop(columns="w2mpro").to_csv(tmp_path / "no_w2.csv", index=False)
    cat.head(0).to_csv(tmp_path / "empty.csv", index=False)
    (tmp_path / "blank.csv").write_text("")
    (tmp_path / "stars.txt").write_text("not a catalogue")
    out = str(tmp_path / "o.csv")
    assert main(["predict", "mdwarf-feh", str(tmp_path / "no_w2.csv"), out]) == 2
    _one_line_error(capsys, "w2mpro")
    assert main(["predict", "mdwarf-feh", str(tmp_path / "empty.csv"), out]) == 2
    _one_line_error(capsys, "no rows")
    assert main(["predict", "mdwarf-feh", str(tmp_path / "blank.csv"), out]) == 2
    _one_line_error(capsys, "blank.csv")
    assert main(["predict", "mdwarf-feh", str(tmp_path / "stars.txt"), out]) == 2
    _one_line_error(capsys, "extension")
    assert main(["predict", "mdwarf-feh", str(tmp_path / "absent.csv"), out]) == 2
    _one_line_error(capsys, "absent.csv")
    assert main(["predict", "no-such-model", str(tmp_path / "no_w2.csv"), out]) == 2
    _one_line_error(capsys, "mdwarf-feh")
    assert main(["predict", str(tmp_path / "stars.txt"), str(tmp_path / "no_w2.csv"), out]) == 2
    _one_line_error(capsys, "not a model file")


def test_help_and_list(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for word in ("predict", "fit", "list", "demo", "mdwarf", "xp", "photod", "galaxy",
                 "mdwarf-feh"):
        assert word in text
    assert main(["list"]) == 0
    assert "mdwarf-feh:" in capsys.readouterr().out


def _xp_csv(cat, path):
    """An XP continuous table as the Gaia archive writes CSV (arrays as '(v1, v2, ...)')."""
    cat = cat.copy()
    for c in cat.columns:
        if cat[c].dtype == object:
            cat[c] = cat[c].map(lambda a: "(" + ", ".join(repr(float(v)) for v in a) + ")")
    cat.to_csv(path, index=False)


@pytest.fixture(scope="module")
def xp_model(tmp_path_factory):
    from skstellar.datasets import make_xp_catalog
    from skstellar.preprocessing.xp import XP_PHOTOMETRY_COLUMNS

    folder = tmp_path_factory.mktemp("xp")
    cat = make_xp_catalog(150, random_state=0)
    cat = cat.drop(columns=list(XP_PHOTOMETRY_COLUMNS.values()))  # as the archive's XP tables
    _xp_csv(cat, folder / "train.csv")
    model = folder / "xp.joblib"
    assert main(["fit", "xp", str(folder / "train.csv"), str(model), "--max-epochs", "4",
                 "--target", "teff", "fe_h"]) == 0
    return folder, model


def test_xp_fit_predict_simulated_equals_python(xp_model):
    import joblib

    from skstellar.cli import predict_method, read_method_input

    folder, model = xp_model
    out = folder / "pred.csv"
    assert main(["predict", str(model), str(folder / "train.csv"), str(out), "--n-jobs", "1"]) == 0
    pred = read_catalog(out)
    assert list(pred.columns) == ["source_id", "teff_pred", "teff_pred_error", "fe_h_pred",
                                  "fe_h_pred_error"]
    assert (pred["teff_pred_error"] > 0).all()
    X, table = read_method_input("xp", str(folder / "train.csv"))
    py = predict_method(joblib.load(model), X, table)
    np.testing.assert_allclose(pred["fe_h_pred"], py["fe_h_pred"], rtol=1e-12)
    np.testing.assert_allclose(pred["teff_pred_error"], py["teff_pred_error"], rtol=1e-12)


def test_xp_predict_on_real_archive_table(xp_model):
    from skstellar.io import find_shared_data

    folder = find_shared_data("gaia_xp")
    if folder is None:
        pytest.skip("../shared/data/gaia_xp not available")
    tmp, model = xp_model
    for name in ("XP_CONTINUOUS_RAW.csv", "XP_CONTINUOUS_RAW.fits"):
        out = tmp / (name + ".out.csv")
        assert main(["predict", str(model), str(folder / name), str(out), "--overwrite"]) == 0
        pred = read_catalog(out)
        assert len(pred) == 2 and np.isfinite(pred["fe_h_pred"]).all()
        assert pred["source_id"].tolist() == [5853498713190525696, 5762406957886626816]


def test_photod_fit_predict_simulated(tmp_path):
    from skstellar.datasets import make_lsst_catalog
    from skstellar.io import find_shared_data

    if find_shared_data("photod") is None:  # the simulator draws from the real locus
        pytest.skip("../shared/data/photod (locus and prior maps) not available")
    cat = make_lsst_catalog(600, random_state=0)
    path = tmp_path / "lsst.parquet"
    write_catalog(cat, path)
    model = tmp_path / "pd.joblib"
    assert main(["fit", "photod", str(path), str(model), "--max-epochs", "2"]) == 2  # no --target
    assert main(["fit", "photod", str(path), str(model), "--max-epochs", "2",
                 "--target", "Mr_true", "FeH_true", "Ar_true"]) == 0
    out = tmp_path / "pd.csv"
    assert main(["predict", str(model), str(path), str(out)]) == 0
    pred = read_catalog(out)
    assert list(pred.columns) == ["ra", "dec", "Mr_true_pred", "Mr_true_pred_error",
                                  "FeH_true_pred", "FeH_true_pred_error", "Ar_true_pred",
                                  "Ar_true_pred_error"]
    assert len(pred) == 600 and (pred["Mr_true_pred_error"] > 0).all()
    import joblib

    from skstellar.cli import predict_method, read_method_input

    X, table = read_method_input("photod", str(path))
    py = predict_method(joblib.load(model), X, table)
    np.testing.assert_allclose(pred["FeH_true_pred"], py["FeH_true_pred"], rtol=1e-12)
    np.testing.assert_allclose(pred["Ar_true_pred_error"], py["Ar_true_pred_error"], rtol=1e-12)


def test_photod_predict_on_real_stripe82(tmp_path):
    from skstellar.datasets import make_lsst_catalog
    from skstellar.io import find_shared_data, load_stripe82_sample

    if find_shared_data("photod") is None:
        pytest.skip("../shared/data/photod not available")
    real = load_stripe82_sample().head(300)
    path = tmp_path / "s82.csv"
    real.to_csv(path, index=False)
    cat = make_lsst_catalog(400, random_state=1)
    write_catalog(cat, tmp_path / "train.csv")
    model = tmp_path / "pd.joblib"
    assert main(["fit", "photod", str(tmp_path / "train.csv"), str(model),
                 "--max-epochs", "1", "--target", "Mr_true", "FeH_true", "Ar_true"]) == 0
    assert main(["predict", str(model), str(path), str(tmp_path / "o.csv")]) == 0
    pred = read_catalog(tmp_path / "o.csv")
    assert len(pred) == 300 and np.isfinite(pred["Mr_true_pred"]).all()


def test_galaxy_fit_on_spectra_table_predict_on_real_lamost(tmp_path, capsys):
    from skstellar.datasets import make_galaxy_spectra
    from skstellar.io import find_shared_data, write_spectra_table

    batch = make_galaxy_spectra(40, random_state=0, z_range=(0.0, 0.25))
    table = tmp_path / "gal.parquet"
    write_spectra_table(batch, table)
    model = tmp_path / "cnn.joblib"
    assert main(["fit", "galaxy", str(table), str(model), "--max-epochs", "1"]) == 0
    assert main(["predict", str(model), str(table), str(tmp_path / "sim.csv")]) == 0
    sim = read_catalog(tmp_path / "sim.csv")
    assert len(sim) == 40 and np.isfinite(sim["oh_pred"]).all()
    import joblib

    from skstellar.cli import predict_method, read_method_input

    X, meta = read_method_input("galaxy", str(table))
    py = predict_method(joblib.load(model), X, meta)
    np.testing.assert_allclose(sim["oh_pred"], py["oh_pred"], rtol=1e-12)
    # a missing label column is a one-line error
    assert main(["fit", "galaxy", str(table), str(tmp_path / "x.joblib"),
                 "--target", "nope"]) == 2
    _one_line_error(capsys, "nope")
    folder = find_shared_data("lamost_spectra")
    if folder is None:
        pytest.skip("../shared/data/lamost_spectra not available")
    out = tmp_path / "real.csv"
    assert main(["predict", str(model), str(folder / "dr1_B6212_sp06"), str(out)]) == 0
    real = read_catalog(out)
    assert len(real) == 18 and {"designation", "filename", "oh_pred"} <= set(real.columns)
    assert real["filename"].iloc[0].startswith("spec-55862-B6212_sp06")


@pytest.fixture(scope="module")
def labelfit_model(tmp_path_factory):
    from skstellar.datasets import make_mdwarf_spectra
    from skstellar.io import write_spectra_table

    folder = tmp_path_factory.mktemp("labelfit")
    synth, obs = make_mdwarf_spectra(150, 4, random_state=0)
    write_spectra_table(synth, folder / "synth.parquet")
    write_spectra_table(synth[:4], folder / "synth_test.fits")
    model = folder / "payne.joblib"
    assert main(["fit", "labelfit", str(folder / "synth.parquet"), str(model),
                 "--max-epochs", "20"]) == 0
    return folder, model, synth


def test_labelfit_fit_predict_simulated_equals_python(labelfit_model):
    import joblib

    from skstellar.cli import predict_method, read_method_input

    folder, model, synth = labelfit_model
    out = folder / "labels.csv"
    assert main(["predict", str(model), str(folder / "synth_test.fits"), str(out),
                 "--n-jobs", "1"]) == 0
    pred = read_catalog(out)
    assert list(pred.columns[:7]) == ["star_id", "teff_pred", "teff_pred_error", "logg_pred",
                                      "logg_pred_error", "m_h_pred", "m_h_pred_error"]
    assert pred["fit_ok"].all() and "rv" not in pred.columns  # already on the grid
    X, table = read_method_input("labelfit", str(folder / "synth_test.fits"))
    py = predict_method(joblib.load(model), X, table)
    np.testing.assert_allclose(pred["teff_pred"], py["teff_pred"], rtol=1e-10)
    # labels land inside the training range, near the truth for the emulator's own domain
    assert np.all(np.abs(pred["teff_pred"] - synth.meta["teff"][:4].to_numpy()) < 400)


def test_labelfit_predict_on_real_lamost(labelfit_model):
    from skstellar.io import find_shared_data

    lamost = find_shared_data("lamost_spectra")
    if lamost is None:
        pytest.skip("../shared/data/lamost_spectra not available")
    folder, model, _ = labelfit_model
    out = folder / "real.csv"
    assert main(["predict", str(model), str(lamost / "dr6_M31_011N40_B1"), str(out)]) == 0
    pred = read_catalog(out)
    assert len(pred) == 3 and pred["fit_ok"].all()
    assert {"designation", "obsid", "rv", "rv_err", "chi2_reduced"} <= set(pred.columns)
    assert np.all((pred["teff_pred"] > 2800) & (pred["teff_pred"] < 4200))


def test_predict_invalid_rows_policy(tmp_path, capsys):
    import skstellar
    from skstellar.cli import predict_table

    cat = make_mdwarf_photometry(30, random_state=4)
    cat.loc[3, "w2mpro"] = np.nan
    cat.loc[7, "parallax"] = -0.5
    path = tmp_path / "stars.csv"
    cat.to_csv(path, index=False)
    out = tmp_path / "o.csv"
    assert main(["predict", "mdwarf-feh", str(path), str(out)]) == 2
    _one_line_error(capsys, "w2mpro")
    assert main(["predict", "mdwarf-feh", str(path), str(out), "--invalid", "flag"]) == 0
    pred = read_catalog(out)
    assert len(pred) == 30 and pred["valid_input"].tolist() == [i not in (3, 7) for i in range(30)]
    assert np.isnan(pred["fe_h_pred"][[3, 7]]).all() and not pred["in_domain"][[3, 7]].any()
    good = cat.drop(index=[3, 7])
    ref = predict_table(skstellar.load_pretrained("mdwarf-feh"), good)
    np.testing.assert_allclose(pred["fe_h_pred"].drop(index=[3, 7]), ref["fe_h_pred"], rtol=1e-12)


def test_mdwarf_fit_and_pretrained_predict_on_real_birky_stars(tmp_path):
    from skstellar.io import find_shared_data, load_mdwarf_catalog

    if find_shared_data("mdwarf_photometry") is None:
        pytest.skip("../shared/data/mdwarf_photometry not available")
    cat = load_mdwarf_catalog()  # the real file, archive column names
    path = tmp_path / "birky.fits"
    write_catalog(cat.drop(columns=[c for c in cat.columns if c.startswith("M_")]).head(400),
                  path)
    assert main(["predict", "mdwarf-feh", str(path), str(tmp_path / "feh.csv")]) == 0
    pred = read_catalog(tmp_path / "feh.csv")
    assert pred["apogee_id"].tolist() == cat["apogee_id"].head(400).tolist()
    resid = pred["fe_h_pred"] - cat["fe_h"].head(400).to_numpy()
    assert resid.std() < 0.1 and pred["in_domain"].mean() > 0.95
    model = tmp_path / "m.joblib"
    assert main(["fit", "mdwarf", str(path), str(model), "--max-epochs", "2"]) == 0
    assert main(["predict", str(model), str(path), str(tmp_path / "p.parquet")]) == 0
    assert len(read_catalog(tmp_path / "p.parquet")) == 400


def test_galaxy_fit_on_real_lamost_files_with_a_labels_catalogue(tmp_path, capsys):
    from skstellar.io import find_shared_data

    folder = find_shared_data("lamost_spectra")
    if folder is None:
        pytest.skip("../shared/data/lamost_spectra not available")
    import pandas as pd

    files = sorted(p.name for p in (folder / "dr1_B6212_sp06").glob("*.fits"))
    # placeholder labels (these are stars): the test is the join by file name and the run
    labels = pd.DataFrame({"filename": files[::-1], "oh": np.linspace(8.2, 9.0, len(files))})
    labels.to_csv(tmp_path / "labels.csv", index=False)
    model = tmp_path / "cnn.joblib"
    assert main(["fit", "galaxy", str(folder / "dr1_B6212_sp06"), str(model),
                 "--labels", str(tmp_path / "labels.csv"), "--max-epochs", "1"]) == 0
    assert main(["predict", str(model), str(folder / "dr1_B6212_sp06"),
                 str(tmp_path / "o.csv")]) == 0
    assert len(read_catalog(tmp_path / "o.csv")) == len(files)
    labels.iloc[1:].to_csv(tmp_path / "short.csv", index=False)  # one file without a label
    assert main(["fit", "galaxy", str(folder / "dr1_B6212_sp06"), str(tmp_path / "x.joblib"),
                 "--labels", str(tmp_path / "short.csv")]) == 2
    _one_line_error(capsys, "not finite")
