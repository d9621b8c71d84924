"""The efficiency benchmark's FLOP count, against a closed form of the U-Net's layer sizes."""

import sys
from pathlib import Path

import pytest

from napari_unet import UNet

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import bench_training as bench  # noqa: E402


def _closed_form_macs(size: int, width: int, depth: int, cin: int = 1, k: int = 2) -> list[int]:
    """Multiply-adds of every convolution, top level first, from the size arithmetic alone."""
    macs, s, c = [], size, cin
    for level in range(depth):
        w = width * 2**level
        macs += [(s - 2) ** 2 * c * w * 9, (s - 4) ** 2 * w * w * 9]
        s, c = s - 4, w
        if level < depth - 1:
            s //= 2
    for level in reversed(range(depth - 1)):
        w = width * 2**level
        macs.append(s * s * c * w * 4)  # 2x2 stride-2 up-convolution: 4 outputs per input
        s *= 2
        macs += [(s - 2) ** 2 * 2 * w * w * 9, (s - 4) ** 2 * w * w * 9]
        s, c = s - 4, w
    macs.append(s * s * c * k)  # 1x1 head
    return macs


@pytest.mark.parametrize("size, width, depth", [(380, 16, 5), (92, 4, 3), (188, 2, 4)])
def test_step_flops_match_the_closed_form(size, width, depth):
    model = UNet(base_channels=width, depth=depth)
    total, layers = bench.step_flops(model, size)
    macs = _closed_form_macs(size, width, depth)
    forward = [layer["macs"] for layer in layers]
    assert sorted(forward) == sorted(macs)  # hooks fire in execution order, not this one
    # forward 2, weight grad 2, input grad 2 except the first layer (no input gradient)
    assert total == pytest.approx(6 * sum(macs) - 2 * macs[0], rel=1e-12)
    if (size, width, depth) == (380, 16, 5):
        assert total / 1e9 == pytest.approx(19.26, abs=0.01)
