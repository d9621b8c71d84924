import pickle
import time

import dask.array as da
import numpy as np
import pytest
import torch
import zarr

from napari_unet import NapariUnetError, Normalization, UNet, bigimage, labels_from_probabilities
from napari_unet.bigimage import (
    iter_predict_to_zarr,
    open_image_lazily,
    open_prediction,
    predict_to_zarr,
)
from napari_unet.padding import mirror_indices, mirror_pad
from napari_unet.synthetic import make_cells
from napari_unet.tiling import predict_tiled


@pytest.fixture
def model():
    torch.manual_seed(1)
    return UNet(base_channels=4, depth=3, dropout=0.0)


@pytest.fixture
def mask_net():
    """A depth-1 U-Net whose foreground probability is its binary input: labels become
    a pure function of the image, so label merging can be tested through the public API."""
    net = UNet(in_channels=1, n_classes=2, base_channels=1, depth=1, dropout=0.0)
    with torch.no_grad():
        for conv in net.down[0][::2]:  # two 3x3 convs passing the centre pixel through
            conv.weight.zero_()
            conv.weight[0, 0, 1, 1] = 1.0
            conv.bias.zero_()
        net.head.weight[:, 0, 0, 0] = torch.tensor([-20.0, 20.0])
        net.head.bias[:] = torch.tensor([10.0, -10.0])
    return net.eval()


@pytest.fixture
def cells_mask():
    """Touching cells, many cut by chunk faces, joined by thin bridges."""
    _, labels = make_cells((200, 230), n_cells=100, seed=3, diameter=(12, 26), touching=0.6)
    return (labels > 0).astype(np.float32)


def _same_partition(a, b):
    if not np.array_equal(a > 0, b > 0):
        return False
    pairs = np.unique(np.stack([a[a > 0], b[a > 0]]), axis=1)
    return len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_border_mirroring_matches_the_in_memory_padding(n):
    a = np.arange(n * 5).reshape(n, 5)
    for before, after in [(0, 0), (2, 1), (n + 4, 3 * n + 9)]:
        ref = mirror_pad(a, ((before, after), (0, 0)))
        got = a[mirror_indices(-before, n + after, n)]
        np.testing.assert_array_equal(got, ref)


def test_probabilities_and_labels_equal_in_memory_prediction(model, tmp_path):
    image = (np.random.default_rng(0).random((150, 170)) * 4000).astype(np.uint16)
    ref = predict_tiled(model, image, tile_shape=32)
    result = predict_to_zarr(
        model,
        da.from_array(image, chunks=50),  # source chunks unrelated to the output's
        tmp_path / "out.zarr",
        chunk=64,
        tile_shape=32,
        probabilities=True,
        method="components",
        min_size=3,
    )
    # same tiles, same numbers: not merely close
    np.testing.assert_array_equal(result.probabilities.compute(), ref)
    expected = labels_from_probabilities(ref, method="components", min_size=3)
    labels = result.labels[0].compute()
    np.testing.assert_array_equal(labels, expected)  # ids included
    assert result.n_objects == expected.max() > 20
    stats = result.metadata["normalization"]["statistics"]
    np.testing.assert_allclose(stats, Normalization().statistics(image))
    assert result.metadata["complete"] is True
    root = zarr.open_group(tmp_path / "out.zarr")
    assert sorted(root.keys()) == ["0", "labels"]  # the probabilities are the image
    assert sorted(root["labels/segmentation"].keys()) == ["0"]  # work arrays are gone


def test_any_chunk_and_tile_agree_to_rounding(model, tmp_path):
    image = np.random.default_rng(1).random((97, 130)).astype(np.float32)
    ref = predict_tiled(model, image)
    for i, (chunk, tile) in enumerate([(48, None), (32, 24), (200, None)]):
        r = predict_to_zarr(
            model, image, tmp_path / f"{i}.zarr", chunk=chunk, tile_shape=tile, probabilities=True
        )
        np.testing.assert_allclose(r.probabilities.compute(), ref, atol=1e-5)


def test_stacks_and_channels(model, tmp_path):
    rng = np.random.default_rng(2)
    stack = (rng.random((3, 40, 50)) * 255).astype(np.uint8)
    ref = predict_tiled(model, stack, tile_shape=16)
    r = predict_to_zarr(
        model, stack, tmp_path / "s.zarr", chunk=16, tile_shape=16, probabilities=True,
        method="components", min_size=2,
    )  # fmt: skip
    np.testing.assert_array_equal(r.probabilities.compute(), ref)
    expected = labels_from_probabilities(ref, method="components", min_size=2)
    np.testing.assert_array_equal(r.labels[0].compute(), expected)  # ids unique over the stack

    torch.manual_seed(0)
    two = UNet(in_channels=2, n_classes=3, base_channels=4, depth=3, dropout=0.0)
    image = rng.random((2, 40, 50)).astype(np.float32)
    ref = predict_tiled(two, image, tile_shape=16)
    r = predict_to_zarr(
        two, image, tmp_path / "c.zarr", chunk=32, tile_shape=16, probabilities=True
    )
    np.testing.assert_array_equal(r.probabilities.compute(), ref)


def test_watershed_cells_cut_by_chunks_get_one_id(mask_net, cells_mask, tmp_path):
    prob = predict_tiled(mask_net, cells_mask, normalization=False)
    expected = labels_from_probabilities(prob, min_size=16)  # watershed by default
    r = predict_to_zarr(
        mask_net, cells_mask, tmp_path / "w.zarr", chunk=64, normalization=False, label_margin=32
    )
    labels = r.labels[0].compute()
    # chunk faces at 64, 128 and 192 cut many cells; each still has one id
    cut = set()
    for f in (64, 128, 192):
        for a, b in ((expected[f - 1], expected[f]), (expected[:, f - 1], expected[:, f])):
            cut |= set(a[(a == b) & (a > 0)].tolist())
    assert len(cut) > 20
    for obj in cut:
        assert len(np.unique(labels[expected == obj])) == 1
    assert _same_partition(labels, expected)
    assert r.n_objects == expected.max()
    # without a margin each chunk splits blindly and touching cells merge across faces
    r0 = predict_to_zarr(
        mask_net, cells_mask, tmp_path / "w0.zarr", chunk=64, normalization=False, label_margin=0
    )
    assert not _same_partition(r0.labels[0].compute(), expected)


def test_min_size_applies_to_whole_objects(mask_net, tmp_path):
    image = np.zeros((64, 64), np.float32)
    image[10:14, 30:34] = 1  # 16 pixels, split 8/8 by the chunk face at x=32
    image[40:42, 40:42] = 1  # 4 pixels
    r = predict_to_zarr(
        mask_net, image, tmp_path / "m.zarr", chunk=32, normalization=False,
        method="components", min_size=10,
    )  # fmt: skip
    labels = r.labels[0].compute()
    assert r.n_objects == 1
    assert (labels == 1).sum() == 16


def test_display_levels(mask_net, cells_mask, tmp_path, monkeypatch):
    monkeypatch.setattr(bigimage.levels, "_PYRAMID_STOP", 64)
    r = predict_to_zarr(mask_net, cells_mask, tmp_path / "p.zarr", chunk=64, normalization=False)
    assert len(r.labels) == 2
    full = r.labels[0].compute()
    np.testing.assert_array_equal(r.labels[1].compute(), full[::2, ::2])
    ome = zarr.open_group(tmp_path / "p.zarr")["labels/segmentation"].attrs["ome"]
    assert [d["path"] for d in ome["multiscales"][0]["datasets"]] == ["0", "1"]


def test_progress_and_cancel(model, tmp_path):
    image = np.random.default_rng(3).random((64, 96)).astype(np.float32)
    gen = iter_predict_to_zarr(model, image, tmp_path / "a.zarr", chunk=32)
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration:
            break
    n = 6  # chunks
    done = [e.done for e in events]
    assert done[0] == 0 and done[-1] == 3 * n + 1 and done == sorted(done)
    assert {e.total for e in events} == {3 * n + 1}
    phases = [e.phase for e in events]
    assert sorted(set(phases), key=phases.index) == [
        "statistics", "predict", "label", "relabel", "done"
    ]  # fmt: skip
    assert phases.count("predict") == n + 1  # as it starts, then per chunk

    gen = iter_predict_to_zarr(model, image, tmp_path / "b.zarr", chunk=32)
    while next(gen).phase != "predict":
        pass
    gen.close()  # the GUI's Stop
    with pytest.raises(NapariUnetError, match="incomplete"):
        open_prediction(tmp_path / "b.zarr")


def test_failed_run_is_detectable_and_rerun_is_identical(model, tmp_path, monkeypatch):
    image = np.random.default_rng(4).random((64, 64)).astype(np.float32)
    clean = predict_to_zarr(model, image, tmp_path / "clean.zarr", chunk=32, probabilities=True)
    real = bigimage.tasks.predict_chunk

    def crash_after_garbage(*args):
        chunk, layout, target = args[5], args[6], args[-1]
        region = bigimage.chunks.chunk_region(chunk, layout, lead=True)
        target[region] = 7.0  # a half-written chunk
        raise OSError("worker lost")

    monkeypatch.setattr(bigimage.tasks, "predict_chunk", crash_after_garbage)
    with pytest.raises(OSError, match="worker lost"):
        predict_to_zarr(model, image, tmp_path / "out.zarr", chunk=32, probabilities=True)
    with pytest.raises(NapariUnetError, match="incomplete"):
        open_prediction(tmp_path / "out.zarr")
    monkeypatch.setattr(bigimage.tasks, "predict_chunk", real)
    again = predict_to_zarr(
        model, image, tmp_path / "out.zarr", chunk=32, probabilities=True, overwrite=True
    )
    np.testing.assert_array_equal(again.probabilities.compute(), clean.probabilities.compute())
    np.testing.assert_array_equal(again.labels[0].compute(), clean.labels[0].compute())


def test_local_cluster_retries_a_failed_task(model, tmp_path, monkeypatch):
    import distributed

    image = np.random.default_rng(5).random((64, 80)).astype(np.float32)
    clean = predict_to_zarr(model, image, tmp_path / "clean.zarr", chunk=32, probabilities=True)
    real = bigimage.tasks.predict_chunk
    marker = tmp_path / "failed-once"  # a file: the task may run in a copy of this closure

    def fail_once(*args):
        chunk, layout, target = args[5], args[6], args[-1]
        if chunk.index == 2 and not marker.exists():
            marker.write_text("2")
            region = bigimage.chunks.chunk_region(chunk, layout, lead=True)
            target[region] = 7.0  # killed mid-write
            raise OSError("worker lost")
        return real(*args)

    monkeypatch.setattr(bigimage.tasks, "predict_chunk", fail_once)
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    ) as cluster, distributed.Client(cluster) as client:  # fmt: skip
        r = predict_to_zarr(
            model, image, tmp_path / "out.zarr", chunk=32, probabilities=True,
            scheduler=client, retries=1,
        )  # fmt: skip
    assert marker.read_text() == "2"
    np.testing.assert_array_equal(r.probabilities.compute(), clean.probabilities.compute())
    np.testing.assert_array_equal(r.labels[0].compute(), clean.labels[0].compute())


def test_cluster_workers_receive_the_model_once(model, tmp_path, monkeypatch):
    import dask
    import distributed

    from napari_unet.bigimage import runners

    def _count_model_arrivals():
        """On a worker: count the models it unpickles (receive_model is looked up by name)."""
        from napari_unet.bigimage import worker

        real = worker.receive_model
        worker.arrivals = 0

        def counting(*payload):
            worker.arrivals += 1
            return real(*payload)

        worker.receive_model = counting

    def _models_kept(dask_worker):
        return [name for name in dask_worker.plugins if name.startswith("napari-unet")]

    # A loaded machine is slow between sharing the model and submitting the chunks:
    # the scheduler's memory manager then dropped a broadcast copy no task waited
    # for yet, and the worker fetched the model a second time (CI, 2026-12-07).
    share = runners.DistributedRunner.share

    def slow_share(self, obj):
        shared = share(self, obj)
        time.sleep(0.5)
        return shared

    monkeypatch.setattr(runners.DistributedRunner, "share", slow_share)
    image = np.random.default_rng(6).random((96, 96)).astype(np.float32)
    clean = predict_to_zarr(model, image, tmp_path / "clean.zarr", chunk=16, probabilities=True)
    with (
        dask.config.set({"distributed.scheduler.active-memory-manager.interval": "20ms"}),
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        # by address, as `napari-unet predict --scheduler tcp://...` does
        address = cluster.scheduler_address
        client.run(_count_model_arrivals)
        r = predict_to_zarr(
            model, image, tmp_path / "out.zarr", chunk=16, probabilities=True, scheduler=address
        )
        received = client.run(lambda: __import__("napari_unet.bigimage").bigimage.worker.arrivals)
        kept = client.run(_models_kept)
    # 36 chunks, one copy per worker, and none left on the workers after the run
    assert set(received.values()) == {1}
    assert all(names == [] for names in kept.values())
    np.testing.assert_array_equal(r.probabilities.compute(), clean.probabilities.compute())
    np.testing.assert_array_equal(r.labels[0].compute(), clean.labels[0].compute())


def test_model_is_not_changed(model, tmp_path):
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    predict_to_zarr(model, np.ones((20, 20), np.float32), tmp_path / "o.zarr", chunk=16)
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_open_image_lazily(tmp_path):
    import tifffile

    image = (np.random.default_rng(7).random((70, 90)) * 255).astype(np.uint8)
    z = zarr.open_array(tmp_path / "a.zarr", mode="w", shape=image.shape, chunks=(16, 16),
                        dtype="uint8")  # fmt: skip
    z[:] = image
    np.testing.assert_array_equal(open_image_lazily(tmp_path / "a.zarr").compute(), image)

    # OME-Zarr: 5D (t, c, z, y, x) with two levels, the second requested
    g = zarr.open_group(tmp_path / "ome.zarr", mode="w", zarr_format=2)
    g.create_array("0", data=image[None, None, None])
    g.create_array("1", data=image[None, None, None, ::2, ::2])
    g.attrs["multiscales"] = [{"version": "0.4", "datasets": [{"path": "0"}, {"path": "1"}]}]
    got = open_image_lazily(tmp_path / "ome.zarr", level=1)
    np.testing.assert_array_equal(got.compute(), image[::2, ::2])
    with pytest.raises(NapariUnetError, match="2 resolution levels"):
        open_image_lazily(tmp_path / "ome.zarr", level=2)

    tifffile.imwrite(tmp_path / "big.tif", image, tile=(32, 32))
    lazy = open_image_lazily(tmp_path / "big.tif")
    np.testing.assert_array_equal(lazy[5:60, 7:80].compute(), image[5:60, 7:80])
    # a cluster worker opens the file itself
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(lazy)).compute(), image)

    two = zarr.open_group(tmp_path / "two.zarr", mode="w")
    two.create_array("a", data=image)
    two.create_array("b", data=image)
    for bad, message in [
        (tmp_path / "missing.zarr", "does not exist"),
        (tmp_path / "two.zarr", "holds 2 arrays"),
        (tmp_path, "not a zarr store"),
    ]:
        with pytest.raises(NapariUnetError, match=message):
            open_image_lazily(bad)
    (tmp_path / "x.png").write_bytes(b"png")
    with pytest.raises(NapariUnetError, match="neither a zarr store nor a TIFF"):
        open_image_lazily(tmp_path / "x.png")


def test_outputs_are_checked_before_work(model, tmp_path):
    image = np.ones((20, 20), np.float32)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    with pytest.raises(NapariUnetError, match="not a zarr store"):
        predict_to_zarr(model, image, tmp_path / "notes", overwrite=True)
    assert (tmp_path / "notes" / "keep.txt").exists()
    predict_to_zarr(model, image, tmp_path / "o.zarr")
    with pytest.raises(NapariUnetError, match="already exists"):
        predict_to_zarr(model, image, tmp_path / "o.zarr")
    with pytest.raises(NapariUnetError, match="threshold"):
        predict_to_zarr(model, image, tmp_path / "t.zarr", threshold=1.5)
    with pytest.raises(NapariUnetError, match="chunk"):
        predict_to_zarr(model, image, tmp_path / "t.zarr", chunk=0)
    with pytest.raises(NapariUnetError, match="scheduler"):
        predict_to_zarr(model, image, tmp_path / "t.zarr", scheduler=42)
    assert not (tmp_path / "t.zarr").exists()


def test_overwrite_replaces_only_our_own_results(model, tmp_path):
    image = np.random.default_rng(8).random((40, 40)).astype(np.float32)
    raw = zarr.open_array(str(tmp_path / "raw.zarr"), mode="w", shape=(40, 40), dtype="f4")
    raw[:] = image
    with pytest.raises(NapariUnetError, match="did not write"):
        predict_to_zarr(model, da.from_zarr(str(tmp_path / "raw.zarr")), tmp_path / "raw.zarr",
                        overwrite=True)  # fmt: skip
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "raw.zarr"))[:], image)
    bad = image.copy()
    bad[5, 5] = np.nan
    with pytest.raises(NapariUnetError, match="NaN"):
        predict_to_zarr(model, bad, tmp_path / "o.zarr")
    with pytest.raises(NapariUnetError, match="incomplete"):  # marked, not foreign
        open_prediction(tmp_path / "o.zarr")
    first = predict_to_zarr(model, image, tmp_path / "o.zarr", overwrite=True)
    again = predict_to_zarr(model, image, tmp_path / "o.zarr", overwrite=True)
    np.testing.assert_array_equal(first.labels[0].compute(), again.labels[0].compute())


def test_merge_inputs_do_not_keep_chunks_alive(tmp_path):
    """The face ids returned per chunk are copies: views would keep every chunk's
    labels in memory until the merge (4 MB per 1024² chunk)."""
    layout = bigimage.chunks.ImageAxes(False, False, 1, 1, (64, 64))
    root = zarr.open_group(tmp_path / "w.zarr", mode="w")
    prob = root.create_array("p", shape=(2, 64, 64), chunks=(2, 32, 32), dtype="float32")
    prob[:] = np.stack([np.zeros((64, 64)), np.ones((64, 64))])
    local = root.create_array("l", shape=(64, 64), chunks=(32, 32), dtype="int32")
    chunk = bigimage.chunks.plan_chunks(layout, (32, 32))[0]
    result = bigimage.tasks.label_chunk(prob, local, chunk, layout, 8, 0.5, {})
    for face, ring in result["faces"].values():
        assert face.base is None and face.size == 32
        assert ring is None or ring.base is None


def test_windows_read_only_their_part_of_the_source(tmp_path):
    """A plain TIFF (one strip) and a zarr chunked along Z are read window by window."""
    import tifffile

    plain = (np.random.default_rng(0).random((2500, 2100)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "plain.tif", plain)  # contiguous: one zarr chunk
    source = bigimage.inputs.LazyTiff(str(tmp_path / "plain.tif"), 0)
    assert isinstance(source._open(), np.memmap)
    lazy = open_image_lazily(tmp_path / "plain.tif")
    assert lazy.chunksize == (1024, 1024)
    np.testing.assert_array_equal(lazy[1000:1100, 7:2000].compute(), plain[1000:1100, 7:2000])
    z = zarr.open_array(
        str(tmp_path / "z.zarr"), mode="w", shape=(16, 300, 300), chunks=(16, 64, 64), dtype="u1"
    )
    lazy = open_image_lazily(tmp_path / "z.zarr")
    assert lazy.chunksize[0] == 1  # a plane's window does not pull all 16 planes
    assert z.shape == lazy.shape


@pytest.mark.parametrize("threads", [1, 2])
def test_forward_passes_take_the_inference_thread_unless_torch_has_one(threads, model, tmp_path):
    """Both paths of run_forward, whatever OMP_NUM_THREADS the test run has."""
    import threading

    from napari_unet.bigimage.worker import run_forward

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        ran_on = []
        run_forward(torch.device("cpu"), lambda: ran_on.append(threading.current_thread().name))
        image = np.random.default_rng(7).random((48, 48)).astype(np.float32)
        ref = predict_tiled(model, image, tile_shape=16)
        r = predict_to_zarr(
            model, image, tmp_path / "o.zarr", chunk=16, tile_shape=16, probabilities=True
        )
        np.testing.assert_array_equal(r.probabilities.compute(), ref)
    finally:
        torch.set_num_threads(before)
    on_own_thread = ran_on[0].startswith("napari-unet-inference")
    assert on_own_thread == (threads > 1), ran_on


def test_a_cluster_that_cannot_take_the_model_says_so_and_keeps_nothing():
    from napari_unet.bigimage.runners import DistributedRunner
    from napari_unet.bigimage.worker import SharedModel

    class RefusingClient:
        unregistered: list = []

        def register_plugin(self, plugin, name):
            raise ModuleNotFoundError("No module named 'napari_unet'")

        def unregister_worker_plugin(self, name):
            self.unregistered.append(name)

    client = RefusingClient()
    runner = DistributedRunner(client, owned=False, retries=0)
    with pytest.raises(NapariUnetError, match=r"^The dask workers could not receive the model"):
        runner.share(SharedModel(UNet(base_channels=2, depth=1)))
    runner.close()
    assert client.unregistered == []  # nothing was installed, nothing to take off
