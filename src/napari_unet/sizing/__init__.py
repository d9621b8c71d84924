"""How large are the objects? The typical object diameter, estimated for the user.

A network knows the object sizes it was trained on (the bundled model: nuclei 8
to 40 px across). When no diameter is given, :func:`napari_unet.segment`
estimates it here and resizes the image when it lies outside the model's range.

The estimate has two stages, because each alone fails where the other does not:

1. **From the image alone (scale-free).** A smoothed Otsu mask gives a first
   size (the area-weighted median of its components, which ignores noise
   specks); then, at a working scale where that size is about 16 px (2x2...
   binning), the mask is split into objects by a watershed of the smoothed
   intensity seeded by Laplacian-of-Gaussian maxima at the size's own scale,
   and the median equivalent diameter of the objects becomes the new size,
   until it settles (at most four rounds). Nothing in it depends on the
   absolute size, so nuclei 5 px or 60 px across are measured alike; crowded
   clumps that touch without a gap make it too large (up to about 1.6x on
   synthetic images with 90% of nuclei touching).
2. **By the model, at the scale that stage 1 implies.** The model segments a
   window of the image resized by the factor that brings the stage-1 size to
   the geometric middle of its range (18 px for 8-40 px; no resize when the
   size is already in the middle band ``[1.5 min, max / 1.5]``, 12-27 px),
   and the median equivalent diameter of its objects, divided by the factor,
   is the estimate (no pass when the size is in the middle band and the image
   is bigger than one window: no measurement at the image's own scale could
   change "no resizing", and it would cost a fifth of a 1024x1024 prediction).
   Objects cut by the window's edge are left out, and so are
   those under half the area-weighted median diameter: in a noisy image the
   model also finds many small pieces, which are many but cover little. When
   the objects it found were not in the middle band at that scale, the window
   is measured once more at the factor they imply (at most three passes). A
   model pass at the image's own scale would be misleading: nuclei 3x too large
   come out fragmented (AP@0.5 about 0.65), and nuclei at 0.3x mostly vanish.

Why not one of them alone: stage 1 is cheap and never fooled by the scale, but
its mask and seeds are heuristics (touching clumps: up to 2.3x too large at
0.3x); the model's own objects are what the prediction will make, but only at
a scale near its range. On synthetic nuclei at 0.3x, 1x and 3x (8 images, also
dim, crowded and 8-bit ones) stage 1 was within 2.3x of the true median
diameter and the two stages within 8%, except very dim nuclei (8-20 photons)
at 0.3x (-11% and -15%). Why not :func:`skimage.feature.blob_log`: on textured nuclei
its scale-space maxima are dominated by chromatin spots inside the nuclei
(median blob 3-12 px for nuclei 17-62 px across) and it takes about 10 s on
1024x1024.

Stage 1 looks at a central crop of at most 1024x1024 px of at most three planes;
stage 2 at a window of at most 256x256 px at the network's scale in each of those
planes (a stack's planes differ: the middle one alone missed the median of three
synthetic planes by 18%, all three by 1.5%), placed where
stage 1 saw the most foreground, or at the whole image when it is at most
512x512 px at the network's scale and 2D: :func:`napari_unet.segment` then
reuses that prediction when it needs no other factor (the common case of an
image in range), so a small image costs no second prediction.

The package, one stage per module: :mod:`.estimate` the API (the estimate and the
factor it calls for), :mod:`.from_image` stage 1, :mod:`.by_model` stage 2.
"""

from __future__ import annotations

from ..events import DiameterEstimate, SizeChoice, SizeProgress
from ..rescaling import model_diameter_range
from .estimate import (
    MIN_OBJECTS,
    choose_rescale,
    estimate_diameter,
    iter_estimate_diameter,
    iter_size_at_own_scale,
    iter_size_estimate,
)

__all__ = [
    "DiameterEstimate", "SizeChoice", "SizeProgress", "estimate_diameter",
    "iter_estimate_diameter", "iter_size_estimate", "iter_size_at_own_scale", "choose_rescale",
    "model_diameter_range", "MIN_OBJECTS",
]  # fmt: skip
