"""Test-time augmentation: the 8 symmetries, exact under tiling, invariant, counted honestly."""

import numpy as np
import pytest
import torch

from napari_unet import NapariUnetError, Normalization, UNet, iter_predict_tiled, predict_tiled
from napari_unet.model import input_size_for_output, output_size
from napari_unet.padding import mirror_pad
from napari_unet.tiling import TileProgress, plan_tiles, resolve_normalization
from napari_unet.tta import SYMMETRIES, passes

# The 8 symmetries of an array's last two axes, written with numpy alone: the reference.
NUMPY_SYMMETRIES = [
    (lambda a, k=k, m=m: np.rot90(a[..., ::-1] if m else a, k, axes=(-2, -1)))
    for m in (False, True)
    for k in range(4)
]


@pytest.fixture
def paper_like():
    """Depth 5 as in the paper (halo 92, pooling factor 16), narrow enough to be fast."""
    torch.manual_seed(1)
    return UNet(base_channels=4, depth=5, dropout=0.0)


def _normalised(model, image):
    norm = resolve_normalization(model, None)
    return norm.apply(image, norm.statistics(image)).astype(np.float32)


def _symmetric_size(model, k):
    """A side length whose tile grid mirrors onto itself: the remainder of the output size."""
    phase = output_size(input_size_for_output(1, model.depth), model.depth)
    return k * model.pooling_factor + phase % model.pooling_factor


def test_the_eight_symmetries_and_their_inverses(rng):
    x = torch.from_numpy(rng.random((2, 3, 5, 7)).astype(np.float32))
    seen = set()
    for sym, reference in zip(SYMMETRIES, NUMPY_SYMMETRIES):
        y = sym.apply(x)
        np.testing.assert_array_equal(y.numpy(), reference(x.numpy()))
        assert torch.equal(sym.invert(y), x)
        seen.add(y.numpy().tobytes())
    assert len(seen) == 8  # all different: the whole group, each once
    assert SYMMETRIES[0].name == "identity" and SYMMETRIES[5].name == "mirror, rot 90"
    assert passes(True) == 8 and passes(False) == 1


def test_tta_does_not_depend_on_tiles_or_batches(paper_like, rng):
    image = (rng.random((100, 70)) * 4000).astype(np.uint16)
    ref = predict_tiled(paper_like, image, tta=True)  # one tile
    plain = predict_tiled(paper_like, image)
    assert np.abs(ref - plain).max() > 1e-2  # the augmentation changes something
    # non-square tiles (their quarter turns change shape), several tiles along both axes
    for tile, batch in (((32, 48), 3), (48, 1)):
        assert min(plan_tiles(paper_like, image.shape, tile).counts) > 1
        prob = predict_tiled(paper_like, image, tile_shape=tile, batch_size=batch, tta=True)
        assert prob.shape == (2, 100, 70) and prob.dtype == np.float32
        np.testing.assert_allclose(prob, ref, atol=1e-5)


def test_tta_equals_the_mean_over_symmetries_computed_by_hand(paper_like, rng):
    """One tile: mean of T^-1(softmax(net(T(padded)))) over the 8 T, with numpy and the net."""
    image = (rng.random((60, 37)) * 4000).astype(np.uint16)
    x = _normalised(paper_like, image)
    H, W = x.shape
    h = paper_like.halo
    ny, nx = paper_like.input_shape((H, W))
    padded = np.pad(x, ((h, ny - H - h), (h, nx - W - h)), mode="reflect")
    paper_like.eval()
    total = np.zeros((2, *paper_like.output_shape((ny, nx))), np.float64)
    for k, m in ((k, m) for m in (False, True) for k in range(4)):
        t = np.rot90(padded[:, ::-1] if m else padded, k)
        with torch.no_grad():
            logits = paper_like(torch.from_numpy(t.copy())[None, None])
        p = torch.softmax(logits, 1)[0].numpy()
        back = np.rot90(p, -k, axes=(1, 2))
        total += back[:, :, ::-1] if m else back
    expected = (total / 8)[:, :H, :W]
    got = predict_tiled(paper_like, image, tta=True)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_without_tta_the_result_is_bit_identical_to_plain_tiles(paper_like, rng):
    """tta=False is the plain forward of every tile, stitched, to the last bit."""
    image = (rng.random((90, 50)) * 4000).astype(np.uint16)
    for tile, batch in ((32, 2), (None, 1)):
        got = predict_tiled(paper_like, image, tile_shape=tile, batch_size=batch)
        grid = plan_tiles(paper_like, image.shape, tile or 512)
        padded = mirror_pad(_normalised(paper_like, image)[None], ((0, 0), *grid.pad_widths()))
        ny, nx = grid.input_shape
        expected = np.empty_like(got)
        origins = list(grid.origins())
        paper_like.eval()
        for s in range(0, len(origins), batch):
            part = origins[s : s + batch]
            x = np.stack([padded[:, y : y + ny, x0 : x0 + nx] for y, x0 in part])
            x = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                prob = torch.softmax(paper_like(x).float(), dim=1).numpy()
            for p, (y, x0) in zip(prob, part):
                h, w = min(grid.step[0], 90 - y), min(grid.step[1], 50 - x0)
                expected[:, y : y + h, x0 : x0 + w] = p[:, :h, :w]
        np.testing.assert_array_equal(got, expected)


def test_tta_output_is_invariant_under_the_symmetries(tiny_model, rng):
    """A network that sees orientation differently gives one answer for all 8 views with TTA.

    Invariance needs a tile grid that the symmetry maps onto itself: each side's length
    must leave the remainder of the network's output size modulo the pooling factor.
    """
    H, W = _symmetric_size(tiny_model, 9), _symmetric_size(tiny_model, 13)
    image = rng.random((H, W)).astype(np.float32)
    plain = predict_tiled(tiny_model, image)
    averaged = predict_tiled(tiny_model, image, tta=True)
    assert np.abs(averaged - plain).max() > 1e-3
    worst_plain = 0.0
    for i, t in enumerate(NUMPY_SYMMETRIES[1:]):
        turned = np.ascontiguousarray(t(image))
        p = predict_tiled(tiny_model, turned)
        worst_plain = max(worst_plain, np.abs(p - t(plain)).max())
        tiles = {"tile_shape": (16, 24), "batch_size": 4} if i == 0 else {}  # and tiled
        q = predict_tiled(tiny_model, turned, tta=True, **tiles)
        np.testing.assert_allclose(q, t(averaged), atol=1e-5)
    assert worst_plain > 1e-2  # the network itself depends on orientation
    # an off-grid height: a mirror in y shifts the pooling grid, so only approximately
    odd = rng.random((H + 2, W)).astype(np.float32)
    a = predict_tiled(tiny_model, odd, tta=True)
    b = predict_tiled(tiny_model, np.ascontiguousarray(odd[::-1]), tta=True)
    assert np.abs(b - a[:, ::-1]).max() > 1e-4


def test_progress_counts_every_pass_and_cancel_stops_within_a_batch(tiny_model, rng):
    image = rng.random((64, 64)).astype(np.float32)
    calls = []
    predict_tiled(
        tiny_model, image, tile_shape=16, tta=True, progress=lambda d, t: calls.append((d, t))
    )
    assert calls[0] == (0, 128) and calls[-1] == (128, 128) and len(calls) == 129
    gen = iter_predict_tiled(tiny_model, image, tile_shape=32, batch_size=4, tta=True)
    assert next(gen) == TileProgress(0, 32)
    assert next(gen) == TileProgress(4, 32)  # one forward pass of the batch's 4 tiles
    assert torch.is_grad_enabled() and tiny_model.training  # nothing leaks across a yield
    gen.close()
    with pytest.raises(StopIteration):
        next(gen)


def test_stacks_and_channels_pass_tta_through(rng):
    torch.manual_seed(0)
    m = UNet(in_channels=2, n_classes=3, base_channels=4, depth=3, dropout=0.0)
    stack = rng.random((2, 3, 30, 26)).astype(np.float32)  # (C, Z, H, W)
    prob = predict_tiled(m, stack, tta=True, tile_shape=16)
    assert prob.shape == (3, 3, 30, 26)
    np.testing.assert_allclose(prob.sum(0), 1.0, atol=1e-5)
    norm = Normalization()
    stats = norm.statistics(stack, channel_axis=0)
    plane = norm.apply(stack[:, 1], stats, channel_axis=0)
    one = predict_tiled(m, plane, normalization=False, tta=True)
    np.testing.assert_allclose(prob[:, 1], one, atol=1e-5)


@pytest.mark.parametrize("bad", ["yes", 1, None, 0.5])
def test_tta_must_be_true_or_false(tiny_model, bad):
    from napari_unet.segment import segment

    image = np.zeros((20, 20), np.float32)
    for call in (predict_tiled, segment):
        with pytest.raises(NapariUnetError, match="tta must be True or False"):
            call(tiny_model, image, tta=bad)


def _volume(rng, shape=(5, 16, 12)):
    from scipy import ndimage as ndi

    return ndi.gaussian_filter(rng.random(shape), 1.5).astype(np.float32)


def test_segment_2d_and_3d_modes_pass_tta_through(tiny_model, rng):
    from napari_unet.segment import iter_segment, segment

    image = _volume(rng, (40, 52))  # smoothed: white noise is "nothing to segment"
    seg = segment(tiny_model, image, tta=True, min_size=0)
    np.testing.assert_array_equal(seg.probabilities, predict_tiled(tiny_model, image, tta=True))
    vol = _volume(rng)
    linked = segment(tiny_model, vol, stack="linked", tta=True)
    np.testing.assert_array_equal(linked.probabilities, predict_tiled(tiny_model, vol, tta=True))
    events = []
    views = segment(
        tiny_model, vol, stack="views", tta=True, progress=lambda d, t: events.append((d, t))
    )
    # the plan, before any work (rescale=1.0: no size estimate before it)
    plain = next(iter_segment(tiny_model, vol, stack="views", rescale=1.0))
    assert events[0] == (0, 8 * plain.total) and events[-1] == (8 * plain.total,) * 2
    # the views' planes are tiled exactly too: other tiles, same numbers
    other = segment(tiny_model, vol, stack="views", tta=True, tile_shape=8, batch_size=3)
    np.testing.assert_allclose(other.probabilities, views.probabilities, atol=1e-5)


def test_zarr_chunks_and_slabs_with_tta_equal_in_memory(tiny_model, rng, tmp_path):
    from napari_unet.bigimage import predict_to_zarr
    from napari_unet.segment import segment

    image = rng.random((70, 90)).astype(np.float32)
    ref = predict_tiled(tiny_model, image, tta=True)
    out = predict_to_zarr(
        tiny_model, image, tmp_path / "a.zarr", chunk=32, probabilities=True, tta=True
    )
    np.testing.assert_allclose(out.probabilities.compute(), ref, atol=1e-5)
    assert out.metadata["tta"] is True
    assert np.abs(ref - predict_tiled(tiny_model, image)).max() > 1e-3
    vol = _volume(rng)
    mem = segment(tiny_model, vol, stack="views", tta=True, min_size=0)
    slabs = predict_to_zarr(
        tiny_model, vol, tmp_path / "v.zarr", stack="views", z_chunk=4, tta=True,
        probabilities=True, min_size=0,
    )  # fmt: skip
    np.testing.assert_allclose(np.asarray(slabs.probabilities), mem.probabilities, atol=1e-5)
    assert slabs.metadata["tta"] is True
    with pytest.raises(NapariUnetError, match="tta must be True or False"):
        predict_to_zarr(tiny_model, image, tmp_path / "b.zarr", tta="on")
    assert not (tmp_path / "b.zarr").exists()


def test_cli_tta_for_one_image_and_a_batch(tiny_model, rng, tmp_path, capsys):
    import tifffile

    from napari_unet import save_model
    from napari_unet.cli import main
    from napari_unet.postprocess import foreground_probability
    from napari_unet.segment import segment

    image = (_volume(rng, (40, 52)) * 3000).astype(np.uint16)  # smoothed: not noise only
    tifffile.imwrite(tmp_path / "a.tif", image)
    tifffile.imwrite(tmp_path / "b.tif", image[::-1])
    save_model(tiny_model, tmp_path / "m.safetensors")
    model = ["--model", str(tmp_path / "m.safetensors")]
    for flag, name in (([], "plain"), (["--tta"], "tta")):
        args = ["predict", str(tmp_path / "a.tif"), "-o", str(tmp_path / f"{name}.tif")]
        args += ["--probabilities", str(tmp_path / f"{name}_p.tif")]
        assert main(args + model + flag) == 0
    expected = segment(tiny_model, image, tta=True)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "tta.tif"), expected.labels)
    p_tta = tifffile.imread(tmp_path / "tta_p.tif")
    np.testing.assert_array_equal(p_tta, foreground_probability(expected.probabilities))
    assert np.abs(p_tta - tifffile.imread(tmp_path / "plain_p.tif")).max() > 1e-3
    # a batch of two files
    out = tmp_path / "out"
    args = ["predict", str(tmp_path / "a.tif"), str(tmp_path / "b.tif"), "-o", str(out)]
    assert main(args + model + ["--tta"]) == 0
    np.testing.assert_array_equal(tifffile.imread(out / "a_labels.tif"), expected.labels)
    b = segment(tiny_model, image[::-1].copy(), tta=True).labels
    np.testing.assert_array_equal(tifffile.imread(out / "b_labels.tif"), b)
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    assert "8x the time" in capsys.readouterr().out


def test_benchmark_scores_agree_with_instance_scores():
    """bench_tta's pooled AP@0.5 and mean IoU are instance_scores' for one image."""
    import sys
    from pathlib import Path

    from napari_unet import instance_scores
    from napari_unet.synthetic import make_cells

    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    import bench_tta

    truth = make_cells((96, 96), diameter=(10, 18), seed=4)[1]
    pred = np.roll(truth, 3, axis=1)  # shifted: some matches fall below 0.75, some below 0.5
    pred[:20] = 0
    s = bench_tta.pooled([bench_tta.match(truth, pred)])
    ref = instance_scores(truth, pred)
    assert s[0.5] == pytest.approx(ref.ap50) and s["miou"] == pytest.approx(ref.mean_iou)
    assert s[0.75] < s[0.5] < 1.0 and (s["nt"], s["np"]) == (ref.n_true, ref.n_pred)
    assert s["area"] == pytest.approx(1.0, abs=0.2)
