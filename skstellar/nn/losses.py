"""Loss functions shared by skstellar's networks.

Each loss is an ``nn.Module`` called as ``loss(y_pred, y_true)`` (skorch's
criterion convention) that returns a scalar.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["LinearWeightedMSELoss"]


class LinearWeightedMSELoss(nn.Module):
    """Mean squared error weighted by a linear function of the target's size.

    ``loss = mean( (y_pred - y_true)^2 * (slope * |y_true| + intercept) )``

    With ``slope=4`` and ``intercept=0.5`` this is the weight
    ``W = 4 |[Fe/H]| + 0.5`` of Duque-Arribas et al. (2025, Sect. 2.2), which
    down-weights the pile-up of solar-metallicity stars. As in the authors'
    code the weighted squared errors are averaged (not divided by the sum of
    the weights).

    Parameters
    ----------
    slope : float, default=4.0
        Weight per unit ``|y_true|`` (per dex for metallicities).
    intercept : float, default=0.5
        Weight at ``y_true = 0``; must be positive so no star is ignored.
    """

    def __init__(self, slope: float = 4.0, intercept: float = 0.5):
        super().__init__()
        if intercept <= 0 or slope < 0:
            raise ValueError(
                f"Need slope >= 0 and intercept > 0, got slope={slope}, intercept={intercept}."
            )
        self.slope = float(slope)
        self.intercept = float(intercept)

    def forward(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        """Weighted mean squared error, a scalar tensor."""
        if y_pred.shape != y_true.shape:
            # A 1-D target against a (n, 1) output would broadcast to (n, n).
            raise ValueError(
                f"Prediction shape {tuple(y_pred.shape)} != target shape {tuple(y_true.shape)}."
            )
        weight = self.slope * y_true.abs() + self.intercept
        return torch.mean((y_pred - y_true) ** 2 * weight)

    def extra_repr(self) -> str:
        """Weight coefficients shown in the module's repr."""
        return f"slope={self.slope}, intercept={self.intercept}"
