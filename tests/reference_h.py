"""h (``MLPAdjuster``) written the plain way, as separate ``nn.Linear`` layers: the second
implementation that h's one flat parameter is checked against."""

from __future__ import annotations

import torch

from gal import MLPAdjuster


def linear_stack(h: MLPAdjuster) -> torch.nn.Sequential:
    """``Linear -> act -> ... -> Linear`` holding copies of h's numbers (same dtype)."""
    layers: list[torch.nn.Module] = []
    for k, (w, b) in enumerate(h.layers()):
        lin = torch.nn.Linear(w.shape[1], w.shape[0]).to(w.dtype)
        with torch.no_grad():
            lin.weight.copy_(w)
            lin.bias.copy_(b)
        layers.append(lin)
        if h.act is not None and k < len(h.shapes) - 1:
            layers.append(type(h.act)())
    return torch.nn.Sequential(*layers)
