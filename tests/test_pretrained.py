"""Pretrained models shipped with skstellar: listing, loading, the storage format."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import skstellar
from skstellar.cli import make_mdwarf_pipeline, predict_table
from skstellar.datasets import make_mdwarf_photometry
from skstellar.io import find_shared_data
from skstellar.pretrained import (
    PRETRAINED_DIR,
    load_mdwarf_pipeline,
    pretrained_path,
    save_mdwarf_pipeline,
)

README = Path(__file__).resolve().parents[1] / "README.md"
ARCHIVE = ["phot_bp_mean_mag", "phot_g_mean_mag", "phot_rp_mean_mag", "j_m", "h_m", "ks_m",
           "w1mpro", "w2mpro", "parallax", "parallax_error"]


def test_list_pretrained_describes_mdwarf_feh():
    models = skstellar.list_pretrained()
    assert "mdwarf-feh" in models.names()
    m = models[models.names().index("mdwarf-feh")]
    assert "Birky" in m.training_data and "DR2" in m.training_data
    assert "G-J" in m.validity_domain and "W1-W2" in m.validity_domain
    assert re.search(r"RMSE 0\.\d+ dex", m.accuracy)
    assert tuple(m.inputs) == tuple(ARCHIVE)
    text = str(models)
    assert "mdwarf-feh:" in text and "accuracy" in text


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(ValueError, match="mdwarf-feh"):
        skstellar.load_pretrained("no-such-model")


def test_shipped_files_are_small_and_pickle_free():
    folder = pretrained_path("mdwarf-feh")
    assert sum(p.stat().st_size for p in folder.iterdir()) < 200_000
    with np.load(folder / "weights.npz", allow_pickle=False) as npz:  # no code on load
        assert all(npz[k].dtype == np.float32 or npz[k].dtype.kind == "i" for k in npz.files)
    meta = json.loads((folder / "model.json").read_text())
    assert meta["format_version"] == 1 and meta["kind"] == "mdwarf_pipeline"
    assert len(meta["card"]["split"]["test_apogee_ids"]) > 400


def test_pretrained_predicts_from_archive_columns():
    model = skstellar.load_pretrained("mdwarf-feh")
    cat = make_mdwarf_photometry(200, random_state=1)
    mean, std = model.predict(cat[ARCHIVE], return_std=True)
    assert mean.shape == std.shape == (200,)
    assert np.isfinite(mean).all() and (std > 0).all() and (np.abs(mean) < 1).all()
    # loading twice gives the same model (MC seed stored)
    again = skstellar.load_pretrained("mdwarf-feh").predict(cat, return_std=True)
    assert_array_equal(mean, again[0])
    assert_array_equal(std, again[1])
    # validity-domain flags come with the prediction table
    table = predict_table(model, cat)
    for col in ("fe_h_pred", "fe_h_pred_error", "outside_colour_box", "in_domain"):
        assert col in table.columns
    assert_array_equal(table["fe_h_pred"], mean)


def test_pretrained_needs_no_parallax_error_and_names_missing_columns():
    model = skstellar.load_pretrained("mdwarf-feh")
    cat = make_mdwarf_photometry(20, random_state=2)
    full = model.predict(cat)
    assert_array_equal(model.predict(cat.drop(columns="parallax_error")), full)
    with pytest.raises(ValueError, match="w1mpro"):
        model.predict(cat.drop(columns="w1mpro"))


def test_save_load_round_trip_is_exact(tmp_path):
    cat = make_mdwarf_photometry(300, random_state=0)
    pipe = make_mdwarf_pipeline(random_state=0, max_epochs=3, architecture="released")
    pipe.fit(cat[ARCHIVE], cat["fe_h"])
    save_mdwarf_pipeline(pipe, tmp_path / "m", card={"description": "test"})
    loaded = load_mdwarf_pipeline(tmp_path / "m")
    a = pipe.predict(cat, return_std=True)
    b = loaded.predict(cat, return_std=True)
    assert_array_equal(a[0], b[0])
    assert_array_equal(a[1], b[1])
    assert loaded[-1].get_params() == pipe[-1].get_params()
    assert loaded.card_ == {"description": "test"}
    assert_array_equal(loaded[-1].feature_names_in_, pipe[-1].feature_names_in_)


def test_heldout_accuracy_matches_the_card():
    if find_shared_data("mdwarf_photometry") is None:
        pytest.skip("../shared/data/mdwarf_photometry not available")
    from skstellar.io import load_mdwarf_catalog

    model = skstellar.load_pretrained("mdwarf-feh")
    cat = load_mdwarf_catalog()
    test = cat[cat["apogee_id"].astype(str).isin(model.card_["split"]["test_apogee_ids"])]
    assert len(test) == model.card_["accuracy"]["all"]["n"]
    r = model.predict(test[ARCHIVE]) - test["fe_h"].to_numpy()
    rmse = float(np.sqrt(np.mean(r ** 2)))
    assert_allclose(rmse, model.card_["accuracy"]["all"]["rmse"], rtol=1e-5)
    # the authors' released network scores 0.073 dex on these stars
    # (benchmarks/pretrained_mdwarf.py); the shipped model must not be worse
    assert rmse <= 0.073


def test_readme_pretrained_python_example_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```py\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no ```py pretrained example"
    cat = make_mdwarf_photometry(30, random_state=0)
    cat.to_csv(tmp_path / "stars.csv", index=False)
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(blocks[0], str(README), "exec"), namespace)
    assert namespace["feh"].shape == (30,)


def test_package_data_declared():
    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert "pretrained/data/*/*" in text and "preprocessing/data/*" in text
    assert PRETRAINED_DIR.is_dir()


def test_payne_legacy_emulator_is_shipped_with_its_licence(capsys):
    from skstellar.cli import main

    assert "payne-legacy-2018" in skstellar.list_pretrained().names()
    folder = pretrained_path("payne-legacy-2018")
    licence = (folder / "LICENSE.txt").read_text()
    assert "MIT License" in licence and "Kareem El-Badry" in licence
    emu = skstellar.load_pretrained("payne-legacy-2018")
    assert list(emu.label_names_) == ["teff", "logg", "feh", "mgfe", "vmacro"]
    flux = emu.predict(np.array([[5800.0, 4.44, 0.0, 0.0, 5.0], [5000.0, 4.6, 0.0, 0.0, 5.0]]))
    # the checks written in ../shared/data/payne/README.md for these two label sets
    assert flux.shape == (2, 7214)
    assert_allclose(np.median(flux, axis=1), [0.995, 0.992], atol=2e-3)
    assert_allclose(flux.min(axis=1), [0.61, 0.53], atol=1e-2)
    assert emu.wavelength_[0] == pytest.approx(15168.13, abs=0.01)
    # the CLI says plainly that an emulator is not a catalogue predictor
    assert main(["predict", "payne-legacy-2018", "x.csv", "y.csv"]) == 2
    assert "emulator" in capsys.readouterr().err


def test_payne_shipped_weights_equal_the_source_file():
    src = find_shared_data("payne")
    if src is None:
        pytest.skip("../shared/data/payne not available")
    with np.load(src / "legacy_2018" / "NN_normalized_spectra.npz") as a, \
            np.load(pretrained_path("payne-legacy-2018") / "weights.npz") as b:
        for k in ("w_array_0", "b_array_0", "w_array_1", "b_array_1", "x_min", "x_max"):
            assert_allclose(b[k], a[k], rtol=0, atol=0)
