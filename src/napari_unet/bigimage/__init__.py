"""Images bigger than memory: overlap-tile prediction chunk by chunk, on dask, into zarr.

The output is cut into chunks whose origins lie on the network's pooling grid of
the whole image. Each chunk is one dask task: it reads its input window (the chunk
plus the network's context) from the source, mirrors it at the image border
exactly as the in-memory path mirror-pads the whole image, normalises it with
statistics computed once for the whole image, and runs the same tile code as
:func:`napari_unet.predict_tiled` (:func:`napari_unet.tiling.predict_padded`). So
the probabilities equal in-memory prediction, and memory is bounded by a few
chunks, never by the image.

Instance labels take three more steps: every chunk is labelled on its own (with
a margin of neighbouring probabilities), ids that meet across chunk faces are
merged with a union-find, and the chunks are relabelled with global, consecutive
ids; ``min_size`` is applied after merging, to whole objects.

Every task writes only its own zarr chunks, from inputs no task modifies, so a
task that is run again (dask retrying it after a worker died) writes the same
bytes. The output's metadata says ``"complete": true`` only once everything is
written; an interrupted run is detectable and is simply run again.

The output is an OME-Zarr (NGFF) image with the labels as its label image, or
with ``into_input`` a label image added to the input OME-Zarr image.

The package, one idea per module:

- :mod:`.api`: :func:`predict_to_zarr` and :func:`iter_predict_to_zarr`, which path runs;
- :mod:`.checks`: the arguments checked before any work;
- :mod:`.chunked`: the chunk-by-chunk path (2D, and stacks plane by plane), its phases;
- :mod:`.inputs`: opening zarr, OME-Zarr and TIFF images lazily;
- :mod:`.chunks`: chunk planning and the mirrored source window of each chunk;
- :mod:`.tasks`: the work on one chunk (predict, label, relabel);
- :mod:`.merge`: the id merge across chunk (and slab) faces;
- :mod:`.stack3d`: Z-stacks as 3D objects, slab by slab in Z (``stack="linked"/"views"``);
- :mod:`.slabs`: the work on one slab, and the slabs' relabelling;
- :mod:`.store`: the store helpers both paths use (input, run metadata, work arrays);
- :mod:`.target`: where a run writes (our store, or the input image's labels);
- :mod:`.output`: our zarr output, opened for writing and marked complete;
- :mod:`.levels`: its display levels;
- :mod:`.result`: a finished result, read back (napari's reader comes here);
- :mod:`.ngff`: the OME-Zarr (NGFF) metadata read from inputs and written for results;
- :mod:`.runners`: dask's threads or a dask.distributed cluster, with progress;
- :mod:`.worker`: what each process keeps (the model, one inference thread).
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_names

# public name -> module, imported on first use: napari's reader opens results through
# .result (zarr and dask only) without loading the prediction engine (torch)
_LAZY = {
    "DEFAULT_LABEL_MARGIN": "api",
    "ChunkProgress": "api",
    "iter_predict_to_zarr": "api",
    "predict_to_zarr": "api",
    "DEFAULT_CHUNK": "inputs",
    "open_image_lazily": "inputs",
    "FORMAT_VERSION": "result",
    "ZarrPrediction": "result",
    "open_prediction": "result",
}

__all__ = [
    "DEFAULT_CHUNK",
    "DEFAULT_LABEL_MARGIN",
    "FORMAT_VERSION",
    "ChunkProgress",
    "ZarrPrediction",
    "iter_predict_to_zarr",
    "open_image_lazily",
    "open_prediction",
    "predict_to_zarr",
]

__getattr__, __dir__ = lazy_names(__name__, _LAZY)

if TYPE_CHECKING:
    from .api import DEFAULT_LABEL_MARGIN, ChunkProgress, iter_predict_to_zarr, predict_to_zarr
    from .inputs import DEFAULT_CHUNK, open_image_lazily
    from .result import FORMAT_VERSION, ZarrPrediction, open_prediction
