"""The U-Net of Ronneberger et al. (2015) with valid convolutions, in one file.

This module is shipped inside the bioimage.io model packages that napari-unet
exports, as the architecture of their ``pytorch_state_dict`` weights. It imports
torch only, so any bioimage.io consumer can rebuild the network; its layers and
parameter names are those of ``napari_unet.model.UNet``, whose state dicts it
loads unchanged. It is written to be scriptable with ``torch.jit.script`` (the
crop of each skip connection depends on the input size).

The output holds class scores (logits) for the centre of the input: every side
loses the network's context (92 pixels for depth 5), and a valid input size is
``min_size + k * 2**(depth - 1)``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["UNet"]


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """U-Net with valid (unpadded) 3x3 convolutions.

    Parameters
    ----------
    in_channels : int
        Input channels.
    n_classes : int
        Output classes; the output holds one score per class (softmax them for
        probabilities).
    base_channels : int
        Features of the first level, doubled at every level (64 in the paper).
    depth : int
        Resolution levels (5 in the paper).
    dropout : float
        Drop-out at the end of the contracting path (inactive in eval mode).
    """

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 2,
        base_channels: int = 64,
        depth: int = 5,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.depth = depth
        widths = [base_channels * 2**i for i in range(depth)]
        self.down = nn.ModuleList()
        cin = in_channels
        for w in widths:
            self.down.append(_conv_block(cin, w))
            cin = w
        self.pool = nn.MaxPool2d(2)
        self.drop = nn.Dropout(float(dropout))
        self.upconv = nn.ModuleList()
        self.up = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.upconv.append(nn.ConvTranspose2d(2 * w, w, 2, stride=2))
            self.up.append(_conv_block(2 * w, w))
        self.head = nn.Conv2d(widths[0], n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores ``(N, n_classes, H - 2 * context, W - 2 * context)``."""
        skips: list[torch.Tensor] = []
        level = 0
        for block in self.down:
            x = block(x)
            if level >= self.depth - 2:
                x = self.drop(x)
            if level < self.depth - 1:
                skips.append(x)
                x = self.pool(x)
            level += 1
        level = 0
        for upconv in self.upconv:
            x = upconv(x)
            skip = skips[len(skips) - 1 - level]
            dy = (skip.shape[-2] - x.shape[-2]) // 2
            dx = (skip.shape[-1] - x.shape[-1]) // 2
            skip = skip[:, :, dy : dy + x.shape[-2], dx : dx + x.shape[-1]]
            x = torch.cat([skip, x], dim=1)
            x = self._up_block(x, level)
            level += 1
        return self.head(x)

    def _up_block(self, x: torch.Tensor, level: int) -> torch.Tensor:
        # a ModuleList cannot be indexed by a variable in TorchScript; iterate instead
        i = 0
        for block in self.up:
            if i == level:
                x = block(x)
            i += 1
        return x
