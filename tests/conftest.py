import numpy as np
import pytest
import torch


@pytest.fixture
def tiny_model():
    """A small, fast network with the paper's architecture rules (valid convs, depth 3)."""
    torch.manual_seed(0)
    from napari_unet import UNet

    return UNet(base_channels=4, depth=3, dropout=0.0)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
