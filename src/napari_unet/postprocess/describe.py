"""A model's instance rule in plain words, for the Model dock, the Rounds table and the CLI."""

from __future__ import annotations

from typing import Any

from .resolver import recommended_postprocess, resolve_postprocess

__all__ = ["describe_rule", "describe_model_rule", "calibration_of"]


def describe_rule(rule: dict[str, Any]) -> str:
    """``"objects: connected components above 0.55"`` and the like (resolved options)."""
    t = f"{rule['threshold']:.2g}"
    if rule["method"] == "components":
        text = f"objects: connected components above {t}"
    elif rule.get("seed_threshold") is not None:
        text = (
            f"objects: foreground above {t} split from confident cores above "
            f"{rule['seed_threshold']:.2g} (h {rule['h']:.2g})"
        )
    else:
        text = f"objects: foreground above {t} split by a distance watershed (h {rule['h']:.2g})"
    if rule.get("min_confidence", 0) > 0:
        text += f", unsure ones (mean under {rule['min_confidence']:.2g}) dropped"
    if rule.get("min_size", 0) > 1:
        text += f", at least {int(rule['min_size'])} px"
    return text


def calibration_of(model: Any) -> dict[str, Any] | None:
    """The calibration record in the model's ``metadata["postprocess"]``, if any."""
    found = getattr(model, "metadata", {}).get("postprocess")
    about = found.get("calibration") if isinstance(found, dict) else None
    return about if isinstance(about, dict) else None


def describe_model_rule(model: Any) -> str:
    """The rule every entry point applies for ``model``, and where it comes from.

    E.g. ``"objects: connected components above 0.55; calibrated on 23 of your
    cells, AP 0.81"``.
    """
    text = describe_rule(resolve_postprocess(model))
    about = calibration_of(model)
    if about is not None:
        try:
            cells, score = int(about["cells"]), float(about["score"])
        except (KeyError, TypeError, ValueError):
            return text + "; calibrated"
        which = "of your held-out cells" if about.get("held_out") else "of your annotated cells"
        if about.get("kept"):  # no other rule did clearly better on them
            return f"{text}; kept after a check on {cells} {which}, AP {score:.2f}"
        return f"{text}; calibrated on {cells} {which}, AP {score:.2f}"
    if recommended_postprocess(model):
        return f"{text}; recommended by the model"
    return f"{text} (the default rule)"
