"""The precision choice of the Predict and Train docks, in plain words."""

from __future__ import annotations

import re
from typing import Any

from magicgui.widgets import ComboBox

# "auto" before any run: what it does, not what it will pick (a CPU without bfloat16
# instructions runs float32; the old "Fast (bfloat16, checked here)" read as bfloat16 there)
FAST = "Auto (bfloat16 where measured faster)"
EXACT = "Exact (float32)"
_WORDS = ("float32", "bfloat16", "float16")


def precision_choice(tooltip: str) -> ComboBox:
    """A "Precision" combo box whose value is ``"auto"`` (Auto) or ``"fp32"`` (Exact).

    Auto uses bfloat16 only where a one-time measurement on this computer found it at
    least 1.3x faster (:mod:`napari_unet.precision`); elsewhere it runs float32, and
    the status says which ran and why. Once a run with Auto has said which,
    :func:`show_auto_ran` names it in the choice.
    """
    said = {"auto": FAST}  # the docks reset their choices when layers change: kept here

    def choices(_: Any) -> list[tuple[str, str]]:
        return [(said["auto"], "auto"), (EXACT, "fp32")]

    combo = ComboBox(label="Precision", choices=choices, value="auto", tooltip=tooltip)
    combo._napari_unet_said = said
    return combo


def auto_text(word: str) -> str:
    """The Auto choice's words once a run showed that Auto runs ``word`` here."""
    return f"Auto ({word} here)"


def show_auto_ran(choice: ComboBox, ran: Any) -> None:
    """Name what Auto ran in the choice: a :class:`~napari_unet.precision.Precision` or a status.

    A status is the sentence :meth:`~napari_unet.precision.Precision.describe` made
    ("Precision: float32 (auto: ...)"); a run not asked for Auto says nothing of it.
    """
    if isinstance(ran, str):
        found = re.search(r"Precision: (\w+) \(auto: ", ran)
        word = found.group(1) if found else None
    else:
        auto = ran is not None and getattr(ran, "requested", None) == "auto"
        word = ran.describe().split()[1] if auto else None
    if word in _WORDS:
        choice._napari_unet_said["auto"] = auto_text(word)
        choice.native.setItemText(0, auto_text(word))
