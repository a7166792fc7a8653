"""M-dwarf photometric metallicity (Duque-Arribas et al. 2025): the network and its selection."""

from .regressor import ARCHITECTURES, MDwarfMetallicityRegressor, paper_search_space

__all__ = ["ARCHITECTURES", "MDwarfMetallicityRegressor", "paper_search_space"]
