"""The precision choice of the Predict and Train docks, in plain words."""

from __future__ import annotations

from magicgui.widgets import ComboBox

FAST = "Fast (bfloat16, checked here)"
EXACT = "Exact (float32)"


def precision_choice(tooltip: str) -> ComboBox:
    """A "Precision" combo box whose value is ``"auto"`` (Fast) or ``"fp32"`` (Exact).

    Fast uses bfloat16 only where a one-time measurement on this computer found it at
    least 1.3x faster (:mod:`napari_unet.precision`); elsewhere it runs float32, and
    the status says which ran and why.
    """
    return ComboBox(
        label="Precision", choices=[(FAST, "auto"), (EXACT, "fp32")], value="auto", tooltip=tooltip
    )
