"""Convolutional subsampling: ``(B, T, 80)`` log-mel -> ``(B, T', D)`` at 4x or 8x fewer frames.

Two (4x) or three (8x) 3x3 convolutions with stride 2 and no time padding, so output frame ``j``
sees input frames ``[s*j, s*j + rf)`` with ``s`` the factor and ``rf = 2s - 1``; streaming keeps
the unconsumed input frames and is exact.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ConvSubsampling"]


class ConvSubsampling(nn.Module):
    """Strided 2-D convolutions over (time, mel) followed by a projection to ``d_model``."""

    def __init__(self, *, n_mels: int, d_model: int, channels: int, factor: int) -> None:
        super().__init__()
        n_convs = {4: 2, 8: 3}[factor]
        layers: list[nn.Module] = []
        c_in, f = 1, n_mels
        for _ in range(n_convs):
            layers += [nn.Conv2d(c_in, channels, kernel_size=3, stride=2), nn.SiLU()]
            c_in, f = channels, (f - 3) // 2 + 1
        self.conv = nn.Sequential(*layers)
        self.proj = nn.Linear(channels * f, d_model)
        self.factor = factor
        self.receptive_field = 2 * factor - 1

    @property
    def proj_device(self) -> torch.device:
        """Device of the parameters (the convolutions are never quantized)."""
        conv = self.conv[0]
        assert isinstance(conv, nn.Conv2d)
        return conv.weight.device

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frames out for ``lengths`` frames in; shape ``(B,)``."""
        out = lengths
        for _ in range({4: 2, 8: 3}[self.factor]):
            out = torch.div(out - 3, 2, rounding_mode="floor") + 1
        return out.clamp(min=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, T, F)`` -> ``(B, T', D)``; ``T' = 0`` when ``T < receptive_field``."""
        if x.size(1) < self.receptive_field:
            return x.new_zeros(x.size(0), 0, self.proj.out_features)
        h = self.conv(x.unsqueeze(1))  # (B, C, T', F')
        b, c, t, f = h.shape
        return self.proj(h.transpose(1, 2).reshape(b, t, c * f))  # (B, T', D)
