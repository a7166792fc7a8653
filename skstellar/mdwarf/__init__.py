"""M-dwarf photometric metallicity (Duque-Arribas et al. 2025): the network and its selection.

- :class:`MDwarfMetallicityRegressor` — the network (MC-dropout uncertainties,
  validity-domain flags);
- :func:`quality_mask`, :func:`validity_mask`, :func:`select_mdwarfs` — the
  paper's Table 1 quality cuts and validity domain (they drop rows, so they
  run before a Pipeline, not inside it).
"""

from .regressor import ARCHITECTURES, MDwarfMetallicityRegressor, paper_search_space
from .selection import quality_mask, select_mdwarfs, validity_mask

__all__ = [
    "ARCHITECTURES",
    "MDwarfMetallicityRegressor",
    "paper_search_space",
    "quality_mask",
    "select_mdwarfs",
    "validity_mask",
]
