"""From class probabilities to instance labels, with one policy for every entry point.

The rules, their calibration on the user's annotated cells, and ONE resolver
that every entry point asks.

- :mod:`.rules`: connected components, distance watershed, seeded watershed;
- :mod:`.resolver`: (model's recommendation, caller's overrides) -> options of a run;
- :mod:`.api`: :func:`labels_from_probabilities`, the public instance step;
- :mod:`.calibration`: the search for the best rule on annotated cells;
- :mod:`.describe`: a rule in plain words.
"""

from __future__ import annotations

from .api import labels_from_probabilities
from .resolver import DEFAULTS, recommended_postprocess, resolve_postprocess
from .rules import METHODS, foreground_probability, label_instances

__all__ = [
    "DEFAULTS",
    "METHODS",
    "foreground_probability",
    "label_instances",
    "labels_from_probabilities",
    "recommended_postprocess",
    "resolve_postprocess",
]
