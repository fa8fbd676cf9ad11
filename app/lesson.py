"""The Lesson tab's content: "how a token pass decides", told in steps over the learner's own image.

Each step is one view of the studio (a picture or a chart) and two or three sentences that quote this image's
own numbers, all read from the one forward the views draw (``app.analysis.Views``) and, for the last step, a
ξ sweep (``app.analysis.run_sweep``). Pure: no gradio, no model calls here.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from dovit.core.trace import Trace, class_name
from dovit.viz import drawing

from .analysis import Views
from .charts import SweepPoint, sweep_figure

SURE = 0.9  # "already sure": the share of tokens whose aux head gives its class at least this probability


@dataclass
class LessonContext:
    """What the steps read: the views of one forward, the image at the working size, the model's facts."""

    views: Views
    working_image: np.ndarray  # (h, w, 3) uint8, the image the model saw
    image_size: tuple[int, int]  # the photo's own (height, width)
    class_names: list[str]
    patch: int
    stem: str  # the model config's stem: "patch", "conv" or "espnetv2"
    embed_dim: int
    sweep: list[SweepPoint] | None = None  # FLOPs and agreement against ξ, for the last step

    @property
    def trace(self) -> Trace:
        return self.views.prediction.trace


@dataclass
class LessonStep:
    """One step: its place ("Step 2 of 7"), its title, the text, and one view (a picture or a chart)."""

    number: int  # 1-based
    total: int
    title: str
    text: str  # Markdown
    picture: np.ndarray | None = None  # (H, W, 3) uint8
    figure: go.Figure | None = None

    @property
    def heading(self) -> str:
        return f"Step {self.number} of {self.total}: {self.title}"


@dataclass
class StopSummary:
    """The tokens stopped by one decision layer (or before it): how many, and the aux classes among them."""

    layer: int  # the block after which the decision is taken
    stopped_here: int
    stopped_so_far: int
    num_tokens: int
    # (class name, tokens, mean confidence of the aux head that stopped them), most tokens first
    classes: list[tuple[str, int, float]]

    @property
    def share_so_far(self) -> float:
        return self.stopped_so_far / self.num_tokens


def stop_summaries(trace: Trace, class_names: list[str]) -> list[StopSummary]:
    """One ``StopSummary`` per decision layer, from the trace's masks and the aux heads' top classes."""
    summaries, so_far = [], 0
    for decision in trace.decisions:
        stopped = decision.stopped_here
        so_far += int(stopped.sum())
        classes = []
        if decision.top_classes is not None and stopped.any():
            ids = decision.top_classes[..., 0][stopped]
            confidence = decision.confidence[stopped]
            for class_id in np.unique(ids):
                picked = ids == class_id
                classes.append((class_name(class_names, int(class_id)), int(picked.sum()),
                                float(confidence[picked].mean())))
            classes.sort(key=lambda item: -item[1])
        summaries.append(StopSummary(decision.layer, int(stopped.sum()), so_far, trace.num_tokens, classes))
    return summaries


def _percent(value: float) -> str:
    return f"{100.0 * value:.0f} %"


def _class_list(classes: list[tuple[str, int, float]], limit: int = 2) -> str:
    """"Road (212 tokens, 97 % sure) and Sky (88, 99 %)"."""
    parts = [f"{name} ({count} tokens, {_percent(sure)} sure)" if i == 0
             else f"{name} ({count}, {_percent(sure)})"
             for i, (name, count, sure) in enumerate(classes[:limit])]
    return " and ".join(parts)


def patches_step(context: LessonContext) -> tuple[str, str, np.ndarray, None]:
    trace, (height, width) = context.trace, context.image_size
    rows, cols = trace.grid
    work_h, work_w = context.working_image.shape[:2]
    embed = {"espnetv2": "A convolutional encoder (ESPNetv2, trained on Cityscapes streets) turns each patch "
                         "into a token",
             "conv": "A few convolutions turn each patch into a token"}.get(context.stem,
                                                                            "One linear map turns each patch "
                                                                            "into a token")
    first = trace.groups[0]
    resized = "" if (work_h, work_w) == (height, width) else f" is resized to {work_w}×{work_h} pixels and"
    text = (f"Your {width}×{height} photo{resized} is cut into a {rows}×{cols} "
            f"grid of {context.patch}×{context.patch}-pixel patches: **{trace.num_tokens} tokens**. "
            f"{embed}: a vector of {context.embed_dim} numbers. The first group of transformer blocks "
            f"(B1, blocks {first.blocks[0]}–{first.blocks[1]}) always runs on all {first.tokens} of them.")
    return "Patches become tokens", text, drawing.draw_patch_grid(context.working_image, context.patch), None


def confidence_step(context: LessonContext) -> tuple[str, str, np.ndarray, None]:
    trace, decision = context.trace, context.trace.decisions[0]
    sure = float((decision.confidence >= SURE).mean())
    text = (f"After block {decision.layer}, a light auxiliary head (one 1×1 convolution) guesses every "
            f"token's class. Its **confidence** q is the probability of its best guess (Eq. 3): bright "
            f"where it is sure. Here q runs from {decision.confidence.min():.2f} to "
            f"{decision.confidence.max():.2f}; "
            f"{_percent(sure)} of the tokens are already at least {_percent(SURE)} sure.")
    by_class = class_confidences(trace, context.class_names, 0)
    if by_class:
        name, count, mean = by_class[0]
        text += f" The surest class is {name}: its {count} tokens average {_percent(mean)}."
    return "An auxiliary head's confidence", text, context.views.heatmaps[0][0], None


def class_confidences(trace: Trace, class_names: list[str],
                      index: int) -> list[tuple[str, int, float]]:
    """(class name, tokens, mean confidence) of decision ``index``'s aux head over ALL tokens, surest class
    first (classes with fewer than 5 tokens left out: a mean over a handful says little)."""
    decision = trace.decisions[index]
    if decision.top_classes is None:
        return []
    ids = decision.top_classes[..., 0]
    rows = [(class_name(class_names, int(c)), int((ids == c).sum()),
             float(decision.confidence[ids == c].mean())) for c in np.unique(ids)]
    return sorted((row for row in rows if row[1] >= 5), key=lambda row: -row[2])


def rule_step(context: LessonContext) -> tuple[str, str, np.ndarray, None]:
    trace, first = context.trace, stop_summaries(context.trace, context.class_names)[0]
    text = (f"The stop rule has one knob, **ξ = {trace.xi:.3g}**. A token stops at a decision layer when its "
            f"head is more sure than ξ (Eq. 4); once stopped it never runs again (Eq. 5): it skips the later "
            f"blocks and goes straight to the decoder as it is. At this ξ the first decision stops "
            f"**{first.stopped_here} of {first.num_tokens}** tokens ({_percent(first.share_so_far)}): inside "
            f"the white contour. ξ = 1 stops nothing (the dense model).")
    return "ξ and the stop rule", text, context.views.heatmaps[0][0], None


def groups_step(context: LessonContext) -> tuple[str, str, np.ndarray, None]:
    lines = []
    for index, summary in enumerate(stop_summaries(context.trace, context.class_names)):
        line = (f"- after group {index + 1} (the decision after block {summary.layer}): "
                f"**{_percent(summary.share_so_far)}** of the tokens have stopped")
        if summary.classes:
            line += f"; this decision stopped mostly {_class_list(summary.classes)}"
        else:
            line += "; no token stopped at this decision"
        lines.append(line + ".")
    last = context.trace.groups[-1]
    text = ("Each group runs only on the tokens still kept; the map colours each token by the group after "
            "which it stopped.\n\n" + "\n".join(lines) +
            f"\n\nThe last group ran on {last.tokens} tokens: the hard ones, at edges and small objects.")
    return "Kept and stopped tokens, group by group", text, context.views.halting, None


def compute_step(context: LessonContext) -> tuple[str, str, None, go.Figure]:
    trace, prediction = context.trace, context.views.prediction
    first, last = trace.groups[0], trace.groups[-1]
    saved = trace.flops_saved
    text = (f"Block cost follows the tokens: group B1 spent {first.flops / 1e9:.2f} GFLOPs on {first.tokens} "
            f"tokens, the last group {last.flops / 1e9:.2f} on {last.tokens}. In all this forward counted "
            f"**{trace.flops / 1e9:.2f} GFLOPs** against the dense model's {trace.dense_flops / 1e9:.2f} "
            f"({_percent(saved)} fewer; the stem, auxiliary heads and decoder included). Timed just now: "
            f"**{prediction.latency_ms:.0f} ms** against {prediction.dense_latency_ms:.0f} ms dense.")
    return "Where the compute went", text, None, context.views.tokens_figure


def mask_step(context: LessonContext) -> tuple[str, str, np.ndarray, None]:
    prediction = context.views.prediction
    agreement = prediction.agreement_with_dense
    differs = prediction.mask != prediction.dense_mask
    text = (f"The decoder reads every token, the stopped ones as they were when they stopped, and draws the "
            f"mask. It agrees with the dense model's (ξ = 1) on **{100 * agreement:.1f} %** of the pixels")
    if differs.any():
        ids, counts = np.unique(prediction.dense_mask[differs], return_counts=True)
        top = " and ".join(class_name(context.class_names, int(i)) for i in ids[np.argsort(-counts)][:2])
        text += f"; the differing pixels (magenta) are mostly where the dense model saw {top}."
    else:
        text += ": not one pixel differs."
    return "The final mask against the dense model's", text, context.views.disagreement, None


def xi_step(context: LessonContext) -> tuple[str, str, None, go.Figure | None]:
    trace = context.trace
    text = (f"Lower ξ stops more tokens sooner: fewer FLOPs, and more pixels that differ from the dense "
            f"model. **Try it:** move the ξ slider above (now {trace.xi:.3g}) and watch the numbers of the "
            f"earlier steps change.")
    if context.sweep:
        low, high = context.sweep[0], context.sweep[-1]
        text += (f" On this image, ξ = {low.xi:.3g} costs {100 * low.gflops / low.dense_gflops:.0f} % of the "
                 f"dense FLOPs at {100 * low.agreement:.1f} % agreement; ξ = {high.xi:.3g} costs "
                 f"{100 * high.gflops / high.dense_gflops:.0f} % at {100 * high.agreement:.1f} %.")
    figure = sweep_figure(context.sweep, trace.xi) if context.sweep else None
    return "What moving ξ changes", text, None, figure


STEPS: list[Callable[[LessonContext], tuple]] = [patches_step, confidence_step, rule_step, groups_step,
                                                 compute_step, mask_step, xi_step]
SWEEP_STEP = len(STEPS)  # the step that needs a ξ sweep (1-based)


def lesson_step(context: LessonContext, number: int) -> LessonStep:
    """Step ``number`` (1-based, clamped to the lesson) over the context's image."""
    number = clamp_step(number)
    title, text, picture, figure = STEPS[number - 1](context)
    return LessonStep(number, len(STEPS), title, text, picture, figure)


def clamp_step(number: int | float | None) -> int:
    """A step number from a button, a link or a state: whole, within 1..len(STEPS) (None: 1)."""
    if number is None:
        return 1
    return min(max(int(number), 1), len(STEPS))
