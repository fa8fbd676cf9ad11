"""The app's two knobs as pure functions: the ξ slider scale and the working-resolution choices.

The slider moves a position s in [0, 1] and ξ = 1 - (1 - s)^3: the whole range [0, 1] stays reachable,
half the slider covers ξ >= 0.875 and one slider step near ξ = 0.985 is about 0.0002 (paper: ξ = 0.985
on Cityscapes, 0.96-0.985 on ADE20K), while near 0, where every token stops anyway, steps are coarse.
"""
from __future__ import annotations

import numpy as np

from dovit.core.preprocess import aspect_working_size

XI_EXPONENT = 3.0
SLIDER_STEP = 0.001
XI_TICKS = (0.0, 0.5, 0.8, 0.9, 0.95, 0.99, 0.999)
SIZE_SCALES = (0.5, 0.75, 1.0, 1.5, 2.0)


def xi_from_position(position: float) -> float:
    """Slider position s in [0, 1] -> ξ = 1 - (1 - s)^3, rounded to 5 decimals."""
    position = min(max(float(position), 0.0), 1.0)
    return round(1.0 - (1.0 - position) ** XI_EXPONENT, 5)


def position_from_xi(xi: float, snap: bool = True) -> float:
    """Inverse of ``xi_from_position``; snap: round to the slider step (False: exact, for chart axes)."""
    xi = min(max(float(xi), 0.0), 1.0)
    position = 1.0 - (1.0 - xi) ** (1.0 / XI_EXPONENT)
    return round(round(position / SLIDER_STEP) * SLIDER_STEP, 6) if snap else position


def sweep_values(count: int = 25, lowest: float = 0.5) -> list[float]:
    """``count`` ξ values from ``lowest`` to 1, evenly spaced on the slider (so denser near 1)."""
    start = position_from_xi(lowest)
    return [xi_from_position(p) for p in np.linspace(start, 1.0, count)]


def working_size_choices(
    input_size: tuple[int, int], patch_size: int, image_size: tuple[int, int] | None = None
) -> list[tuple[str, str]]:
    """(label, value) pairs for the resolution dropdown; value is "HxW".

    Scales of the checkpoint's input size, and, when ``image_size`` is given and has another aspect
    ratio, the image's own aspect at about the checkpoint's token count (no stretching).
    """
    height, width = input_size
    choices = []
    for scale in SIZE_SCALES:
        h, w = max(patch_size, round(height * scale)), max(patch_size, round(width * scale))
        label = f"{h} × {w}" + (" (checkpoint's input)" if scale == 1.0 else f" ({scale:g}×)")
        choices.append((label, f"{h}x{w}"))
    if image_size is not None:
        h, w = aspect_working_size(image_size, input_size, patch_size)
        if (h, w) != (height, width):
            choices.append((f"{h} × {w} (image aspect, same token budget)", f"{h}x{w}"))
    return choices


def default_size_value(input_size: tuple[int, int], patch_size: int,
                       image_size: tuple[int, int] | None = None) -> str:
    """The dropdown's default "HxW": the image's own aspect at the checkpoint's token budget (the
    Predictor's default working size), the checkpoint's input size without an image."""
    h, w = aspect_working_size(image_size, input_size, patch_size) if image_size is not None else input_size
    return f"{h}x{w}"


def parse_size(value: str | None, default: tuple[int, int]) -> tuple[int, int]:
    """"HxW" -> (H, W); None or "" -> default. Raises ValueError on anything else."""
    if not value:
        return tuple(default)  # type: ignore[return-value]
    try:
        height, width = (int(part) for part in str(value).lower().split("x"))
    except ValueError:
        raise ValueError(f"working size must look like '360x480', got {value!r}") from None
    if height < 1 or width < 1:
        raise ValueError(f"working size must be positive, got {value!r}")
    return height, width


def xi_ticks_html() -> str:
    """Labels under the ξ slider at their (non-linear) slider positions."""
    spans = "".join(
        f'<span style="left: {100 * position_from_xi(xi):.1f}%">{xi:g}</span>'
        for xi in XI_TICKS
    ) + '<span style="left: 100%">1</span>'
    return f'<div class="xi-ticks">{spans}</div>'
