"""LSST photometric distances (method 2).

- :class:`BayesianPhotoD` -- the Bayesian grid-search teacher (posterior
  means/stds of M_r, [Fe/H], A_r on the locus x prior grid);
- the moments network and the hybrid per-patch pipeline build on it.
"""

from .teacher import BayesianPhotoD

__all__ = ["BayesianPhotoD"]
