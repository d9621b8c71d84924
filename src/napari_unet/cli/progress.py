"""Progress on stderr: tqdm bars for tiles, phases and big-image steps."""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from .._generators import run_to_end
from ..events import Announcement, SizeChoice, SizeProgress
from .options import say_precision

__all__ = ["PhaseBars", "ProgressBar", "first_event", "run_with_bar"]


class ProgressBar:
    """A tqdm bar on stderr, created on the first update (when the total is known)."""

    def __init__(self, desc: str, unit: str) -> None:
        self.desc, self.unit, self.bar = desc, unit, None

    def __call__(self, done: int, total: int) -> None:
        """Show ``done`` of ``total``."""
        if self.bar is None:
            self.bar = tqdm(total=total, desc=self.desc, unit=self.unit, file=sys.stderr)
        elif total != self.bar.total or done < self.bar.n:  # a new pass (the size estimate's)
            self.bar.reset(total=total)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        """Close the bar, if it was shown."""
        if self.bar is not None:
            self.bar.close()


class PhaseBars:
    """Progress of a segmentation: a bar for the size estimate, the size chosen, a bar to predict.

    ``said`` is the size sentence, printed when the choice is made (before the
    prediction starts).
    """

    def __init__(self, unit: str = "tile") -> None:
        self.bars = {"size": ProgressBar("object size", "tile"), "predict": None}
        self.unit = unit
        self.said = None

    def __call__(self, event) -> None:
        """Show one event of the segmentation."""
        if isinstance(event, Announcement):  # the size chosen, a resize's cost
            self.bars["size"].close()
            if isinstance(event, SizeChoice):  # also among the notes: said once
                self.said = event.message
            print(event.text, file=sys.stderr)
            return
        if isinstance(event, SizeProgress):
            self.bars["size"](event.done, event.total)
            return
        if self.bars["predict"] is None:
            self.bars["size"].close()
            self.bars["predict"] = ProgressBar("predict", self.unit)
        self.bars["predict"](event.done, event.total)

    def close(self) -> None:
        """Close the bars shown."""
        for bar in self.bars.values():
            if bar is not None:
                bar.close()


def run_with_bar(gen, before=None, args=None):
    """Run a big-image generator to its end with a progress bar on stderr.

    The bar appears with the first event: arguments refused before it leave
    only their one sentence. ``before`` is called then, before the bar (the
    size estimate's line), after the precision's line (``args``).
    """
    bars = []

    def show(event) -> None:
        if not bars:
            if args is not None:
                say_precision(args)
            if before is not None:
                before()
            bars.append(tqdm(total=0, desc="predict", unit="step", file=sys.stderr))
        bar = bars[0]
        # done/total counts over all phases (statistics, predict, label, relabel)
        bar.total = event.total
        bar.set_description(event.phase, refresh=False)
        bar.update(event.done - bar.n)

    try:
        return run_to_end(gen, show)
    finally:
        for bar in bars:
            bar.close()


def first_event(callback, args: argparse.Namespace):
    """``callback`` that prints the precision's line before the first event."""
    said = []

    def call(event) -> None:
        if not said:
            said.append(True)
            say_precision(args)
        callback(event)

    return call
