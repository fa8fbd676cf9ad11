"""The Policies tab's pure parts: each stopping policy's mask and stop map (halting depth) as images, their
captions, and the table of GFLOPs against the budget, agreement with dense and latency. No gradio here;
the policies themselves are ``dovit.core.policies``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from dovit.core.policies import POLICIES
from dovit.viz import drawing

from .analysis import to_working_size

if TYPE_CHECKING:
    from dovit.core.policies import PolicyResult

MASK_OPACITY = 0.6
DESCRIPTIONS = {
    "confidence": "DoViT: stop once q > ξ (Eq. 4–5)",
    "random": "as many tokens per decision as confidence, chosen at random",
    "topk": "a fixed ratio per decision, most confident first (DynamicViT-like)",
    "dtop": "q > ξ, but the 5 most confident of each class keep running (DToP)",
    "oracle": "stop what the aux head already gets right (needs the dense answer)",
    "shallow": "every token stops at one cut: the dense network cut short",
}


@dataclass
class PolicyRun:
    """The Policies tab's last run on a session's image: the budget (fraction of dense GFLOPs), one result
    per policy done (in POLICIES order; fewer when stopped early), the dense forward's latency, and the
    working size (h, w) the forwards saw."""

    budget: float
    results: list[PolicyResult]
    dense_latency_ms: float
    working_size: tuple[int, int] | None = None


def mask_view(result: PolicyResult, image: np.ndarray, class_colors) -> np.ndarray:
    """The policy's mask (any resolution) in class colours over ``image`` (H, W, 3) uint8, at the mask's
    size."""
    if image.shape[:2] != result.mask.shape:
        image = to_working_size(image, result.mask.shape)
    return drawing.blend(image, drawing.colorize_mask(result.mask, class_colors), MASK_OPACITY)


def stop_map_view(result: PolicyResult, image: np.ndarray, working_size: tuple[int, int] | None, patch: int,
                  num_groups: int) -> np.ndarray:
    """The group after which each token stopped, over ``image`` (H, W, 3) uint8 at its own size, the tokens
    cut as the policy's forward saw them at ``working_size`` (None: the image's size; one token = ``patch``
    working pixels), like the Halting depth tab."""
    working = None if working_size is None else tuple(working_size)
    return drawing.halting_map(result.halting_depth, num_groups, image, patch, working_size=working)


def rules_markdown() -> str:
    """One line per policy: what it stops."""
    return "\n".join(f"- **{name}**: {DESCRIPTIONS[name]}" for name in POLICIES)


def caption(result: PolicyResult) -> str:
    """The mask's label: policy, agreement with dense, GFLOPs against the budget, latency."""
    return (f"{result.name} · {100 * result.agreement:.1f}% agree with dense · {result.gflops:.2f} of "
            f"{result.budget_gflops:.2f} GFLOPs ({100 * result.budget_ratio:.0f}%) · {result.latency_ms:.0f} "
            "ms")


def table_markdown(run: PolicyRun, total: int = len(POLICIES)) -> str:
    """One row per policy: GFLOPs against the budget, agreement with dense, latency, kept tokens per group,
    its knob and notes; a line under it names the best agreement among the deployable policies."""
    if not run.results:
        return ""
    dense_gflops = run.results[0].dense_gflops
    lines = [
        f"**Budget {run.budget:g}** × dense {dense_gflops:.2f} GFLOPs = **{run.budget * dense_gflops:.2f} "
        f"GFLOPs** · dense forward {run.dense_latency_ms:.0f} ms · {len(run.results)}/{total} policies",
        "",
        "| policy | GFLOPs (% of budget) | agreement with dense | latency | kept tokens per group | knob | "
        "note |",
        "|---|---|---|---|---|---|---|",
    ]
    for result in run.results:
        kept = " → ".join(str(count) for count in result.kept_tokens)
        lines.append(
            f"| **{result.name}** | {result.gflops:.2f} "
            f"({100 * result.budget_ratio:.0f}%) | **{100 * result.agreement:.2f}%** | "
            f"{result.latency_ms:.0f} ms | {kept} | {result.parameter:.4g} | {result.note} |"
        )
    deployable = [r for r in run.results if r.name != "oracle"]
    if deployable:
        best = max(deployable, key=lambda r: r.agreement)
        lines += ["", f"Best agreement with dense at this budget, oracle aside: **{best.name}** "
                      f"({100 * best.agreement:.2f}%). Latency is one timed forward each on this machine "
                      "(noisy when it is busy); GFLOPs are analytic and include the aux heads."]
    return "\n".join(lines)
