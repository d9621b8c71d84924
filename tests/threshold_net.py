"""A U-Net whose right answer is known: a per-pixel threshold of the normalised image."""

from napari_unet import UNet


def threshold_unet(gain: float = 20.0, level: float = 0.5) -> UNet:
    """A U-Net whose foreground probability is sigmoid(gain * (normalised pixel - level)).

    Every convolution passes its centre pixel through (channel 0) and the head turns it into
    a logit, so the network is an exact, fast stand-in for a trained model in tests.
    """
    import torch

    net = UNet(base_channels=2, depth=2, dropout=0.0)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        for block in (net.down[0], net.up[0]):
            for conv in (block[0], block[2]):
                conv.weight[0, 0, 1, 1] = 1.0
        net.head.weight[1, 0, 0, 0] = gain
        net.head.bias[1] = -gain * level
    return net.eval()
