"""Galaxy gas-phase metallicity from redshift-free spectra (LAMOST CNN paper)."""

from .cnn import SpectralCNNClassifier, SpectralCNNRegressor

__all__ = ["SpectralCNNClassifier", "SpectralCNNRegressor"]
