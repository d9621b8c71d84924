import numpy as np
import pytest
import torch

from napari_unet import NapariUnetError, Normalization, UNet, iter_predict_tiled, predict_tiled
from napari_unet.device import available_devices
from napari_unet.tiling import TileProgress, plan_tiles


def _full_pass(model, image):
    """One forward pass over the whole mirror-padded image (the paper's reference)."""
    norm = Normalization()
    x = norm.apply(image, norm.statistics(image))
    h = model.halo
    H, W = x.shape
    ny, nx = model.input_shape((H, W))
    padded = np.pad(x, ((h, ny - H - h), (h, nx - W - h)), mode="reflect")
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(padded)[None, None])
    return torch.softmax(logits, 1)[0, :, :H, :W].numpy()


@pytest.fixture
def paper_like():
    torch.manual_seed(1)
    return UNet(base_channels=4, depth=5, dropout=0.0)


def test_tiles_agree_with_each_other_and_with_one_pass(paper_like, rng):
    image = (rng.random((203, 170)) * 4000).astype(np.uint16)
    ref = _full_pass(paper_like, image)
    for tile in [16, 40, (64, 100), 120, None, 1000]:
        for batch in (1, 3):
            prob = predict_tiled(paper_like, image, tile_shape=tile, batch_size=batch)
            assert prob.shape == (2, 203, 170)
            assert prob.dtype == np.float32
            np.testing.assert_allclose(prob, ref, atol=1e-4)


def test_misaligned_tile_would_change_the_result(paper_like, rng):
    """Why tiles must start on the pooling grid: an 8-pixel shift changes the output."""
    image = rng.random((120, 120)).astype(np.float32)
    ref = _full_pass(paper_like, image)
    norm = Normalization()
    x = norm.apply(image, norm.statistics(image))
    h = paper_like.halo
    n = paper_like.input_shape((100,))[0]
    padded = np.pad(x, h + 40, mode="reflect")[40 + 8 : 40 + 8 + n, 40 : 40 + n]
    with torch.no_grad():
        shifted = torch.softmax(paper_like(torch.from_numpy(padded)[None, None]), 1)[0].numpy()
    assert np.abs(shifted[:, :100, :100] - ref[:, 8:108, :100]).max() > 1e-3


def test_tile_plan_is_aligned_and_covers(paper_like):
    grid = plan_tiles(paper_like, (203, 170), 40)
    assert all(s % paper_like.pooling_factor == 0 for s in grid.step)
    assert grid.step == (48, 48)
    assert grid.counts == (5, 4)
    for y, x in grid.origins():
        assert y % 16 == 0 and x % 16 == 0
    assert paper_like.output_shape(grid.input_shape)[0] >= grid.step[0]


def test_small_images_and_stacks(paper_like, rng):
    assert predict_tiled(paper_like, np.ones((1, 1))).shape == (2, 1, 1)
    assert predict_tiled(paper_like, rng.random((5, 7))).shape == (2, 5, 7)
    stack = rng.random((3, 40, 30)).astype(np.float32)
    prob = predict_tiled(paper_like, stack, tile_shape=16)
    assert prob.shape == (2, 3, 40, 30)
    # planes are independent predictions with one normalisation for the stack
    norm = Normalization()
    stats = norm.statistics(stack)
    plane = predict_tiled(paper_like, norm.apply(stack[1], stats), normalization=False)
    np.testing.assert_allclose(prob[:, 1], plane, atol=1e-5)


def test_multichannel_model(rng):
    torch.manual_seed(0)
    m = UNet(in_channels=2, n_classes=3, base_channels=4, depth=3, dropout=0.0)
    img = rng.random((2, 50, 41)).astype(np.float32)
    a = predict_tiled(m, img, tile_shape=8)
    b = predict_tiled(m, img)
    assert a.shape == (3, 50, 41)
    np.testing.assert_allclose(a, b, atol=1e-4)
    np.testing.assert_allclose(a.sum(0), 1.0, atol=1e-5)
    with pytest.raises(NapariUnetError, match="2 channels first"):
        predict_tiled(m, img[0])


def test_progress_and_cancel(tiny_model, rng):
    image = rng.random((64, 64)).astype(np.float32)
    calls = []
    predict_tiled(tiny_model, image, tile_shape=16, progress=lambda d, t: calls.append((d, t)))
    assert calls[0] == (0, 16) and calls[-1] == (16, 16) and len(calls) == 17
    gen = iter_predict_tiled(tiny_model, image, tile_shape=16)
    assert next(gen) == TileProgress(0, 16)
    assert next(gen) == TileProgress(1, 16)
    assert torch.is_grad_enabled() and tiny_model.training  # nothing leaks across a yield
    gen.close()  # cancel between tiles
    with pytest.raises(StopIteration):
        next(gen)
    assert tiny_model.training  # the caller's mode is restored


def test_bad_input(tiny_model):
    with pytest.raises(NapariUnetError, match="NaN"):
        predict_tiled(tiny_model, np.full((20, 20), np.nan))
    with pytest.raises(NapariUnetError, match="shape"):
        predict_tiled(tiny_model, np.zeros((2, 3, 20, 20)))
    with pytest.raises(NapariUnetError, match="not a device name"):
        predict_tiled(tiny_model, np.zeros((20, 20)), device="gpu please")
    missing = [d for d in ("cuda", "mps") if d not in available_devices()]
    if missing:
        with pytest.raises(NapariUnetError, match="not available"):
            predict_tiled(tiny_model, np.zeros((20, 20)), device=missing[0])
    with pytest.raises(NapariUnetError):
        predict_tiled(tiny_model, np.zeros((20, 20)), tile_shape=0)


def test_constant_and_integer_images(tiny_model):
    for img in (np.zeros((30, 30), np.uint8), np.ones((30, 30), bool), np.full((30, 30), 7.0)):
        prob = predict_tiled(tiny_model, img)
        assert np.isfinite(prob).all()


def test_out_of_memory_falls_back_to_smaller_tiles(paper_like, rng, monkeypatch):
    """A GPU allocation failure retries the plane with smaller batches, then smaller tiles."""
    image = rng.random((2, 150, 400)).astype(np.float32)
    expected = predict_tiled(paper_like, image)  # one tile per plane
    real_forward = type(paper_like).forward
    seen = []

    def forward(self, x):
        seen.append(tuple(x.shape))
        if x.shape[0] > 1 or x.shape[-1] > 300:  # pretend only small single tiles fit
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_forward(self, x)

    monkeypatch.setattr(type(paper_like), "forward", forward)
    events = []
    prob = predict_tiled(
        paper_like, image, tile_shape=160, batch_size=4, progress=lambda d, t: events.append((d, t))
    )
    np.testing.assert_allclose(prob, expected, atol=1e-4)
    # 3 tiles of 348 px in one batch, then one at a time, then 268-pixel tiles
    assert seen[0] == (3, 1, 348, 348) and seen[1] == (1, 1, 348, 348)
    assert seen[-1] == (1, 1, 268, 268)
    assert events[-1][0] == events[-1][1]  # the progress total follows the new tiling

    def always(self, x):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(type(paper_like), "forward", always)
    with pytest.raises(NapariUnetError, match="Out of memory even with the smallest tiles"):
        predict_tiled(paper_like, image[0])
