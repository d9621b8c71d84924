"""ONE policy for the instance step: (model's recommendation, caller's overrides) -> options.

Every entry point (``segment``, ``labels_from_probabilities(model=...)``, the
zarr/chunk path, batch, the 3D modes, training validation and the docks) asks
:func:`resolve_postprocess`, so one image and one model give one answer
wherever they go. The order is fixed: what the caller gives (a value that is
not None), else what the model recommends (``metadata["postprocess"]``, written
by the calibration after training), else the defaults below.
"""

from __future__ import annotations

import math
from typing import Any

from .rules import METHODS

__all__ = [
    "DEFAULTS",
    "H_PER_DIAMETER",
    "SMOOTHING_PER_DIAMETER",
    "RECOMMENDABLE",
    "H_3D",
    "SMOOTHING_3D",
    "recommended_postprocess",
    "resolve_postprocess",
]

#: The rule a model without a recommendation gets: the foreground split by a
#: distance-transform watershed (see :func:`napari_unet.labels_from_probabilities`).
DEFAULTS: dict[str, Any] = {
    "method": "watershed",
    "threshold": 0.5,
    "min_size": 16,
    "h": 0.5,
    "smoothing": 1.5,
    "seed_threshold": None,
    "min_confidence": 0.0,
}
#: The 3D watershed's defaults (stack="views"): the averaged probability of three views
#: is smooth already, and smoothing the distance map or a larger h merged touching nuclei
#: (3D AP@0.5 0.957 vs 0.938 at 1:1, 0.870 vs 0.824 at 1:4; bench_volume.py --sweep).
H_3D, SMOOTHING_3D = 0.5, 0.0
#: Where the object diameter d is known (``segment`` estimates it), the watershed's
#: h and smoothing follow it: h = max(0.5, 0.05 d), smoothing = max(1.0, 0.06 d) px.
#: A fixed h of 0.5 px cut large real nuclei at every dent of their outline (HeLa,
#: ~27 px: 8-9 nuclei in two pieces per frame), while small touching synthetic
#: nuclei need it that low; scaled, both hold (docs/benchmarks.md, issue 25). The 3D
#: watershed of "views" scales its h alike (its smoothing stays 0).
H_PER_DIAMETER, SMOOTHING_PER_DIAMETER = 0.05, 0.06
_H_FLOOR, _SMOOTHING_FLOOR = 0.5, 1.0
#: Options a model may recommend in ``metadata["postprocess"]``.
RECOMMENDABLE = tuple(DEFAULTS)
# a 2D rule's distances do not carry over to the 3D watershed of the views mode
_NOT_IN_VIEWS = ("h", "smoothing", "min_size")


def recommended_postprocess(model: Any) -> dict[str, Any]:
    """The instance options the model recommends (calibrated with it), if any.

    Unknown keys and values of the wrong kind are ignored: a newer model file
    must not break an older napari-unet, and an old file without a
    recommendation still works (it gets :data:`DEFAULTS`).
    """
    found = getattr(model, "metadata", {}).get("postprocess") if model is not None else None
    if not isinstance(found, dict):
        return {}
    out: dict[str, Any] = {}
    for key, value in found.items():
        if key == "method":
            if value in METHODS:
                out[key] = value
        elif key == "seed_threshold" and value is None:
            out[key] = None
        elif key in RECOMMENDABLE and _is_number(value):
            out[key] = int(value) if key == "min_size" else float(value)
    return out


def resolve_postprocess(
    model: Any = None,
    overrides: dict[str, Any] | None = None,
    *,
    stack: str = "planes",
    fallback: dict[str, Any] | None = None,
    diameter: float | None = None,
) -> dict[str, Any]:
    """The instance options of one run.

    Parameters
    ----------
    model : UNet or None
        Its ``metadata["postprocess"]`` is the recommendation (see
        :func:`recommended_postprocess`); None recommends nothing.
    overrides : dict or None
        What the caller gave. None values mean "not given"; keys other than
        :data:`DEFAULTS` (``link_iou``, ``min_volume``) pass through unchanged.
    stack : {"planes", "linked", "views"}
        ``"views"`` keeps the 3D watershed's own ``h`` and ``smoothing``
        (:data:`H_3D`, :data:`SMOOTHING_3D`; with a ``diameter`` its ``h`` scales
        as in 2D, its smoothing stays 0) and its own ``min_volume``.
    fallback : dict or None
        Values used where neither the caller nor the model says (e.g. a
        training configuration's ``min_size``), before :data:`DEFAULTS`.
    diameter : float or None
        The objects' typical diameter in pixels of the probabilities, where
        known. The watershed's default ``h`` and ``smoothing`` then scale with
        it (:data:`H_PER_DIAMETER`, :data:`SMOOTHING_PER_DIAMETER`); values
        from the caller, the model or ``fallback`` are kept as they are.

    Returns
    -------
    dict
        Every key of :data:`DEFAULTS` plus the overrides' other keys. The
        values are not checked here: :func:`labels_from_probabilities` refuses
        bad ones in one sentence.
    """
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    recommended = recommended_postprocess(model)
    defaults = dict(DEFAULTS)
    if stack == "views":
        defaults.update(h=H_3D, smoothing=SMOOTHING_3D)
        recommended = {k: v for k, v in recommended.items() if k not in _NOT_IN_VIEWS}
    if _is_number(diameter) and diameter > 0:
        h = max(_H_FLOOR, H_PER_DIAMETER * diameter)
        if stack == "views":  # the 3D watershed keeps its unsmoothed distances
            defaults.update(h=max(H_3D, h))
        else:
            defaults.update(h=h, smoothing=max(_SMOOTHING_FLOOR, SMOOTHING_PER_DIAMETER * diameter))
    out = {**defaults, **(fallback or {}), **recommended, **given}
    seed = out["seed_threshold"]
    if "seed_threshold" not in given and _is_number(seed) and _is_number(out["threshold"]):
        if seed <= out["threshold"]:  # the caller raised the threshold past the model's seeds
            out["seed_threshold"] = None
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
