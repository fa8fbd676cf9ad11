"""The "Compare" tab: the current image two ways, side by side under an image slider, masks and token pass,
each with GFLOPs, latency and agreement with dense: two ξ, two checkpoints (the model picker's), or two
stopping policies at one FLOPs budget. Layout (``build``), handler (``CompareHandlers``) and wiring
(``wire``); the images and table are ``app.compare`` (pure). It runs from a button, in the page's queue.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Generic

import gradio as gr

from dovit.core.policies import POLICIES, PolicyRunner, check_budget
from dovit.viz import drawing

from .. import compare
from ..analysis import render_views
from ..slots import Slots, T, connect
from ..state import Session
from ..studio import Studio, user_error

INTRO = ("The current image two ways, one on each side of the slider: drag it over the masks (top) and the "
         "token pass (bottom: the group after which each token stopped, dark = early). Pick what differs: "
         "two ξ values, two checkpoints (at each one's ξ below), or two stopping policies at one FLOPs "
         "budget.")


@dataclass
class CompareSlots(Slots, Generic[T]):
    """A comparison: the masks (A, B) and the token passes (A, B) under their image sliders, and the table."""

    masks: T
    tokens: T
    table: T


@dataclass
class CompareTab:
    mode: gr.Radio
    xi_a: gr.Number
    xi_b: gr.Number
    model_a: gr.Dropdown
    model_b: gr.Dropdown
    policy_a: gr.Dropdown
    policy_b: gr.Dropdown
    budget: gr.Slider
    run: gr.Button
    masks: gr.ImageSlider
    tokens: gr.ImageSlider
    table: gr.Markdown

    def inputs(self) -> list:
        return ([self.mode, self.xi_a, self.xi_b, self.model_a, self.model_b, self.policy_a, self.policy_b,
                 self.budget])

    def outputs(self) -> CompareSlots:
        return CompareSlots(self.masks, self.tokens, self.table)


def build(model_labels: list[str], default_xi: float) -> CompareTab:
    """The tab; call inside the page's ``gr.Tabs``."""
    with gr.Tab("Compare", id="compare"):
        gr.Markdown(INTRO)
        mode = gr.Radio(list(compare.MODES), value=compare.MODES[0], label="Compare", elem_id="compare-mode")
        with gr.Row():
            xi_a = gr.Number(value=1.0, label="ξ of A", minimum=0.0, maximum=1.0, step=0.001,
                             elem_id="compare-xi-a")
            xi_b = gr.Number(value=default_xi, label="ξ of B", minimum=0.0, maximum=1.0, step=0.001,
                             elem_id="compare-xi-b")
            model_a = gr.Dropdown(model_labels, value=model_labels[0], label="model A",
                                  elem_id="compare-model-a")
            model_b = gr.Dropdown(model_labels, value=model_labels[-1], label="model B",
                                  elem_id="compare-model-b")
        with gr.Row():
            policy_a = gr.Dropdown(list(POLICIES), value="random", label="policy A",
                                   elem_id="compare-policy-a")
            policy_b = gr.Dropdown(list(POLICIES), value="confidence", label="policy B",
                                   elem_id="compare-policy-b")
            budget = gr.Slider(0.05, 1.0, value=0.5, step=0.05,
                               label="FLOPs budget of the policies (fraction of dense)",
                               elem_id="compare-budget")
        run = gr.Button("Compare A and B", variant="primary", elem_id="compare-run")
        table = gr.Markdown(elem_id="compare-table")
        masks = gr.ImageSlider(label="Masks: A | B", type="numpy", elem_id="compare-masks", interactive=False)
        tokens = gr.ImageSlider(label="Token pass (halting depth): A | B", type="numpy",
                                elem_id="compare-tokens",
                                interactive=False)
    return CompareTab(mode, xi_a, xi_b, model_a, model_b, policy_a, policy_b, budget, run, masks, tokens,
                      table)


@dataclass
class CompareHandlers:
    studio: Studio

    def on_compare(self, mode: str, xi_a: float, xi_b: float, model_a: str, model_b: str, policy_a: str,
                   policy_b: str, budget: float, opacity: float, session: Session | None,
                   request: gr.Request = None) -> CompareSlots:
        """The session's image two ways: masks and token passes as (A, B) pairs, and the table."""
        studio = self.studio
        with studio.finished(request):
            if session is None:
                raise user_error("Upload an image first: Compare shows the current image two ways.")
            if mode == "two ξ":
                a, b = (self._xi_side(session, None, studio.user_xi(xi), opacity) for xi in (xi_a, xi_b))
            elif mode == "two models":
                a, b = (self._xi_side(session, label, studio.user_xi(xi), opacity)
                        for label, xi in ((model_a, xi_a), (model_b, xi_b)))
            elif mode == "two policies":
                a, b = self._policy_sides(session, policy_a, policy_b, budget)
            else:
                raise user_error(f"unknown comparison {mode!r}; choose one of: {', '.join(compare.MODES)}")
            return CompareSlots((a.mask, b.mask), (a.tokens, b.tokens), compare.comparison_markdown(a, b))

    def _xi_side(self, session: Session, label: str | None, xi: float, opacity: float) -> compare.Side:
        studio = self.studio
        model = label if label is not None else session.model
        predictor = studio.model_named(model, session.runtime, session.size)
        with studio.model_call():
            result = render_views(predictor, session.display, xi, opacity, session.palette, session.size)
        name = f"ξ = {xi:g}" if label is None else f"{label} at ξ = {xi:g}"
        return compare.side_from_views(name, result)

    def _policy_sides(self, session: Session, policy_a: str, policy_b: str, budget: float):
        studio = self.studio
        if policy_a not in POLICIES or policy_b not in POLICIES:
            raise user_error(f"policies are {', '.join(POLICIES)}")
        try:
            budget = check_budget(budget)
        except ValueError as error:
            raise user_error(str(error)) from None
        predictor = studio.predictor_for(session)
        colors = drawing.class_palette(predictor.config.class_colors, session.palette)
        with studio.model_call():
            runner = PolicyRunner(predictor, session.display, size=session.size)
            results = [runner.run(name, budget) for name in (policy_a, policy_b)]
        return [compare.side_from_policy(f"{r.name} at {budget:.0%} of dense FLOPs", r, session.display,
                                         studio.patch, len(predictor.model.decision_layers) + 1, colors,
                                         session.size) for r in results]


def wire(tab: CompareTab, handlers: CompareHandlers, opacity: gr.Slider, session: gr.State,
         page_event: dict) -> None:
    connect(tab.run.click, handlers.on_compare, [*tab.inputs(), opacity, session], tab.outputs(),
            **page_event)
