"""A project folder: the training set's annotations, the rounds and their models (no Qt)."""

from typing import TYPE_CHECKING

from .._lazy import lazy_names

_LAZY = {
    "RoundHistory": "history",
    "RoundRecord": "history",
}
__all__ = ["RoundHistory", "RoundRecord"]
__getattr__, __dir__ = lazy_names(__name__, _LAZY)

if TYPE_CHECKING:
    from .history import RoundHistory, RoundRecord
