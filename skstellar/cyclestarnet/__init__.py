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

from .adapter import SPLIT_POLICIES, CycleStarNet
from .evaluation import (
    FAST_ADAPTER_PARAMS,
    PAPER_FIGURES,
    TARGETS,
    continuum_throughput,
    evaluate_cyclestarnet,
    format_cyclestarnet_report,
    label_statistics,
    residual_rms,
    run_cyclestarnet_demo,
)
from .fitting import LabelFitResult, SpectralLabelFitter, doppler_shift_torch
from .indices import (
    ACTIVITY_THRESHOLD,
    HALPHA_AIR,
    HALPHA_CONTINUUM_WINDOWS,
    HALPHA_VACUUM,
    SPT_RANGE,
    TIO5_CONTINUUM,
    TIO5_NUMERATOR,
    activity_flag,
    fit_precision_snr,
    halpha_equivalent_width,
    precision_model,
    repeat_precision,
    spectral_subtype_from_tio5,
    tio5_index,
)
from .networks import CycleStarNetGenerator, PairDiscriminator, closing_length
from .payne import PayneEmulator, PayneNetwork, PerPixelNetwork

__all__ = [
    "FAST_ADAPTER_PARAMS",
    "PAPER_FIGURES",
    "TARGETS",
    "continuum_throughput",
    "evaluate_cyclestarnet",
    "format_cyclestarnet_report",
    "label_statistics",
    "residual_rms",
    "run_cyclestarnet_demo",
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
    "ACTIVITY_THRESHOLD",
    "HALPHA_AIR",
    "HALPHA_CONTINUUM_WINDOWS",
    "HALPHA_VACUUM",
    "SPT_RANGE",
    "TIO5_CONTINUUM",
    "TIO5_NUMERATOR",
    "activity_flag",
    "fit_precision_snr",
    "halpha_equivalent_width",
    "precision_model",
    "repeat_precision",
    "spectral_subtype_from_tio5",
    "tio5_index",
]
