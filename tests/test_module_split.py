"""The split of preprocessing/spectra.py and photod/hybrid.py (issue 13): names stay put.

Every public name keeps working from the old module and from the subpackage
and is the very object defined in its new home; the newly public helpers
(``patch_uniq``/``patch_key``, ``as_spectra``) do what the private ones did;
the photo-D target and input names are defined once, in ``skstellar.columns``.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import skstellar.photod as photod
import skstellar.preprocessing as prep
from skstellar import columns
from skstellar.photod import hybrid, network, patch_job, patches, student, teacher
from skstellar.preprocessing import (
    rest_frame,
    spectra,
    spectra_input,
    spectrum_minmax,
)
from skstellar.spectrum import SPEED_OF_LIGHT_KMS, SpectrumBatch


@pytest.mark.parametrize(
    ("old", "new", "name"),
    [
        (spectra, rest_frame, "RestFrameShifter"),
        (spectra, rest_frame, "to_rest_frame"),
        (spectra, rest_frame, "C_KMS"),
        (spectra, spectrum_minmax, "SpectrumMinMaxScaler"),
        (prep, rest_frame, "RestFrameShifter"),
        (prep, spectrum_minmax, "SpectrumMinMaxScaler"),
        (prep, spectra, "SpectrumResampler"),
        (hybrid, patches, "healpix_patches"),
        (hybrid, patches, "DEFAULT_PATCH_ORDER"),
        (hybrid, student, "PatchStudent"),
        (photod, student, "PatchStudent"),
        (photod, patches, "healpix_patches"),
    ],
)
def test_old_homes_re_export_the_moved_names(old, new, name):
    assert getattr(old, name) is getattr(new, name)


def test_old_all_lists_unchanged():
    assert set(spectra.__all__) == {
        "RestFrameShifter", "SpectrumMinMaxScaler", "SpectrumResampler", "to_rest_frame"}
    assert set(hybrid.__all__) == {
        "DEFAULT_PATCH_ORDER", "WARM_START_PARAMS", "PHOTOD_FEATURES", "TARGETS",
        "HybridPhotoD", "PatchStudent", "healpix_patches"}
    for mod in (spectra, hybrid):
        for name in mod.__all__:
            assert hasattr(mod, name), (mod.__name__, name)


def test_speed_of_light_defined_once():
    assert rest_frame.C_KMS is SPEED_OF_LIGHT_KMS
    assert spectra.to_rest_frame(5000.0, rv=SPEED_OF_LIGHT_KMS * 0.01) == pytest.approx(
        5000.0 / 1.01, rel=1e-15)


def test_photod_names_defined_once():
    assert columns.PHOTOD_TARGETS == ("Mr", "FeH", "Ar")
    for names in (hybrid.TARGETS, network.TARGET_NAMES, teacher.TARGET_NAMES):
        assert names is columns.PHOTOD_TARGETS
    assert hybrid.PHOTOD_FEATURES is network.PHOTOD_INPUT_COLUMNS is columns.PHOTOD_INPUT_COLUMNS
    assert len(columns.PHOTOD_INPUT_COLUMNS) == 10


def test_patch_uniq_round_trip():
    pytest.importorskip("astropy_healpix")
    order = np.array([0, 4, 4, 29])
    pixel = np.array([11, 0, 3071, 12 * 4**29 - 1])
    uniq = patches.patch_uniq(order, pixel)
    assert uniq.dtype == np.int64
    np.testing.assert_array_equal(uniq, 4 * 4**order + pixel)
    o, p = patches.patch_from_uniq(uniq)
    np.testing.assert_array_equal(o, order)
    np.testing.assert_array_equal(p, pixel)
    assert [patches.patch_key(u) for u in uniq] == list(zip(order.tolist(), pixel.tolist()))
    assert all(type(v) is int for v in patches.patch_key(uniq[1]))


def test_as_spectra_pads_a_list_and_refuses_other_input():
    w1, w2 = np.array([1.0, 2.0, 3.0]), np.array([1.5, 2.5])
    sp = spectra_input.as_spectra([(w1, np.ones(3)), (w2, np.zeros(2))])
    assert len(sp) == 2
    np.testing.assert_array_equal(sp.wave[1], [1.5, 2.5, np.nan])
    assert spectra_input.as_spectra(np.ones((2, 3))) is None
    batch = SpectrumBatch(w1, np.ones((2, 3)))
    assert spectra_input.as_spectra(batch).flux.shape == (2, 3)
    with pytest.raises(ValueError, match="ivar"):
        spectra_input.as_spectra([(w1, np.ones(3), np.ones(3)), (w2, np.zeros(2))])


def test_patch_job_pickles_with_its_new_module_path():
    job = patch_job._PatchJob(hybrid.HybridPhotoD(), None, 7)
    back = pickle.loads(pickle.dumps(job))
    assert type(back).__module__ == "skstellar.photod.patch_job"
    assert back.seeds(4, 10) == job.seeds(4, 10)
