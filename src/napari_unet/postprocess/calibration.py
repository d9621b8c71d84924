"""Choosing the instance rule on the user's own annotated cells.

No single rule is right for every shape: the distance-transform watershed cuts
rods, lobed and spreading cells, connected components merge touching round
nuclei. So after training, the rule and its parameters are searched on cached
probabilities of annotated cells for the best mean AP over IoU 0.5-0.9 inside
the annotated region (StarDist calibrates its two thresholds the same way).

The rule in use stays unless the winner beats it by :func:`switch_margin`: the
winner is the best of hundreds of rules scored on a few cells, so a small lead is
mostly luck (on real HeLa nuclei, winners leading by 0.01-0.04 lost up to 0.07
AP@0.5 on the next frame; those leading by 0.1-0.3 gained). When it must change,
it moves to the rule nearest it (:func:`rule_distance`) among those within the
margin of the best, not to the best itself: on painted rods, dozens of rules tie
within the margin, and the best of them was often one that merges unseen cells
(docs/benchmarks.md, "Calibration moves the rule no farther than the evidence").

The search is cheap because it only labels once per (method, threshold, h,
seed threshold): the per-object filters (``min_size``, ``min_confidence``) and
the scores then come from per-object statistics without labelling again (an
IoU above 0.5 matches at most one cell, so no assignment is needed). And the
labellings of a window share their steps (:class:`~.rules.PlaneLabeller`): a
threshold's distance map serves every height and seed threshold, a seeded
watershed's seeds every threshold. The whole grid then takes about 3 s instead
of 6.5 s on a 256x256 rods window (docs/benchmarks.md, "The rule search shares its
steps"), so live mode's share reaches it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from .resolver import DEFAULTS
from .rules import PlaneLabeller, foreground_probability, label_instances

__all__ = [
    "CalibrationSample",
    "Calibration",
    "calibrate",
    "switch_margin",
    "rule_distance",
    "IOU_THRESHOLDS",
    "MIN_CELLS",
    "SWITCH_MARGIN",
]

#: The IoU thresholds whose mean AP the calibration maximises.
IOU_THRESHOLDS = tuple(np.round(np.arange(0.5, 0.91, 0.05), 2))
#: Fewer annotated cells than this say nothing about a rule.
MIN_CELLS = 2
#: The lead over the rule in use that a new rule needs, times ``1 / sqrt(cells)``.
SWITCH_MARGIN = 0.25
_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
_HEIGHTS = (0.5, 1.0, 2.0, 4.0)
_SEEDS = (0.7, 0.8, 0.9)
_MIN_SIZES = (1, 8, 16, 32, 64)
_CONFIDENCES = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9)
_IOUS = np.asarray(IOU_THRESHOLDS)
_LABELLING_KEYS = ("method", "threshold", "h", "smoothing", "seed_threshold")


@dataclass(frozen=True)
class CalibrationSample:
    """Cached probabilities of one window and the annotated cells that score them.

    Attributes
    ----------
    probabilities : numpy.ndarray
        ``(K, H, W)`` class probabilities, class 0 background.
    labels : numpy.ndarray
        ``(H, W)`` the cells that count (0 elsewhere).
    region : numpy.ndarray
        ``(H, W)`` bool: where predicted objects are scored; an object mostly
        outside it is not counted (it cannot be judged).
    """

    probabilities: np.ndarray
    labels: np.ndarray
    region: np.ndarray


@dataclass(frozen=True)
class Calibration:
    """What :func:`calibrate` found.

    ``rule`` is None when there were too few cells (``message`` says so) and the
    previous rule stays. ``score`` is the mean AP over :data:`IOU_THRESHOLDS`;
    ``default_score`` the same for :data:`DEFAULTS`. ``kept``: the previous rule
    stayed because no rule beat it by :func:`switch_margin`.
    """

    rule: dict[str, Any] | None
    message: str
    cells: int = 0
    held_out: bool = True
    score: float = float("nan")
    ap50: float = float("nan")
    ap75: float = float("nan")
    default_score: float = float("nan")
    rules_tried: int = 0
    seconds: float = 0.0
    complete: bool = True
    kept: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any] | None:
        """The value for ``metadata["postprocess"]``: the rule and how it was found."""
        if self.rule is None:
            return None
        about = {
            "score": round(self.score, 4),
            "ap50": round(self.ap50, 4),
            "ap75": round(self.ap75, 4),
            "default_score": round(self.default_score, 4),
            "cells": self.cells,
            "held_out": self.held_out,
            "rules_tried": self.rules_tried,
            "complete": self.complete,
            "kept": self.kept,
            "seconds": round(self.seconds, 2),
        }
        return {**self.rule, "calibration": about}


def calibrate(
    samples: Sequence[CalibrationSample],
    *,
    held_out: bool = True,
    time_limit: float | None = None,
    previous: dict[str, Any] | None = None,
    move: str = "nearest",
    rule_limit: int | None = None,
) -> Calibration:
    """Search the instance rule that best separates the annotated cells.

    Parameters
    ----------
    samples : sequence of CalibrationSample
        Cached probabilities with their cells and scored regions.
    held_out : bool
        Whether the cells are held out from training (recorded, and said).
    time_limit : float or None
        Seconds the search may take; it stops between two labellings once
        over, keeping the best rule so far (the defaults and ``previous`` are
        always scored first). None: the whole coarse-to-fine search.
    previous : dict or None
        The rule in use (resolved options): it stays unless another scores higher
        by :func:`switch_margin` of the number of cells.
    move : {"nearest", "best"}
        Where a rule that must change goes: to the rule nearest ``previous``
        among those within the margin of the best (the default), or to the best
        (how it was before; kept for benchmarks).
    rule_limit : int or None
        Labellings the search may make (each scores every size and confidence
        filter), in place of ``time_limit``, which is then ignored: unlike a
        time, a count finds the same rule on any machine under any load. None:
        the time limit bounds the search.

    Returns
    -------
    Calibration
        With fewer than :data:`MIN_CELLS` cells: no rule and one sentence.
    """
    start = time.perf_counter()
    prepared = [_Prepared.of(s) for s in samples]
    cells = sum(p.n_true for p in prepared)
    if cells < MIN_CELLS:
        what = "No annotated cell" if cells == 0 else "Only one annotated cell"
        return Calibration(
            None, f"{what} to calibrate the object rule on; the previous rule is kept.", cells
        )
    search = _Search(prepared, start, None if rule_limit else time_limit, rule_limit)
    for rule in (previous, DEFAULTS):
        if rule is not None:
            search.try_rule(dict(rule), force=True)
    default_score = search.scored.get(_key(DEFAULTS), float("nan"))
    for labelling in _coarse():
        search.try_labelling(labelling, _MIN_SIZES, _CONFIDENCES)
    best = search.best_rule
    for labelling in _finer(best):
        ms, mc = best["min_size"], best["min_confidence"]
        sizes = sorted({ms, max(1, ms // 2), round(ms * 1.5) or 1, *_MIN_SIZES})
        confs = sorted({mc, max(0.0, mc - 0.05), min(0.95, mc + 0.05), *_CONFIDENCES})
        search.try_labelling(labelling, sizes, confs)
    rule, score = search.best_rule, search.best_score
    kept = False
    if previous is not None:
        current = {**DEFAULTS, **previous}
        margin, current_score = switch_margin(cells), search.scored[_key(current)]
        if score < current_score + margin:  # no clear lead: the rule in use stays
            rule, score = current, current_score
        elif move == "nearest":  # no farther than the cells ask
            rule, score = search.nearest_tie(current, margin)
        kept = _key(rule) == _key(current)
    scores = search.ap_of(rule)
    return Calibration(
        rule=rule,
        message="",
        cells=cells,
        held_out=held_out,
        kept=kept,
        score=score,
        ap50=scores[0],
        ap75=scores[IOU_THRESHOLDS.index(0.75)],
        default_score=default_score,
        rules_tried=search.labellings,
        seconds=time.perf_counter() - start,
        complete=not search.out_of_time,
    )


def rule_distance(a: dict[str, Any], b: dict[str, Any]) -> float:
    """How far apart two rules are, in steps of the search's grid (0: the same rule).

    Another method counts 3; a threshold, seed threshold or minimum confidence
    0.1 apart counts 1; h, smoothing and minimum size count by their ratio
    (twice as large: 1 for h and smoothing, 0.5 for the size).
    """
    d = 0.0 if a["method"] == b["method"] else 3.0
    d += abs(a["threshold"] - b["threshold"]) / 0.1
    d += abs(a["min_confidence"] - b["min_confidence"]) / 0.1
    d += abs(np.log2((a["min_size"] + 1) / (b["min_size"] + 1))) / 2
    d += abs(np.log2(a["smoothing"] / b["smoothing"])) if a["smoothing"] and b["smoothing"] else 0
    if a["method"] == b["method"] == "watershed":
        d += abs(np.log2(a["h"] / b["h"]))
        sa, sb = a["seed_threshold"], b["seed_threshold"]
        d += (abs(sa - sb) / 0.1) if sa is not None and sb is not None else float(sa != sb)
    return float(d)


def switch_margin(cells: int) -> float:
    """How much better than the rule in use a rule must score on ``cells`` cells.

    :data:`SWITCH_MARGIN` over the square root of the count, as the noise of a
    mean over cells shrinks: 0.11 on 5 cells, 0.056 on 20, 0.025 on 100.
    """
    return SWITCH_MARGIN / float(np.sqrt(max(cells, 1)))


def _coarse() -> list[dict[str, Any]]:
    """Components first (the cheapest), then the distance and the seeded watershed.

    Thresholds nearest 0.5 come first, so that a search cut short by its time
    limit has still compared every kind of rule.
    """
    smooth = DEFAULTS["smoothing"]
    ts = sorted(_THRESHOLDS, key=lambda t: abs(t - 0.5))
    out = [dict(method="components", threshold=t, h=0.5, seed_threshold=None) for t in ts]
    for t in ts:
        out += [dict(method="watershed", threshold=t, h=h, seed_threshold=None) for h in _HEIGHTS]
        for s in _SEEDS:
            if s > t + 0.05:
                out += [
                    dict(method="watershed", threshold=t, h=h, seed_threshold=s) for h in _HEIGHTS
                ]
    return [dict(labelling, smoothing=smooth) for labelling in out]


def _finer(best: dict[str, Any]) -> list[dict[str, Any]]:
    """The neighbours of the best labelling: threshold +-0.05, h x1.5, seeds +-0.05."""
    t0, h0, s0 = best["threshold"], best["h"], best["seed_threshold"]
    ts = [round(min(0.95, max(0.05, t0 + d)), 3) for d in (-0.05, 0.0, 0.05)]
    hs = [h0] if best["method"] == "components" else [h0 / 1.5, h0, h0 * 1.5]
    ss = [None] if s0 is None else [round(min(0.98, s0 + d), 3) for d in (-0.05, 0.0, 0.05)]
    return [
        dict(method=best["method"], threshold=t, h=h, smoothing=best["smoothing"], seed_threshold=s)
        for t in ts
        for h in hs
        for s in ss
        if s is None or s > t
    ]


def _key(rule: dict[str, Any]) -> tuple:
    return tuple(rule.get(k, DEFAULTS[k]) for k in DEFAULTS)


def _rule(key: tuple) -> dict[str, Any]:
    return dict(zip(DEFAULTS, key))


@dataclass
class _Prepared:
    """A sample's foreground, cells and region, ready for many labellings."""

    fg: np.ndarray
    probabilities: np.ndarray
    labels: np.ndarray
    region: np.ndarray
    n_true: int
    labeller: PlaneLabeller | None = None  # a plane's labellings share their steps

    @classmethod
    def of(cls, s: CalibrationSample) -> _Prepared:
        labels = np.asarray(s.labels)
        ids = np.unique(labels)
        n_true = int((ids > 0).sum())
        _, dense = np.unique(labels, return_inverse=True)  # consecutive ids, 0 stays 0
        dense = dense.reshape(labels.shape).astype(np.int32)
        if ids.size and ids[0] != 0:
            dense += 1
        prob = np.asarray(s.probabilities, np.float32)
        fg = foreground_probability(prob)
        labeller = PlaneLabeller(fg) if fg.ndim == 2 else None
        return cls(fg, prob, dense, np.asarray(s.region, bool), n_true, labeller)

    def objects(self, labelling: dict[str, Any]) -> np.ndarray:
        """Per predicted object: size, mean probability, inside the region, best IoU."""
        rule = dict(labelling, min_size=0, min_confidence=0.0)
        if self.labeller is not None:
            pred = self.labeller.label(**rule)
        else:
            pred = label_instances(self.probabilities, **rule)
        n = int(pred.max())
        if n == 0:
            return np.zeros((0, 4))
        index = np.arange(1, n + 1)
        size = np.bincount(pred.ravel(), minlength=n + 1)[1:]
        inside = np.bincount(pred[self.region].ravel(), minlength=n + 1)[1:] * 2 >= size
        conf = np.asarray(ndi.mean(self.fg, pred, index))
        best = np.zeros(n)
        nt = int(self.labels.max())
        both = (pred > 0) & (self.labels > 0)
        if nt and both.any():
            pair = self.labels[both].astype(np.int64) * (n + 1) + pred[both]
            pairs, inter = np.unique(pair, return_counts=True)
            t, p = np.divmod(pairs, n + 1)
            area_t = np.bincount(self.labels.ravel(), minlength=nt + 1)
            iou = inter / (area_t[t] + size[p - 1] - inter)
            np.maximum.at(best, p - 1, iou)
        return np.stack([size, conf, inside, best], axis=1)


class _Search:
    """Labellings scored under every filter, the best rule kept (first found wins ties)."""

    def __init__(
        self,
        samples: list[_Prepared],
        start: float,
        time_limit: float | None,
        rule_limit: int | None = None,
    ):
        self.samples, self.start, self.time_limit = samples, start, time_limit
        self.rule_limit = rule_limit
        self.n_true = sum(s.n_true for s in samples)
        self.scored: dict[tuple, float] = {}
        self.done: set[tuple] = set()
        self.stats: dict[tuple, list[np.ndarray]] = {}
        self.best_rule: dict[str, Any] = dict(DEFAULTS)
        self.best_score = -1.0
        self.labellings = 0
        self.out_of_time = False

    def _objects(self, labelling: dict[str, Any]) -> list[np.ndarray]:
        key = tuple(labelling[k] for k in _LABELLING_KEYS)
        if key not in self.stats:
            self.stats[key] = [s.objects(labelling) for s in self.samples]
            self.labellings += 1
        return self.stats[key]

    def ap_of(self, rule: dict[str, Any]) -> list[float]:
        """AP at every IoU threshold of :data:`IOU_THRESHOLDS`, pooled over the samples."""
        objects = self._objects({k: rule[k] for k in _LABELLING_KEYS})
        tp = np.zeros(len(IOU_THRESHOLDS))
        n_pred = 0
        for o in objects:
            keep = (o[:, 0] >= max(rule["min_size"], 1)) & (o[:, 1] >= rule["min_confidence"])
            keep &= o[:, 2] > 0
            n_pred += int(keep.sum())
            tp += (o[keep, 3, None] > _IOUS).sum(axis=0)
        denom = self.n_true + n_pred - tp
        return [float(a) for a in np.where(denom > 0, tp / np.maximum(denom, 1), 1.0)]

    def try_rule(self, rule: dict[str, Any], force: bool = False) -> None:
        rule = {**DEFAULTS, **rule}
        key = _key(rule)
        if key in self.scored:
            return
        if not force and self._over_time():
            return
        score = float(np.mean(self.ap_of(rule)))
        self.scored[key] = score
        if score > self.best_score + 1e-9:
            self.best_rule, self.best_score = rule, score

    def nearest_tie(self, current: dict[str, Any], margin: float) -> tuple[dict[str, Any], float]:
        """Of the rules within ``margin`` of the best score, the one nearest ``current``.

        Within the margin the scores do not tell the rules apart (a few cells):
        move the rule in use no farther than the evidence asks. ``current``
        itself when it is within the margin; ties of distance go to the higher score.
        """
        best = max(self.scored.values())
        near = [(k, v) for k, v in self.scored.items() if v >= best - margin]
        key, score = min(near, key=lambda kv: (rule_distance(_rule(kv[0]), current), -kv[1]))
        return _rule(key), score

    def try_labelling(self, labelling: dict[str, Any], sizes, confidences) -> None:
        if self._over_time():
            return
        for ms in sizes:
            for mc in confidences:
                self.try_rule({**labelling, "min_size": int(ms), "min_confidence": float(mc)}, True)

    def _over_time(self) -> bool:
        if self.time_limit is not None and time.perf_counter() - self.start > self.time_limit:
            self.out_of_time = True
        if self.rule_limit is not None and self.labellings >= self.rule_limit:
            self.out_of_time = True
        return self.out_of_time
