"""Small synthetic colour locus and prior maps shared by the photo-D tests.

They let the teacher, the simulator and the hybrid pipeline run without the
shared data folder. Not a test module (no ``test_`` prefix).
"""

import numpy as np

from skstellar.io.photod import ColourLocus, PriorMaps


def toy_locus(step=0.1, tip=True):
    """Smooth, invertible colours on Mr 3..9 x [Fe/H] -2..0 (grid ``step``).

    With ``tip`` the metal-poor tracks are cut brighter than Mr 3.5 (NaN
    nodes, like the real locus above the giant-branch tip).
    """
    mr = np.round(np.arange(3.0, 9.0001, step), 10)
    feh = np.round(np.arange(-2.0, 0.0001, step), 10)
    F, M = np.meshgrid(feh, mr, indexing="ij")
    x = M - 3.0
    col = np.stack([  # curved, and not parallel to the reddening vector
        0.9 + 0.30 * F + 0.05 * F**2 + 0.25 * np.sin(0.5 * x),
        0.20 + 0.12 * x + 0.01 * x**2 + 0.05 * F,
        0.05 + 0.03 * x + 0.015 * x**2 + 0.01 * F,
        0.02 + 0.06 * x - 0.004 * x**2,
    ], axis=-1)
    if tip:
        col[(F < -1.5) & (M < 3.5)] = np.nan
    return ColourLocus(mr=mr, feh=feh, colours=col, meta={"source": "toy"})


def toy_priors(r_step=0.5):
    """Gaussian p(Mr, FeH | r) whose centre moves with r; counts ~ 10**(0.2 r)."""
    rc = np.arange(14.0, 22.0001, r_step)
    mr = np.round(np.arange(2.0, 10.0001, 0.2), 10)
    feh = np.round(np.arange(-2.5, 0.5001, 0.1), 10)
    M, F = np.meshgrid(mr, feh, indexing="ij")
    dens = np.stack([
        np.exp(-0.5 * ((M - (6.0 + 0.2 * (r - 18))) / 1.5) ** 2
               - 0.5 * ((F - (-0.7 - 0.1 * (r - 18))) / 0.5) ** 2)
        for r in rc
    ])
    dens /= dens.sum(axis=(1, 2), keepdims=True) * 0.2 * 0.1
    return PriorMaps(r_centres=rc, mr=mr, feh=feh, density=dens, counts=10 ** (0.2 * rc),
                     meta={"source": "toy"})
