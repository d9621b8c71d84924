import math

import pytest
import torch
from torch import nn

from napari_unet import NapariUnetError, UNet
from napari_unet.model import halo, input_size_for_output, output_size


def test_paper_architecture_numbers():
    m = UNet()
    assert sum(p.numel() for p in m.parameters()) == 31_030_658
    convs = [x for x in m.modules() if type(x) is nn.Conv2d]
    ups = [x for x in m.modules() if isinstance(x, nn.ConvTranspose2d)]
    assert sum(c.kernel_size == (3, 3) for c in convs) == 18
    assert sum(c.kernel_size == (1, 1) for c in convs) == 1
    assert len(ups) == 4
    assert len(convs) + len(ups) == 23
    widths = [blk[0].out_channels for blk in m.down]
    assert widths == [64, 128, 256, 512, 1024]
    assert all(c.padding == (0, 0) for c in convs)
    assert m.output_shape((572, 572)) == (388, 388)


def test_forward_shape_matches_arithmetic():
    m = UNet(base_channels=2, dropout=0.0)
    with torch.no_grad():
        y = m(torch.zeros(1, 1, 572, 188))
    assert tuple(y.shape) == (1, 2, 388, 4)


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5, 6])
def test_input_shape_is_inverse_of_output_shape(depth):
    for wanted in [1, 2, 3, 7, 16, 17, 100, 388, 389]:
        n = input_size_for_output(wanted, depth)
        out = output_size(n, depth)
        assert out >= wanted
        # smallest: the next smaller valid input would not cover `wanted`
        smaller = [k for k in range(1, n) if _valid(k, depth)]
        assert not smaller or output_size(smaller[-1], depth) < wanted
        assert n - out == 2 * halo(depth)


def _valid(n, depth):
    try:
        output_size(n, depth)
        return True
    except NapariUnetError:
        return False


def test_invalid_sizes_give_clear_errors():
    with pytest.raises(NapariUnetError, match="nearest valid sizes are 572 and 588"):
        output_size(573)
    with pytest.raises(NapariUnetError, match="smallest valid size is 188"):
        output_size(100)
    with pytest.raises(NapariUnetError):
        UNet().output_shape((572, 573))
    with pytest.raises(NapariUnetError):
        UNet(base_channels=0)
    with pytest.raises(NapariUnetError):
        UNet(n_classes=1)


def test_he_initialisation():
    torch.manual_seed(0)
    m = UNet(base_channels=16)
    conv = m.down[2][0]  # 3x3 conv, 32 inputs
    n = 9 * conv.in_channels
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / n), rel=0.05)
    up = m.upconv[0]
    assert up.weight.std().item() == pytest.approx(math.sqrt(2 / up.in_channels), rel=0.05)
    assert all(
        float(mod.bias.detach().abs().max()) == 0 for mod in m.modules() if hasattr(mod, "bias")
    )


def test_dropout_only_in_training_mode():
    torch.manual_seed(0)
    m = UNet(base_channels=4, depth=3, dropout=0.5)
    x = torch.rand(1, 1, 76, 76)
    m.eval()
    with torch.no_grad():
        a, b = m(x), m(x)
    assert torch.equal(a, b)
    m.train()
    with torch.no_grad():
        c = m(x)
    assert not torch.equal(a, c)


def test_config_round_trip():
    m = UNet(in_channels=3, n_classes=3, base_channels=8, depth=4, dropout=0.1)
    m2 = UNet.from_config(m.config)
    assert m2.config == m.config
    with pytest.raises(NapariUnetError, match="Unknown"):
        UNet.from_config({**m.config, "bogus": 1})


@pytest.mark.parametrize("depth, shape", [(3, (68, 76)), (4, (124, 140))])
def test_training_path_is_bitwise_the_plain_path(monkeypatch, depth, shape):
    """Pooling and crop with one gradient buffer (training) == max_pool2d + crop + autograd."""
    from napari_unet import model as model_module

    results = []
    for fused in (False, True):
        torch.manual_seed(0)
        m = UNet(base_channels=4, depth=depth).to(memory_format=torch.channels_last)
        x = torch.randn(1, 1, *shape).contiguous(memory_format=torch.channels_last)
        if not fused:
            monkeypatch.setattr(model_module, "_fused_skips", lambda: False)
        else:
            monkeypatch.undo()
            assert model_module._fused_skips()
        y = m(x)
        y.square().sum().backward()
        results.append((y.detach(), [p.grad for p in m.parameters()]))
    (y0, g0), (y1, g1) = results
    assert torch.equal(y0, y1)
    assert all(torch.equal(a, b) for a, b in zip(g0, g1))
    with torch.no_grad():  # prediction keeps the plain path
        assert not model_module._fused_skips()
