"""The Predict dock's stack fields: planes or 3D objects, which axis is Z, the voxel size.

They show only for an image layer with three or more spatial dimensions. napari's
axis labels decide what the leading axes are when they say so ("z" is depth,
"t" is time: a time-lapse is only ever segmented plane by plane); otherwise the
user picks the Z axis, by default the one just before Y.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from magicgui.widgets import ComboBox, Container, FloatSpinBox, Label

from ..errors import NapariUnetError
from .layers import spatial_shape

PLANES, LINKED, VIEWS = "planes", "linked", "views"
# (what the user reads, what segment() takes)
STACK_CHOICES = [
    ("planes", PLANES),
    ("3D objects, linked", LINKED),
    ("3D objects, three views", VIEWS),
]
_Z_NAMES = frozenset({"z", "depth"})
_T_NAMES = frozenset({"t", "time"})


@dataclass(frozen=True)
class StackAxes:
    """What the leading axes of a stack (all but Y and X) are.

    Attributes
    ----------
    ndim : int
        Spatial dimensions of the layer (its colour axis left out).
    leading : tuple of int
        Axes before Y and X that may be Z (time axes left out).
    z : int or None
        The Z axis when napari's axis labels name it.
    time : int or None
        The axis labelled as time, if any.
    """

    ndim: int
    leading: tuple[int, ...]
    z: int | None
    time: int | None

    @property
    def is_stack(self) -> bool:
        """Three or more spatial dimensions: the stack fields apply."""
        return self.ndim >= 3

    @property
    def time_lapse(self) -> bool:
        """Only time besides Y and X: nothing to join in 3D."""
        return self.is_stack and not self.leading

    @property
    def default_z(self) -> int | None:
        """Z as the labels say, else the axis just before Y (TZYX, ZYX)."""
        if self.z is not None:
            return self.z
        return self.leading[-1] if self.leading else None


def stack_axes(ndim: int, axis_labels: tuple[str, ...] | None = None) -> StackAxes:
    """Read which leading axis is Z or time from napari's axis labels.

    Parameters
    ----------
    ndim : int
        The layer's spatial dimensions (``layer.ndim``: no colour axis).
    axis_labels : tuple of str or None
        ``layer.axis_labels``; napari's defaults ("-3", "-2", ...) say nothing.

    Returns
    -------
    StackAxes
    """
    labels = [str(a).strip().lower() for a in (axis_labels or ())]
    if len(labels) != ndim:
        labels = [""] * ndim
    leading = range(max(ndim - 2, 0))
    z = next((i for i in leading if labels[i] in _Z_NAMES), None)
    time = next((i for i in leading if labels[i] in _T_NAMES), None)
    return StackAxes(
        ndim=ndim,
        leading=tuple(i for i in leading if labels[i] not in _T_NAMES),
        z=z,
        time=time,
    )


def check_voxel_size(voxel_size: tuple[float, float, float]) -> tuple[float, float, float]:
    """Refuse a voxel size that is not above 0 (and finite) in each of Z, Y and X.

    Raises
    ------
    NapariUnetError
        In one sentence.
    """
    if not all(math.isfinite(v) and v > 0 for v in voxel_size):
        shown = ", ".join(f"{v:g}" for v in voxel_size)
        raise NapariUnetError(
            f"The voxel size (Z, Y, X) must be above 0 in each axis, got ({shown})."
        )
    return tuple(float(v) for v in voxel_size)


def _size_box(axis: str) -> FloatSpinBox:
    box = FloatSpinBox(
        value=1.0,
        min=0.0,
        max=1e6,
        step=0.1,
        tooltip=f"Voxel size in {axis} (physical or relative: only the ratios matter); "
        "from the layer's scale.",
    )
    box.native.setDecimals(3)
    # three numbers side by side: room for the digits, not for +/- buttons
    box.native.setButtonSymbols(box.native.ButtonSymbols.NoButtons)
    return box


def _ordinal(axis: int) -> str:
    """'first', 'second'... for axis 0, 1..."""
    names = ("first", "second", "third", "fourth", "fifth")
    return names[axis] if 0 <= axis < len(names) else f"axis {axis}"


class StackOptions:
    """The stack fields of the Predict dock and the options they give ``segment``.

    Call :meth:`show_for` with the chosen image layer; :meth:`options` then gives
    the keywords for :func:`napari_unet.segment.iter_segment` (empty for a 2D
    image or "planes", so such runs are exactly as before).

    Parameters
    ----------
    warm : callable
        Whether torch has loaded (off the GUI thread); until then the hint does not
        say what the mode costs, as that would load it on the GUI thread.
    """

    def __init__(self, warm: Callable[[], bool] = lambda: False) -> None:
        self._warm = warm
        self._layer: Any = None
        self._axes = stack_axes(2)
        self.mode = ComboBox(
            label="Stack",
            choices=self._mode_choices,
            value=PLANES,
            tooltip="Planes: each plane gets its own labels (also right for a time-lapse). "
            "3D objects: one id per object across planes, by linking the planes' objects "
            "or by predicting the XY, XZ and YZ planes and labelling in 3D.",
        )
        self.z_axis = ComboBox(
            label="Z axis",
            choices=self._z_choices,
            tooltip="Which axis of the layer is depth (Z). Label it 'z' in napari and it is "
            "picked for you; label a time axis 't'.",
        )
        self._sizes = {axis: _size_box(axis) for axis in "ZYX"}
        self.voxel = Container(
            layout="horizontal",
            labels=False,
            label="Voxel Z, Y, X",
            widgets=list(self._sizes.values()),
        )
        self.voxel.margins = (0, 0, 0, 0)
        self.hint = Label(label="", value="")
        self.widgets = [self.mode, self.z_axis, self.voxel, self.hint]
        self.mode.changed.connect(self._refresh)
        self.z_axis.changed.connect(self._on_z)
        for box in self._sizes.values():
            box.changed.connect(self._refresh)

    # --- the layer ---------------------------------------------------------------
    def show_for(self, layer: Any) -> None:
        """Show the fields that apply to ``layer`` (None: no image)."""
        if self._layer is not None:
            self._layer.events.scale.disconnect(self._read_scale)
            self._layer.events.axis_labels.disconnect(self._on_labels)
        self._layer = layer
        if layer is not None:
            layer.events.scale.connect(self._read_scale)
            layer.events.axis_labels.connect(self._on_labels)
        self._on_labels()

    def _on_labels(self, _event: Any = None) -> None:
        layer = self._layer
        ndim = 2 if layer is None else int(layer.ndim)
        self._axes = stack_axes(ndim, getattr(layer, "axis_labels", None))
        self.mode.reset_choices()
        self.z_axis.reset_choices()
        if self._axes.default_z is not None:
            self.z_axis.value = self._axes.default_z
        self._read_scale()
        self._refresh()

    # callables, as napari resets every dock's choices when layers change
    def _mode_choices(self, _widget: Any = None) -> list[tuple[str, str]]:
        return STACK_CHOICES[:1] if self._axes.time_lapse else STACK_CHOICES  # time: planes

    def _z_choices(self, _widget: Any = None) -> list[tuple[str, int]]:
        return [(f"axis {i}", i) for i in self._axes.leading]

    def _on_z(self, _value: Any = None) -> None:
        self._read_scale()
        self._refresh()

    def _read_scale(self, _event: Any = None) -> None:
        z = self.z_axis.value
        if self._layer is None or not self._axes.is_stack or z is None:
            return
        scale = [float(s) for s in self._layer.scale]
        for axis, value in zip("ZYX", (scale[z], scale[-2], scale[-1])):
            self._sizes[axis].value = value

    # --- what shows ------------------------------------------------------------
    @property
    def is_3d(self) -> bool:
        """Whether a 3D mode is chosen for a stack."""
        return self._axes.is_stack and self.mode.value != PLANES

    def refresh(self, _value: Any = None) -> None:
        """Show the fields and the hint for the current layer and choices."""
        self._refresh()

    def _refresh(self, _value: Any = None) -> None:
        axes = self._axes
        self.mode.visible = axes.is_stack
        self.z_axis.visible = self.is_3d and axes.z is None
        self.voxel.visible = self.is_3d
        self.hint.visible = axes.is_stack
        self.hint.value = self.describe()

    def describe(self) -> str:
        """A short sentence on how the stack will be read."""
        axes = self._axes
        if not axes.is_stack:
            return ""
        if axes.time_lapse:
            return (
                f"The image's {_ordinal(axes.time)} axis is time, as napari's axis label says: "
                "each plane is segmented on its own."
            )
        if not self.is_3d:
            return "Each plane is segmented on its own (right for a time-lapse)."
        z = self.z_axis.value
        said = "as napari's axis label says" if axes.z is not None else "as chosen above"
        text = f"The depth (Z) runs along the image's {_ordinal(z)} axis, {said}"
        if axes.time is not None:
            text += f"; its {_ordinal(axes.time)} axis is time"
        text += "."
        if self._warm() and self._layer is not None:
            from ..segment import describe_stack_mode

            try:
                cost = describe_stack_mode(
                    self.stack_shape(spatial_shape(self._layer)),
                    self.mode.value,
                    check_voxel_size(self.voxel_size),
                )
            except NapariUnetError as exc:
                cost = str(exc)
            text += "\n" + cost
        return text

    def stack_shape(self, spatial: tuple[int, ...]) -> tuple[int, int, int]:
        """``(Z, H, W)`` of a layer of spatial shape ``spatial`` with the chosen Z axis."""
        return (int(spatial[self.z_axis.value]), int(spatial[-2]), int(spatial[-1]))

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        """The voxel size (Z, Y, X) the fields say (not checked)."""
        return tuple(float(self._sizes[axis].value) for axis in "ZYX")

    def set_voxel_size(self, z: float, y: float, x: float) -> None:
        """Set the voxel size fields (as a user types them)."""
        for axis, value in zip("ZYX", (z, y, x)):
            self._sizes[axis].value = value

    def options(self) -> dict[str, Any]:
        """The keywords for ``iter_segment``: empty unless a 3D mode is chosen.

        Raises
        ------
        NapariUnetError
            When the voxel size is not above 0.
        """
        if not self.is_3d:
            return {}
        voxel = check_voxel_size(self.voxel_size)
        z = self.z_axis.value
        # a plain (Z, H, W) stack needs no z_axis; a 4D one does
        return {
            "stack": self.mode.value,
            "voxel_size": voxel,
            "z_axis": z if self._axes.ndim > 3 else None,
        }
