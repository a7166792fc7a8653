"""The shared helpers the spectrum and photometry transformers reuse.

``batch_like``, ``validate_flux_array`` and ``forget_input_features`` of
:mod:`skstellar.preprocessing.spectra_input`, and ``strict=True`` of
:func:`skstellar._validation.check_non_negative`.
"""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator

from skstellar._validation import check_non_negative
from skstellar.preprocessing.spectra_input import (
    batch_like,
    forget_input_features,
    validate_flux_array,
)
from skstellar.spectrum import SpectrumBatch


def _batch():
    wave = np.array([5000.0, 5001.0, 5002.0])
    meta = pd.DataFrame({"z": [0.1, 0.2]})
    return SpectrumBatch(wave, np.ones((2, 3)), meta=meta, npix=np.array([3, 2]))


def test_batch_like_copies_the_other_fields():
    X = _batch()
    flux = np.full((2, 3), 2.0)
    out = batch_like(X, flux, None, np.zeros((2, 3), bool))
    assert out.flux is flux and out.ivar is None and not out.mask.any()
    np.testing.assert_array_equal(out.wavelength, X.wavelength)
    np.testing.assert_array_equal(out.npix, [3, 2])
    pd.testing.assert_frame_equal(out.meta, X.meta)
    out.wavelength[0] = -1.0  # copies, not views of the input
    out.npix[0] = 0
    out.meta.loc[0, "z"] = 9.0
    assert X.wavelength[0] == 5000.0 and X.npix[0] == 3 and X.meta.loc[0, "z"] == 0.1


def test_batch_like_takes_new_wavelengths():
    X = _batch()
    wave = X.wavelength_2d() / 1.1
    out = batch_like(X, X.flux, None, None, wave)
    assert out.wavelength is wave


class _Stateless(BaseEstimator):
    pass


def test_validate_flux_array_sets_and_checks_the_width():
    est = _Stateless()
    X = np.array([[1.0, np.nan, 3.0]], dtype=np.float32)
    out = validate_flux_array(est, X, reset=True)
    assert out.dtype == np.float32 and est.n_features_in_ == 3
    with pytest.raises(ValueError, match="3 features"):
        validate_flux_array(est, np.ones((1, 4)), reset=False)
    forget_input_features(est)
    assert not hasattr(est, "n_features_in_")
    # not fitted on an array: any width passes, int input becomes float64
    assert validate_flux_array(est, np.ones((2, 5), int), reset=False).dtype == np.float64
    with pytest.raises(ValueError, match="infinity"):
        validate_flux_array(est, np.array([[1.0, np.inf]]), reset=False)


def test_forget_input_features_deletes_more_fitted_attributes():
    est = _Stateless()
    est.n_features_in_, est.layout_, est.kept_ = 3, "named", 1
    forget_input_features(est, "layout_", "absent_")
    assert not hasattr(est, "n_features_in_") and not hasattr(est, "layout_")
    assert est.kept_ == 1


def test_check_non_negative_strict_refuses_zeros():
    check_non_negative([0.0, 1.0], "e")  # zero is fine by default
    with pytest.raises(ValueError, match=r"Column 'e' has 1 non-positive error\(s\) \(first at "
                                         r"row 0, index 'a'\)\."):
        check_non_negative([0.0, 1.0], "e", index=pd.Index(["a", "b"]), strict=True)
    with pytest.raises(ValueError, match=r"has 2 negative value\(s\) \(first at row 1\)"):
        check_non_negative([1.0, -1.0, -2.0], "e", "value")
