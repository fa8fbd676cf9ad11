"""The "Policies" tab: the current image under every stopping policy of ``dovit.core.policies`` at one FLOPs
budget, one mask and one stop map per policy with agreement, GFLOPs and latency. Layout (``build``),
handlers (``PolicyHandlers``) and wiring (``wire``); the images and table are ``app.policy_views`` (pure).

A run costs several forwards per policy (each searches its knob to meet the budget), so it starts from a
button, never from the slider, and runs like the ξ sweep: in ``SWEEP_QUEUE``, admitted as the page's one
background job, one policy per model turn behind any interactive call, cancellable between policies (Stop,
a new image or working size), stopping after ``ServingLimits.sweep_budget_s`` with the policies done.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic

import gradio as gr

from dovit.core.policies import POLICIES, PolicyRunner, check_budget
from dovit.viz import drawing

from .. import policy_views
from ..slots import Slots, T, connect
from ..state import Session
from ..studio import Studio, user_error, user_number

INTRO = (
    "Every stopping policy on the current image at the same cost: a FLOPs budget as a fraction of the dense "
    "model's GFLOPs. Each policy's knob is searched so that it lands within 2% of the budget (``shallow`` "
    "takes the nearest cut), then one forward is timed. Does the learned confidence matter, or would "
    "dropping any tokens do? Compare **confidence** (DoViT) with **random** (same counts per decision) "
    "and with **oracle** (an upper bound that knows the dense answer). Top: the mask; below: the group "
    "after which each token stopped (dark = early). Click a token to inspect it."
)


@dataclass
class PolicySlots(Slots, Generic[T]):
    """The tab's results: the table, then one mask and one stop map per policy (in ``POLICIES`` order)."""

    table: T
    masks: list[T]
    stop_maps: list[T]


@dataclass
class PolicyRunSlots(Slots, Generic[T]):
    """A run's outputs: the results as each policy finishes, and the session (with the run) at the end."""

    results: PolicySlots[T]
    session: T


@dataclass
class PoliciesTab:
    budget: gr.Slider
    run: gr.Button
    stop: gr.Button
    table: gr.Markdown
    masks: list[gr.Image]
    stop_maps: list[gr.Image]

    def outputs(self) -> PolicySlots:
        return PolicySlots(self.table, self.masks, self.stop_maps)


def build(per_row: int = 3) -> PoliciesTab:
    """The tab; call inside the page's ``gr.Tabs``."""
    with gr.Tab("Policies", id="policies"):
        gr.Markdown(INTRO)
        with gr.Accordion("The six policies", open=False):
            gr.Markdown(policy_views.rules_markdown())
        with gr.Row():
            budget = gr.Slider(0.05, 1.0, value=0.5, step=0.05,
                               label="FLOPs budget (fraction of dense GFLOPs)",
                               elem_id="policy-budget", scale=3)
            run = gr.Button(f"Run the {len(POLICIES)} policies", variant="primary", elem_id="policies-run",
                            scale=1)
            stop = gr.Button("Stop", elem_id="policies-stop", scale=1)
        table = gr.Markdown(elem_id="policies-table")
        masks, stop_maps = [], []
        for start in range(0, len(POLICIES), per_row):
            with gr.Row(equal_height=True):
                for name in POLICIES[start:start + per_row]:
                    with gr.Column(min_width=240):
                        masks.append(gr.Image(label=f"{name}: mask", format="jpeg", interactive=False,
                                              elem_id=f"policy-mask-{name}", buttons=["fullscreen"]))
                        stop_maps.append(gr.Image(label=f"{name}: stop map", format="jpeg", interactive=False,
                                                  elem_id=f"policy-stops-{name}", buttons=["fullscreen"]))
    return PoliciesTab(budget, run, stop, table, masks, stop_maps)


class PolicyHandlers:
    """The tab's handlers, bound to the app's ``Studio`` (its Predictor, gate, admission and limits)."""

    def __init__(self, studio: Studio) -> None:
        self.studio = studio

    def user_budget(self, value: object) -> float:
        return user_number(value, check_budget, "budget must be a fraction of the dense GFLOPs in (0, 1]")

    def on_run_policies(self, budget: float, session: Session | None, request: gr.Request = None,
                        progress=gr.Progress()) -> Iterator[PolicyRunSlots]:
        """Every policy at ``budget`` on the session's working image, one per model turn; yields the table
        and the images of each policy as it finishes, and the session (with the run) at the end."""
        studio = self.studio
        with studio.finished(request, "sweep"):
            if session is None:
                raise user_error("Upload an image first: the policies run on the current image.")
            budget = self.user_budget(budget)
            steps = len(POLICIES) + 1
            progress((0, steps), desc="policies: dense forward")
            start = time.monotonic()
            with studio.model_call(background=True):
                runner = PolicyRunner(studio.predictor_for(session), session.display, size=session.size)
            run = policy_views.PolicyRun(budget, [], runner.dense_latency_ms, session.size)
            yield PolicyRunSlots.filled(gr.skip())
            for index, name in enumerate(POLICIES):
                if run.results and time.monotonic() - start > studio.limits.sweep_budget_s:
                    gr.Warning(f"The policies stopped after {studio.limits.sweep_budget_s:.0f} s with "
                               f"{len(run.results)} of {len(POLICIES)} done (a smaller image runs faster).")
                    break
                progress((index + 1, steps), desc=f"policy {name}")
                with studio.model_call(background=True):
                    run.results.append(runner.run(name, budget))
                yield self._values(session, run, index)  # also a point where gradio can cancel the run
            session.policies = run
            yield PolicyRunSlots.filled(gr.skip(), session=session)

    def _values(self, session: Session, run: policy_views.PolicyRun, index: int) -> PolicyRunSlots:
        """The table, policy ``index``'s two images (the others skipped) and no session yet."""
        studio, result = self.studio, run.results[index]
        values = PolicySlots(policy_views.table_markdown(run), [gr.skip()] * len(POLICIES),
                             [gr.skip()] * len(POLICIES))
        label = policy_views.caption(result)
        predictor = studio.predictor_for(session)
        colors = drawing.class_palette(predictor.config.class_colors, session.palette)
        values.masks[index] = gr.update(value=policy_views.mask_view(result, session.display, colors),
                                        label=label)
        values.stop_maps[index] = gr.update(
            value=policy_views.stop_map_view(result, session.display, run.working_size, studio.patch,
                                             len(predictor.model.decision_layers) + 1),
            label=f"{result.name}: stop map · kept " + " → ".join(map(str, result.kept_tokens)))
        return PolicyRunSlots(values, gr.skip())

    def on_stop_policies(self, request: gr.Request = None) -> None:
        """Stop: gradio cancels the run; this frees its admission if it was still queued."""
        self.studio.forget_sweep(request)

    def on_clear_policies(self) -> PolicySlots:
        """A new image or working size: the last run's table and images no longer apply."""
        return PolicySlots("", [gr.update(value=None, label=f"{name}: mask") for name in POLICIES],
                           [gr.update(value=None, label=f"{name}: stop map") for name in POLICIES])

    def views(self) -> list[Callable[[Session], tuple[int, int] | None]]:
        """Content size of each mask and stop-map image (for the token inspector), in ``outputs`` order: both
        are drawn at the size of the policy's mask (the photo's display size)."""
        def mask_size(index: int):
            def size(session: Session) -> tuple[int, int] | None:
                run = session.policies
                return tuple(run.results[index].mask.shape) if run and index < len(run.results) else None
            return size
        return [mask_size(index) for index in range(len(POLICIES))] * 2


def wire(tab: PoliciesTab, handlers: PolicyHandlers, session: gr.State, sweep_queue: str, clear_on: list):
    """Run / Stop, and clearing on each event of ``clear_on``; returns the run event (for ``cancels``)."""
    run_event = connect(tab.run.click, handlers.on_run_policies, [tab.budget, session],
                        PolicyRunSlots(tab.outputs(), session), concurrency_id=sweep_queue,
                        concurrency_limit=1, api_visibility="private",
                        validator=handlers.studio.admit("sweep"))
    tab.stop.click(handlers.on_stop_policies, None, None, cancels=[run_event], api_visibility="private")
    for event in clear_on:
        connect(event, handlers.on_clear_policies, None, tab.outputs(), api_visibility="private",
                show_progress="hidden")
    return run_event
