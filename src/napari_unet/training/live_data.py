"""Live training's data: one image's annotation kept prepared, re-prepared box by box.

:class:`LiveData` holds what :func:`~napari_unet.training.prepare_training_data`
makes (a :class:`~napari_unet.training.data.TrainingData` the sampler draws
from) and keeps it equal to a full preparation of the current annotation while
the user paints. :meth:`LiveData.update` takes the new labels of a box: every
prepared value (known area, held-out area, carved target, weight maps) depends
only on labels within :func:`influence` pixels, so only the changed pixels, the
whole cells they touch (a cell's area ranks it when gaps are carved), and that
margin around them are recomputed, from a window one margin wider. The
sampler's pool (training pixels and their extent) and the validation crops are
then refreshed from the plane's arrays. The held-out cells follow the fixed
rule of :mod:`napari_unet.training.split`, so new cells elsewhere never move an
old cell between training and validation.

Where a value depends on the whole plane (a complete annotation's class
balance, the ring width when the median cell size moves it, the split's "hold
none out" case, an annotated region, whose validation pixels follow the nearest
cell however far it is) the plane is prepared whole, which gives the same result.
Cells copied from a prediction and not edited since are trained on but never
held out, as in :func:`~napari_unet.training.prepare_training_data`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import NapariUnetError
from ..model import UNet, halo
from ..padding import mirror_indices, mirror_pad
from ..weightmap import carve_gaps, unet_weight_map
from .annotated import _check_labels, _planes_of
from .boxes import Box, bbox, grow, union
from .config import TrainConfig
from .data import (
    TrainingData,
    TrainingPlane,
    ValidationCrop,
    _calibration_cells,
    model_normalization,
    tile_sizes,
    validation_windows,
)
from .known import known_area, ring_width
from .provenance import unedited_copies
from .split import _unit_hash, validation_area

__all__ = ["LiveData", "influence"]

# The weight map's border term is cut off below this (napari_unet.weightmap's bound).
_TRUNCATION = 1e-4


def influence(config: TrainConfig) -> int:
    """Pixels beyond which a change of the labels moves no prepared value.

    The border term of the weight map reaches ``sigma * sqrt(2 ln(w0 / 1e-4))``
    (about 24 px for the paper's w0 = 10, sigma = 5; the known gaps use w0 = 1);
    two more pixels cover the carved contacts and rounding.
    """
    w0 = max(float(config.w0), 1.0)
    return int(math.ceil(config.sigma * math.sqrt(2.0 * math.log(w0 / _TRUNCATION)))) + 2


@dataclass
class _Plane:
    """One plane's annotation and its prepared arrays (unpadded, full size)."""

    z: int
    labels: np.ndarray  # int32 as painted
    areas: np.ndarray  # pixels per id
    known: np.ndarray
    val_area: np.ndarray
    target: np.ndarray
    weights: np.ndarray
    full_w: np.ndarray
    ring: int
    held_out: np.ndarray  # the ids held out now
    rule_held: np.ndarray  # the ids the rule holds out (none are when it would be all)
    plane: TrainingPlane
    partial: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    sure_bg: np.ndarray | None = None  # background taught near partly painted cells
    stray: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))  # left out
    over: np.ndarray | None = None  # painted past the start model's sure object: unknown


class LiveData:
    """One image's annotation, prepared for training and kept so while it changes.

    Parameters
    ----------
    image : array
        ``(H, W)`` or a stack ``(Z, H, W)`` (with a leading channel axis for a
        multi-channel model), as for :func:`~napari_unet.training.prepare_training_data`.
    labels : array
        Its instance labels (0 unpainted), same spatial shape.
    model : UNet
        The network to train (channels, depth, normalisation).
    config : TrainConfig
    name : str
        The image's name in the validation split's rule.
    region : array or None
        Where the annotation is complete (a boolean mask of the labels' shape):
        its unpainted pixels are background. Change it with :meth:`set_region`.
    copied : mapping or None
        The record of cells copied from a prediction
        (:func:`~napari_unet.training.provenance.cell_signatures`): those still
        unedited are never held out for validation.
    partial : PartialRule or None
        Which painted cells look partly painted (their surroundings stay unknown;
        :mod:`napari_unet.training.partial`); None: every cell counts as whole.

    Notes
    -----
    ``data`` is the :class:`TrainingData` to hand to a
    :class:`~napari_unet.training.Trainer`; its planes are updated in place, so
    call :meth:`update` from the thread that trains (between two steps).
    """

    def __init__(
        self,
        image: Any,
        labels: Any,
        *,
        model: UNet,
        config: TrainConfig,
        name: str = "image 1",
        region: Any = None,
        copied: Any = None,
        partial: Any = None,
    ) -> None:
        self.config = config
        self._rule = partial
        self.name = name
        self.reach = influence(config)
        self._depth = model.depth
        self.pad = halo(model.depth) + tile_sizes(config.tile_size, model.depth)[1]
        norm = model_normalization(model, config)
        img = np.asarray(image)
        self._stats = norm.statistics(img, channel_axis=0 if model.in_channels > 1 else None)
        self._norm = norm
        self._images = _planes_of(img, model.in_channels)
        spatial = self._images[0].shape[1:]
        self.shape = (len(self._images), *spatial) if len(self._images) > 1 else spatial
        lab = _check_labels(labels, self.shape, "the image")
        if lab.size and lab.max() >= 2**31:
            raise NapariUnetError("The labels use ids of 2**31 or more; renumber the cells.")
        lab = lab.astype(np.int32)
        self._hashes: dict[int, float] = {}
        self._planes: dict[int, _Plane] = {}
        self.data = TrainingData(planes=[], in_channels=model.in_channels, summary=[{}])
        self._no_validation = False
        self._copied = {str(k): v for k, v in (copied or {}).items()}
        self._machine = unedited_copies(lab, self._copied)
        self._regions = self._region_planes(region)
        planes = [lab] if lab.ndim == 2 else list(lab)
        for z, plane in enumerate(planes):
            if plane.any() or z in self._regions:
                self._planes[z] = self._new_plane(z, plane)
        self._resplit()

    def _region_planes(self, region: Any) -> dict[int, np.ndarray]:
        """The region's planes that hold a pixel, by plane index."""
        if region is None:
            return {}
        r = np.asarray(region).astype(bool)
        if r.shape != tuple(self.shape):
            raise NapariUnetError(
                f"The annotated region has shape {r.shape} but the image has shape {self.shape}."
            )
        planes = [r] if r.ndim == 2 else list(r)
        return {z: m.copy() for z, m in enumerate(planes) if m.any()}

    def set_region(self, region: Any) -> Box | None:
        """Take a new annotated region (a mask of the labels' shape, or None for none).

        Returns
        -------
        (y0, y1, x0, x1) or None
            The whole plane when a plane's region changed, else None.
        """
        new = self._region_planes(region)
        h, w = self.shape[-2:]
        moved = [z for z in set(new) | set(self._regions)
                 if z not in new or z not in self._regions
                 or not np.array_equal(new[z], self._regions[z])]  # fmt: skip
        if not moved:
            return None
        self._regions = new
        for z in moved:
            p = self._planes.get(z)
            if p is None:
                p = self._planes[z] = self._new_plane(z, np.zeros((h, w), np.int32))
            self._prepare(p, (0, h, 0, w))
            if not p.labels.any() and z not in self._regions:
                del self._planes[z]
        self._refresh()
        return (0, h, 0, w)

    # -- what the trainer sees
    @property
    def cells(self) -> int:
        """Painted cells, less stray dabs (over all planes)."""
        return sum(int((p.areas[1:] > 0).sum()) - len(p.stray) for p in self._planes.values())

    @property
    def partial_cells(self) -> list[int]:
        """Ids of the cells that look partly painted (over all planes)."""
        return sorted({int(i) for p in self._planes.values() for i in p.partial})

    @property
    def left_out(self) -> list[int]:
        """Ids of the stray dabs, not trained on (over all planes)."""
        return sorted({int(i) for p in self._planes.values() for i in p.stray})

    def _flag(self, p: _Plane) -> np.ndarray:
        """The partly painted ids of plane ``p`` now (and its sure background, kept)."""
        p.sure_bg, p.stray, p.over = None, np.zeros(0, np.int32), None
        if self._rule is None or self.config.complete or not p.labels.any():
            return np.zeros(0, np.int32)
        ids, p.sure_bg, p.stray, p.over = self._rule(self.normalized(p.z), p.labels, p.ring, p.z)
        return ids

    def known(self, z: int = 0) -> np.ndarray:
        """Where plane ``z``'s loss looks now, as a full preparation's (a copy)."""
        p = self._planes.get(z)
        return p.known.copy() if p is not None else np.zeros(self.shape[-2:], bool)

    @property
    def planes(self) -> list[int]:
        """The planes that hold annotation (a cell or a region), in order."""
        return sorted(self._planes)

    def labels(self, z: int = 0) -> np.ndarray:
        """The current annotation of plane ``z`` (a view: do not modify)."""
        p = self._planes.get(z)
        return p.labels if p is not None else np.zeros(self.shape[-2:], np.int32)

    def normalized(self, z: int = 0) -> np.ndarray:
        """Plane ``z`` of the image, normalised as training sees it: ``(C, H, W)`` float32."""
        return self._norm.apply(self._images[z], self._stats, channel_axis=0).astype(np.float32)

    def _refresh(self) -> None:
        """The trainer's planes and summary from the planes' state."""
        ready = [p.plane for _, p in sorted(self._planes.items()) if len(p.plane.train_pixels)]
        self.data.planes[:] = ready  # in place: the sampler holds this list's owner
        n_val = sum(len(p.held_out) for p in self._planes.values())
        self.data.summary[:] = [
            {
                "name": self.name,
                "shape": list(self.shape),
                "planes": len(self._images),
                "annotated_planes": sum(p.known.any() for p in self._planes.values()),
                "cells": self.cells,
                "validation_cells": n_val,
                "region_pixels": int(sum(p.known.sum() for p in self._planes.values())),
                "complete": bool(self.config.complete),
                "partial": self.partial_cells,
                "left_out": self.left_out,
            }
        ]

    # -- the split
    def _held_ids(self, p: _Plane) -> np.ndarray:
        ids = np.flatnonzero(p.areas[1:] > 0) + 1
        key = f"{self.name}:{p.z}"
        vals = []
        for i in ids:
            h = self._hashes.get((p.z, int(i)))
            if h is None:
                h = self._hashes[(p.z, int(i))] = _unit_hash(f"{key}|{int(i)}")
            vals.append(h)
        held = ids[np.asarray(vals) < self.config.validation_fraction] if len(ids) else ids
        return held[~np.isin(held, self._machine)].astype(np.int32)

    def _resplit(self) -> set[int]:
        """Every plane's held-out ids by the fixed rule, and every plane prepared whole."""
        h, w = self.shape[-2:]
        for p in self._planes.values():
            p.rule_held = self._held_ids(p)
        n_val = sum(len(p.rule_held) for p in self._planes.values())
        self._no_validation = n_val == self.cells  # split_cells' rule: then none is held out
        for p in self._planes.values():
            p.held_out = np.zeros(0, np.int32) if self._no_validation else p.rule_held
            self._prepare(p, (0, h, 0, w))
        self._refresh()
        return set(self._planes)

    # -- preparation
    def _new_plane(self, z: int, labels: np.ndarray) -> _Plane:
        image = self.normalized(z)
        h, w = labels.shape
        pad = self.pad
        zero_f = np.zeros((h, w), np.float32)
        plane = TrainingPlane(
            image=mirror_pad(image, ((0, 0), (pad, pad), (pad, pad))),
            labels=np.zeros((h + 2 * pad, w + 2 * pad), np.int32),
            weights=np.zeros((h + 2 * pad, w + 2 * pad), np.float32),
            train_pixels=np.zeros(0, np.int64),
            pad=pad,
            shape=(h, w),
        )
        lab = labels.astype(np.int32)
        made = _Plane(
            z, lab, np.bincount(lab.ravel()), np.zeros((h, w), bool), np.zeros((h, w), bool),
            np.zeros_like(lab), zero_f, zero_f.copy(), ring_width(lab, self.config.sigma),
            np.zeros(0, np.int32), np.zeros(0, np.int32), plane,
        )  # fmt: skip
        made.partial = self._flag(made)
        return made

    def _prepare(self, p: _Plane, area: Box) -> None:
        """Recompute ``area`` of plane ``p`` from a window one margin wider, then its views."""
        h, w = p.labels.shape
        region = self._regions.get(p.z)
        if self.config.complete or region is not None:  # plane-wide class balance or region
            area, win = (0, h, 0, w), (0, h, 0, w)
        else:
            win = grow(area, self.reach, (h, w))
        y0, y1, x0, x1 = win
        painted = p.labels[y0:y1, x0:x1]
        # stray dabs: neither cell nor background (known_area leaves them unknown too)
        lab = np.where(np.isin(painted, p.stray), 0, painted) if len(p.stray) else painted
        cfg = self.config
        if cfg.complete:
            region = np.ones(lab.shape, bool)
        known = known_area(
            painted, cfg.sigma, region, ring=p.ring, partial=p.partial, left_out=p.stray,
            sure=_window(p.sure_bg, win), overhang=_window(p.over, win),
        )  # fmt: skip  # the same finding, the same area as a full preparation
        val = validation_area(lab, known, p.held_out)
        target = carve_gaps(lab, p.areas) if cfg.separate_touching else lab
        balance = None if cfg.complete else (1.0, 1.0)
        weights = unet_weight_map(
            target, w0=cfg.w0, sigma=cfg.sigma, class_weights=balance, mask=known & ~val
        )
        full_w = (
            unet_weight_map(target, w0=cfg.w0, sigma=cfg.sigma, class_weights=balance, mask=known)
            if val.any()
            else np.zeros(lab.shape, np.float32)
        )
        a0, a1, b0, b1 = area
        inner = (slice(a0 - y0, a1 - y0), slice(b0 - x0, b1 - x0))
        out = (slice(a0, a1), slice(b0, b1))
        for dst, src in (
            (p.known, known), (p.val_area, val), (p.target, target),
            (p.weights, weights), (p.full_w, full_w),
        ):  # fmt: skip
            dst[out] = src[inner]
        self._pad_views(p, area)

    def _pad_views(self, p: _Plane, area: Box) -> None:
        """The padded arrays, pool and validation crops of ``p`` after ``area`` changed."""
        t, pad = p.plane, self.pad
        h, w = p.labels.shape
        a0, a1, b0, b1 = area
        # every padded position whose mirrored source lies in the area
        src_y, src_x = mirror_indices(-pad, h + pad, h), mirror_indices(-pad, w + pad, w)
        rows = np.flatnonzero((src_y >= a0) & (src_y < a1))
        cols = np.flatnonzero((src_x >= b0) & (src_x < b1))
        t.labels[np.ix_(rows, cols)] = p.target[np.ix_(src_y[rows], src_x[cols])]
        train = p.known & ~p.val_area
        t.weights[pad + a0 : pad + a1, pad + b0 : pad + b1] = p.weights[a0:a1, b0:b1]
        t.train_pixels = np.flatnonzero(train)
        t.train_box = None
        if len(t.train_pixels):
            ys, xs = np.divmod(t.train_pixels, w)
            t.train_box = (int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1)
        t.validation = self._crops(p)
        calibration = _calibration_cells(p.labels, p.known, self._machine)  # copies left out
        t.annotation, t.region = calibration["annotation"], calibration["region"]
        t.partial = p.partial

    def _crops(self, p: _Plane) -> list[ValidationCrop]:
        if not p.val_area.any():
            return []
        crops = []
        for y0, y1, x0, x1 in validation_windows(p.val_area, halo(self._depth)):
            mask = p.val_area[y0:y1, x0:x1]
            crops.append(
                ValidationCrop(
                    box=(y0, y1, x0, x1),
                    labels=np.where(mask, p.labels[y0:y1, x0:x1], 0),
                    mask=mask,
                    target=p.target[y0:y1, x0:x1] > 0,
                    weights=np.where(mask, p.full_w[y0:y1, x0:x1], 0).astype(np.float32),
                )
            )
        return crops

    # -- the one entry point of changes
    def update(self, z: int, box: Box, labels: Any) -> Box | None:
        """Take the new labels of ``box`` in plane ``z``; re-prepare what they change.

        Parameters
        ----------
        z : int
            The plane (0 for a 2D image).
        box : (y0, y1, x0, x1)
            Where the labels changed, in image pixels (clipped to the image).
        labels : array
            The annotation's new values in ``box`` (its clipped shape).

        Returns
        -------
        (y0, y1, x0, x1) or None
            The area re-prepared (the whole plane when a plane-wide value
            moved), or None when nothing changed.
        """
        h, w = self.shape[-2:]
        if not 0 <= z < len(self._images):
            raise NapariUnetError(f"There is no plane {z} in this image.")
        y0, y1, x0, x1 = max(0, box[0]), min(h, box[1]), max(0, box[2]), min(w, box[3])
        new = np.asarray(labels)
        if new.shape != (y1 - y0, x1 - x0):
            raise NapariUnetError(
                f"The update of box {tuple(box)} has shape {new.shape}, not {(y1 - y0, x1 - x0)}."
            )
        if new.size and (new.min() < 0 or new.max() >= 2**31):
            raise NapariUnetError("Cell ids must be between 0 and 2**31 - 1.")
        new = new.astype(np.int32)
        p = self._planes.get(z)
        if p is None:
            if not new.any():
                return None
            p = self._planes[z] = self._new_plane(z, np.zeros((h, w), np.int32))
        old = p.labels[y0:y1, x0:x1]
        changed = old != new
        if not changed.any():
            return None
        touched = np.union1d(old[changed], new[changed])
        touched = touched[touched > 0]
        size = max(int(new.max(initial=0)) + 1, len(p.areas))
        areas = np.zeros(size, np.int64)
        areas[: len(p.areas)] = p.areas
        areas -= np.bincount(old[changed], minlength=size)
        areas += np.bincount(new[changed], minlength=size)
        p.areas = areas
        p.labels[y0:y1, x0:x1] = new
        area = bbox(changed, (y0, x0))
        cells = np.isin(p.labels, touched) if len(touched) else None
        if cells is not None and cells.any() and self.config.separate_touching:
            area = union(area, bbox(cells, (0, 0)))  # their ranks moved: whole cells
        ring = ring_width(p.labels, self.config.sigma) if len(touched) else p.ring
        moved, p.ring = ring != p.ring, ring
        stray, over = p.stray, p.over
        flags = self._flag(p)
        moved |= not np.array_equal(stray, p.stray) or not _same(over, p.over)
        # a neighbour's flag, or sure background that moved: the whole plane
        moved |= not set(np.setxor1d(flags, p.partial)) <= set(touched) or len(flags) > 0
        p.partial = flags
        if self._copies_edited(touched) or z in self._resplit_after(p):
            return (0, h, 0, w)
        area = (0, h, 0, w) if moved else grow(area, self.reach, (h, w))
        self._prepare(p, area)
        if not p.labels.any() and z not in self._regions:
            del self._planes[z]
        self._refresh()
        return area

    def _copies_edited(self, touched: np.ndarray) -> bool:
        """Whether touching ``touched`` moved a copied cell in or out of the unedited ones.

        Then every plane is split and prepared again (rare: the first edit of a copy).
        """
        ids = set(touched.tolist())
        asked = {k: v for k, v in self._copied.items() if int(k) in ids}
        if not asked:
            return False
        now = self.labels(0) if len(self._images) == 1 else np.stack(
            [self.labels(z) for z in range(len(self._images))]
        )  # fmt: skip
        still = unedited_copies(now, asked)
        machine = np.union1d(np.setdiff1d(self._machine, list(map(int, asked))), still)
        if np.array_equal(machine, self._machine):
            return False
        self._machine = machine
        self._resplit()
        return True

    def _resplit_after(self, p: _Plane) -> set[int]:
        """Held-out ids after plane ``p`` changed; the planes this made whole."""
        p.rule_held = self._held_ids(p)
        n_val = sum(len(q.rule_held) for q in self._planes.values())
        if (n_val == self.cells) != self._no_validation:  # the "hold none out" case flipped
            return self._resplit()
        p.held_out = np.zeros(0, np.int32) if self._no_validation else p.rule_held
        return set()


def _same(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))


def _window(a: np.ndarray | None, box: Box) -> np.ndarray | None:
    return None if a is None else a[box[0] : box[1], box[2] : box[3]]
