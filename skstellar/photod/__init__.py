"""LSST photometric distances (method 2).

- :class:`BayesianPhotoD` -- the Bayesian grid-search teacher (posterior
  means/stds of M_r, [Fe/H], A_r on the locus x prior grid);
- :class:`PhotoDNetwork` -- the moments network (student) with the secondary
  sigma_B network;
- :class:`HybridPhotoD` -- teacher on a seeded fraction of each HEALPix sky
  patch, a student per patch for the rest; runs in-process or on Dask;
- :func:`evaluate_photod`, :func:`run_photod_demo` -- Table-1-style evaluation.
"""

from .evaluation import evaluate_photod, run_photod_demo
from .hybrid import HybridPhotoD, PatchStudent, healpix_patches
from .network import MomentLoss, PhotoDNetwork, StudentWeights, WeightedMSELoss
from .teacher import BayesianPhotoD

__all__ = [
    "BayesianPhotoD",
    "HybridPhotoD",
    "MomentLoss",
    "PatchStudent",
    "PhotoDNetwork",
    "StudentWeights",
    "WeightedMSELoss",
    "evaluate_photod",
    "healpix_patches",
    "run_photod_demo",
]
