"""The Compare tab's pure parts: one side of an A/B comparison (two ξ, two checkpoints, or two stopping
policies at one FLOPs budget) as images and numbers, and the table that sets the two sides against each other.
No gradio here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from . import policy_views

if TYPE_CHECKING:
    from dovit.core.policies import PolicyResult

    from .analysis import Views

MODES = ("two ξ", "two models", "two policies")


@dataclass
class Side:
    """One side: its mask over the image and its token pass (halting depth), both (H, W, 3) uint8 at the
    image's display size, and what it cost."""

    label: str
    mask: np.ndarray
    tokens: np.ndarray
    gflops: float
    dense_gflops: float
    latency_ms: float
    agreement: float  # fraction of pixels whose class is the dense model's
    kept_tokens: tuple[int, ...]


def side_from_views(label: str, result: Views) -> Side:
    summary = result.summary
    return Side(label, result.mask_overlay, result.halting, summary.gflops, summary.dense_gflops,
                summary.latency_ms, summary.agreement_with_dense_percent / 100.0,
                tuple(summary.kept_tokens))


def side_from_policy(label: str, result: PolicyResult, image: np.ndarray, patch: int, num_groups: int,
                     colors, working_size: tuple[int, int] | None = None) -> Side:
    """A policy's side over ``image`` (H, W, 3) uint8, its tokens cut at ``working_size`` (None: the image's
    size) and its mask at the image's size."""
    return Side(label, policy_views.mask_view(result, image, colors),
                policy_views.stop_map_view(result, image, working_size, patch, num_groups),
                result.gflops, result.dense_gflops, result.latency_ms, result.agreement,
                tuple(result.kept_tokens))


def comparison_markdown(a: Side, b: Side, note: str = "") -> str:
    """A table of both sides: GFLOPs (and share of dense), latency, agreement with dense, kept tokens."""
    def row(side: Side) -> str:
        return (f"| {side.label} | {side.gflops:.2f} ({100 * side.gflops / side.dense_gflops:.0f}% of dense) "
                f"| {side.latency_ms:.1f} ms | {100 * side.agreement:.2f}% | "
                f"{' → '.join(map(str, side.kept_tokens))} |")

    return "\n".join([
        "| side | GFLOPs | latency | agreement with dense | kept tokens per group |", "|---|---|---|---|---|",
        row(a), row(b), "",
        f"Left of the slider: **{a.label}**; right: **{b.label}**. Drag the slider over the images to "
        "compare."
        + (f" {note}" if note else ""),
    ])
