"""Cycle-StarNet domain adaptation, The Payne emulator and spectral label fitting (method 5).

- adapter: :class:`CycleStarNet` (unsupervised synthetic <-> observed domain
  adapter, a scikit-learn transformer); networks: its torch modules;
- payne: :class:`PayneEmulator` (The Payne's MLP emulator; loads its npz
  networks, modern and legacy formats);
- fitting: :class:`SpectralLabelFitter` (batched, bounded per-spectrum
  L-BFGS label fits with curvature uncertainties; optional domain adapter);
- evaluation: :func:`evaluate_cyclestarnet`, :func:`run_cyclestarnet_demo`
  (fit residuals before/after adaptation, label bias/scatter, timings);
- indices: H-alpha equivalent width and activity flag, TiO5 and spectral
  subtype, precision-vs-S/N model (catalogue extras of the LAMOST M-dwarf paper).
"""

from . import evaluation, indices
from .adapter import SPLIT_POLICIES, CycleStarNet
from .evaluation import *  # noqa: F403 (names in evaluation.__all__)
from .fitting import LabelFitResult, SpectralLabelFitter, doppler_shift_torch
from .indices import *  # noqa: F403 (names in indices.__all__)
from .networks import CycleStarNetGenerator, PairDiscriminator, closing_length
from .payne import PayneEmulator, PayneNetwork, PerPixelNetwork

__all__ = [
    *evaluation.__all__,
    "SPLIT_POLICIES",
    "CycleStarNet",
    "CycleStarNetGenerator",
    "PairDiscriminator",
    "closing_length",
    "LabelFitResult",
    "PayneEmulator",
    "PayneNetwork",
    "PerPixelNetwork",
    "SpectralLabelFitter",
    "doppler_shift_torch",
    *indices.__all__,
]
