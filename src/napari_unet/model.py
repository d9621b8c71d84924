"""The U-Net of Ronneberger, Fischer & Brox (2015) and its size arithmetic.

All convolutions are *valid* (unpadded), so the output is smaller than the input
and every 2x2 max pooling must see an even size. :func:`output_size` and
:func:`input_size_for_output` encode those rules; :class:`UNet` exposes them as
methods.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .errors import NapariUnetError

__all__ = ["UNet", "output_size", "input_size_for_output", "halo"]


def _check_depth(depth: int) -> None:
    if not isinstance(depth, int) or depth < 1:
        raise NapariUnetError(f"The U-Net depth must be a positive integer, got {depth!r}.")


def output_size(size: int, depth: int = 5) -> int:
    """Output size of a valid-convolution U-Net along one axis.

    Parameters
    ----------
    size : int
        Input size in pixels along one axis.
    depth : int
        Number of resolution levels (5 in the paper).

    Returns
    -------
    int
        The output size along that axis (572 gives 388 for depth 5).

    Raises
    ------
    NapariUnetError
        If a 2x2 pooling would see an odd size or the size shrinks to nothing.
    """
    _check_depth(depth)
    s = int(size)
    ok = True
    for _ in range(depth - 1):
        s -= 4
        if s <= 0 or s % 2:
            ok = False
            break
        s //= 2
    if ok:
        s -= 4
        for _ in range(depth - 1):
            if s <= 0:
                break
            s = 2 * s - 4
    if not ok or s <= 0:
        lo, hi = _neighbours(size, depth)
        if lo == 0:
            raise NapariUnetError(
                f"Input size {size} is too small for a depth-{depth} U-Net; "
                f"the smallest valid size is {hi}."
            )
        raise NapariUnetError(
            f"Input size {size} is not valid for a depth-{depth} U-Net because a 2x2 "
            f"pooling would see an odd size; the nearest valid sizes are {lo} and {hi}."
        )
    return s


def _bottom_to_input(bottom: int, depth: int) -> int:
    """Input size whose bottom level (after its two convs) has ``bottom`` pixels."""
    s = bottom + 4
    for _ in range(depth - 1):
        s = 2 * s + 4
    return s


def _bottom_to_output(bottom: int, depth: int) -> int:
    s = bottom
    for _ in range(depth - 1):
        s = 2 * s - 4
    return s


def _min_bottom(depth: int) -> int:
    b = 1
    while _bottom_to_output(b, depth) < 1:
        b += 1
    return b


def _neighbours(size: int, depth: int) -> tuple[int, int]:
    """Largest valid input size <= ``size`` (or 0) and smallest valid size >= ``size``."""
    b = _min_bottom(depth)
    lo = 0
    while _bottom_to_input(b, depth) < size:
        lo = _bottom_to_input(b, depth)
        b += 1
    hi = _bottom_to_input(b, depth)
    if hi == size:
        lo = hi
    return lo, hi


def input_size_for_output(size: int, depth: int = 5) -> int:
    """Smallest valid input size whose output is at least ``size`` pixels.

    Parameters
    ----------
    size : int
        Wanted output size along one axis, at least 1.
    depth : int
        Number of resolution levels.

    Returns
    -------
    int
        A valid input size; ``output_size(result, depth) >= size``.
    """
    _check_depth(depth)
    if int(size) < 1:
        raise NapariUnetError(f"The wanted output size must be at least 1 pixel, got {size}.")
    step = 2 ** (depth - 1)
    b = _min_bottom(depth)
    out0 = _bottom_to_output(b, depth)
    if size > out0:
        b += math.ceil((size - out0) / step)
    return _bottom_to_input(b, depth)


def halo(depth: int = 5) -> int:
    """Context in pixels that one side of the input adds to the output.

    ``input - output == 2 * halo(depth)`` for every valid input; 92 for depth 5.
    """
    b = _min_bottom(depth)
    return (_bottom_to_input(b, depth) - _bottom_to_output(b, depth)) // 2


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3),
        nn.ReLU(inplace=True),
    )


def _center_crop(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    dy = (x.shape[-2] - h) // 2
    dx = (x.shape[-1] - w) // 2
    return x[..., dy : dy + h, dx : dx + w]


def _skip_sizes(size: int, depth: int) -> list[int]:
    """Side of the cropped skip connection of each level (top first) for an input side."""
    s = size
    for _ in range(depth - 1):
        s = (s - 4) // 2
    s -= 4  # the bottom level's side
    out = []
    for _ in range(depth - 1):
        out.append(2 * s)  # the up-convolution's output, which the skip is cropped to
        s = 2 * s - 4
    return out[::-1]


class _PoolAndCrop(torch.autograd.Function):
    """2x2 max pooling and the centre crop of one tensor, with one gradient buffer.

    The same values as ``max_pool2d(x, 2)`` and ``_center_crop(x, h, w)``; the gradients
    too (bitwise). Autograd would give each its own full-size gradient (zeros, then the
    crop's copied in) and add the two; here the crop's gradient is added in place into the
    pooling's, which saves a full-resolution fill, copy and sum per level in training.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, h: int, w: int):
        pooled, indices = F.max_pool2d(x, 2, return_indices=True)
        dy, dx = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
        ctx.save_for_backward(x, indices)
        ctx.box = (dy, dx, h, w)
        return pooled, x[..., dy : dy + h, dx : dx + w]

    @staticmethod
    def backward(ctx, grad_pooled: torch.Tensor, grad_crop: torch.Tensor):
        x, indices = ctx.saved_tensors
        dy, dx, h, w = ctx.box
        grad = torch.ops.aten.max_pool2d_with_indices_backward(
            grad_pooled, x, [2, 2], [2, 2], [0, 0], [1, 1], False, indices
        )
        grad[..., dy : dy + h, dx : dx + w] += grad_crop
        return grad, None, None


def _fused_skips() -> bool:
    """Whether the training path (:class:`_PoolAndCrop`) may be used: gradients, no export."""
    if not torch.is_grad_enabled() or torch.jit.is_scripting() or torch.jit.is_tracing():
        return False
    return not torch.onnx.is_in_onnx_export()


class UNet(nn.Module):
    """The paper's U-Net with valid convolutions.

    Parameters
    ----------
    in_channels : int
        Number of input channels (1 for a gray-value image).
    n_classes : int
        Number of output classes K (2: background and cell).
    base_channels : int
        Features of the first level; they double at every level. The paper uses 64
        (31,030,658 parameters for 1 input channel and 2 classes). Smaller widths
        trade accuracy for speed on a CPU.
    depth : int
        Number of resolution levels (the paper's 5 means 4 poolings).
    dropout : float
        Drop-out probability applied at the end of the contracting path (after the
        last two levels' convolutions, as in the paper's published network).

    Notes
    -----
    Weights follow the paper's initialisation: a Gaussian with standard deviation
    ``sqrt(2 / N)``, N being the number of inputs of one output unit (``9 * C_in``
    for a 3x3 convolution, ``C_in`` for the 2x2 stride-2 up-convolution, whose
    output pixels each see one input pixel per channel). Biases start at 0.

    The instance carries a free-form ``metadata`` dict (normalisation, training
    provenance) that :func:`napari_unet.save_model` stores beside the weights.
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
        _check_depth(depth)
        for name, value in (
            ("in_channels", in_channels),
            ("n_classes", n_classes),
            ("base_channels", base_channels),
        ):
            if not isinstance(value, int) or value < 1:
                raise NapariUnetError(f"{name} must be a positive integer, got {value!r}.")
        if n_classes < 2:
            raise NapariUnetError(f"n_classes must be at least 2, got {n_classes}.")
        if not 0.0 <= float(dropout) < 1.0:
            raise NapariUnetError(f"dropout must be in [0, 1), got {dropout!r}.")
        self.in_channels = in_channels
        self.n_classes = n_classes
        self.base_channels = base_channels
        self.depth = depth
        self.dropout = float(dropout)
        self.metadata: dict[str, Any] = {}

        widths = [base_channels * 2**i for i in range(depth)]
        self.down = nn.ModuleList()
        cin = in_channels
        for w in widths:
            self.down.append(_conv_block(cin, w))
            cin = w
        self.pool = nn.MaxPool2d(2)
        self.drop = nn.Dropout(self.dropout)
        self.upconv = nn.ModuleList()
        self.up = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.upconv.append(nn.ConvTranspose2d(2 * w, w, 2, stride=2))
            self.up.append(_conv_block(2 * w, w))
        self.head = nn.Conv2d(widths[0], n_classes, 1)
        self.reset_parameters()

    @property
    def config(self) -> dict[str, Any]:
        """Architecture arguments that rebuild this network with :meth:`from_config`."""
        return {
            "in_channels": self.in_channels,
            "n_classes": self.n_classes,
            "base_channels": self.base_channels,
            "depth": self.depth,
            "dropout": self.dropout,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> UNet:
        """Build an (untrained) network from :attr:`config`."""
        keys = ("in_channels", "n_classes", "base_channels", "depth", "dropout")
        unknown = set(config) - set(keys)
        if unknown:
            raise NapariUnetError(f"Unknown U-Net settings: {', '.join(sorted(unknown))}.")
        return cls(**config)

    def reset_parameters(self) -> None:
        """Re-initialise all weights with the paper's He initialisation."""
        for m in self.modules():
            if isinstance(m, nn.ConvTranspose2d):
                n = m.in_channels
            elif isinstance(m, nn.Conv2d):
                n = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
            else:
                continue
            nn.init.normal_(m.weight, mean=0.0, std=math.sqrt(2.0 / n))
            nn.init.zeros_(m.bias)

    @property
    def halo(self) -> int:
        """Context pixels on each side: ``input - output == 2 * halo``."""
        return halo(self.depth)

    @property
    def pooling_factor(self) -> int:
        """Total downsampling ``2**(depth-1)``; tile offsets must be multiples of it."""
        return 2 ** (self.depth - 1)

    def output_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """Spatial output shape for a spatial input shape.

        Parameters
        ----------
        shape : sequence of int
            Input ``(h, w)``.

        Returns
        -------
        tuple of int
            Output ``(h', w')``; ``(572, 572)`` gives ``(388, 388)`` for depth 5.

        Raises
        ------
        NapariUnetError
            If pooling would see an odd size anywhere.
        """
        return tuple(output_size(s, self.depth) for s in shape)

    def input_shape(self, output_shape: Sequence[int]) -> tuple[int, ...]:
        """Smallest valid input shape whose output covers ``output_shape``.

        The inverse of :meth:`output_shape`: ``output_shape(input_shape(s)) >= s``
        elementwise, with equality when ``s`` is itself a possible output size.
        """
        return tuple(input_size_for_output(s, self.depth) for s in output_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores (logits) of shape ``(N, n_classes, h', w')``."""
        skips = []
        fused = _fused_skips()
        if fused:
            sizes = zip(*(_skip_sizes(s, self.depth) for s in x.shape[-2:]))
        for level, block in enumerate(self.down):
            x = block(x)
            if level >= self.depth - 2:
                x = self.drop(x)
            if level < self.depth - 1:
                if fused:
                    x, skip = _PoolAndCrop.apply(x, *next(sizes))
                    skips.append(skip)
                else:
                    skips.append(x)
                    x = self.pool(x)
        for upconv, block in zip(self.upconv, self.up):
            x = upconv(x)
            skip = _center_crop(skips.pop(), x.shape[-2], x.shape[-1])
            x = block(torch.cat([skip, x], dim=1))
        return self.head(x)
