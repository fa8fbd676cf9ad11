"""What the app keeps per browser tab (``Session``) and the view outputs every refreshing handler fills
(``ViewSlots``). No gradio here.

``ViewSlots`` is the page's biggest ``app.slots.Slots``: ``app.ui`` builds one of components and
``app.studio`` one of values, and both flatten in field order, so the outputs of an event and the values of
its handler cannot drift apart.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Generic

import numpy as np

from .analysis import display_image, to_working_size
from .charts import SweepPoint
from .slots import Slots, T

if TYPE_CHECKING:
    from dovit import Prediction

    from .policy_views import PolicyRun


@dataclass
class Session:
    """One browser tab's image and results.

    image: (H0, W0, 3) uint8 RGB as decoded (at most images.MAX_SIDE on a side).
    size: working (height, width) the model sees; working: ``display`` resized to it, (h, w, 3) uint8, what
    the model sees.
    display: the photo at the size every view is drawn at, (H, W, 3) uint8: its own size, at least the
    working size's longer side, capped (``app.analysis.display_image``; made from ``image`` when not given).
    The model's masks come at this size too.
    color_mask: (H, W, 3) uint8 of the last forward (for re-blending at another opacity), or None.
    sweep: the ξ sweep of this image and size, or None.
    prediction: the forward behind the views on the page (its trace; its masks at the display size), which
    the token inspector reads, or None.
    policies: the Policies tab's last run on this image and size (``app.tabs.policies``), or None.
    model: the label of the model this tab picked (``app.models.ModelShelf``), None for the default.
    runtime: what runs it, "pytorch" or "onnxruntime" (``app.models.RUNTIMES``).
    example: the example gallery's index of the image, None for an upload (``app.links``).
    palette: the masks' class colours, a ``views.PALETTES`` name.
    """

    image: np.ndarray
    size: tuple[int, int]
    working: np.ndarray
    display: np.ndarray | None = None
    color_mask: np.ndarray | None = None
    sweep: list[SweepPoint] | None = None
    prediction: Prediction | None = None
    policies: PolicyRun | None = None
    model: str | None = None
    runtime: str = "pytorch"
    example: int | None = None
    palette: str = "dataset"

    def __post_init__(self) -> None:
        if self.display is None:
            self.display = display_image(self.image, self.size)

    def resize(self, size: tuple[int, int]) -> None:
        """See the photo at working ``size`` = (height, width) from now on (and draw it at the display size
        that goes with it)."""
        self.size, self.display = size, display_image(self.image, size)
        self.working = to_working_size(self.display, size)

    @classmethod
    def of_image(cls, image: np.ndarray, size: tuple[int, int], **settings: Any) -> Session:
        """A new session of ``image`` (decoded, (H0, W0, 3) uint8) seen at working ``size``."""
        display = display_image(image, size)
        return cls(image=image, size=size, working=to_working_size(display, size), display=display,
                   **settings)


@dataclass
class ViewSlots(Slots, Generic[T]):
    """Every view output, one field per slot; ``groups`` / ``confidences`` hold one per token group B_g /
    decision layer. Flattened in field order, groups and confidences in index order."""

    readouts: T
    tokens_plot: T
    groups: list[T]
    confidences: list[T]
    mask_overlay: T
    legend: T
    color_mask: T
    halting: T
    halting_legend: T
    dense_mask: T
    disagreement: T
    agreement: T
    sweep_plot: T = None
    halting_by_class: T = None  # the stacked bars of the Halting depth tab

    def working_images(self) -> list[T]:
        """The image views drawn over the token grid, at the display size (a click on one picks a token)."""
        return [
            *self.groups,
            *self.confidences,
            self.mask_overlay,
            self.color_mask,
            self.halting,
            self.dense_mask,
            self.disagreement,
        ]

    def names(self) -> list[str]:
        """Slot names in output order: 'group_1'... and 'confidence_1'... for the listed slots."""
        names: list[str] = []
        for slot in fields(self):
            value = getattr(self, slot.name)
            if isinstance(value, list):
                prefix = slot.name.removesuffix("s")
                names.extend(f"{prefix}_{index}" for index in range(1, len(value) + 1))
            else:
                names.append(slot.name)
        return names

    @classmethod
    def filled(cls, value: Any, num_groups: int | None = None, **overrides: Any) -> ViewSlots:
        """Every slot ``value`` (e.g. None, gr.skip()), except the keyword ``overrides``; ``num_groups``
        token groups (None: one value for each list, as in ``Slots.filled``)."""
        if num_groups is None:
            return super().filled(value, **overrides)
        lists = dict(groups=[value] * num_groups, confidences=[value] * (num_groups - 1))
        return super().filled(value, **(lists | overrides))
