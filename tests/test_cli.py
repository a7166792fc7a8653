"""The skstellar command line: demo, fit, predict."""

import json

import numpy as np
import pytest

from skstellar.cli import main
from skstellar.datasets import make_mdwarf_photometry, read_catalog, write_catalog


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


def test_fit_reports_missing_target(tmp_path):
    cat = make_mdwarf_photometry(50, random_state=0).drop(columns="fe_h")
    path = tmp_path / "c.csv"
    cat.to_csv(path, index=False)
    with pytest.raises(SystemExit, match="fe_h"):
        main(["fit", "mdwarf", str(path), str(tmp_path / "m.joblib")])


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
    assert "paper RMSE" in out and "51.8" in out and "sigma_input with the input noise doubled" in out
    figures = json.loads(js.read_text())
    assert figures["n_test"] == 100 and figures["n_iter"] == 16
    assert [p["label"] for p in figures["per_label"]] == ["teff", "logg", "fe_h", "c_fe", "n_fe", "alpha_m"]
    assert all(p["median_sigma_total"] > 0 for p in figures["per_label"])
    assert (plots / "xp_zscores.png").exists()


def test_photod_demo_runs_end_to_end(tmp_path, capsys):
    from skstellar.datasets import find_shared_data

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
