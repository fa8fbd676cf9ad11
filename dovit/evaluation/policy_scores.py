"""Stopping policies side by side at matched FLOPs on a labelled data set (``python -m dovit.compare``, issue
13).

For every image, ``dovit.core.policies.PolicyRunner`` runs the xi-independent prefix and the dense forward
once, then each policy at each budget (a fraction of the dense forward's FLOPs, ``Trace.dense_flops``); per
policy and budget this adds up mIoU / PA / mPA (``dovit.evaluation.metrics.ConfusionMatrix`` against the
labels), pixel agreement with the dense model, the measured latency (median over images), the mean GFLOPs and
its ratio to the mean budget. Output: a markdown table on stdout, and optionally JSON, the table as a file and
a plotly chart (mIoU against GFLOPs per policy) as a self-contained HTML page."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import plotly.graph_objects as go
import torch
from tqdm import tqdm

from ..core.policies import (
    BUDGET_TOLERANCE,
    DTOP_K,
    POLICIES,
    SEARCH_TOLERANCE,
    PolicyRunner,
    check_budget,
    check_policies,
    quantile_map,
    search_budget,
)
from ..core.predictor import Predictor
from ..report.analysis import Frame
from .metrics import ConfusionMatrix

BUDGET_DEFINITION = ("budget = a fraction of the dense forward's FLOPs (Trace.dense_flops: patch embedding, "
                     "every block on every token, decoder; no aux heads); a policy's GFLOPs are its "
                     "Trace.flops (what it ran, including the D aux heads and the Eq. 8 merges)")


@dataclass
class _Tally:
    """What one policy at one budget (or the dense model) adds up over images."""

    matrix: ConfusionMatrix
    equal_pixels: int = 0
    pixels: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    gflops: list[float] = field(default_factory=list)
    budget_gflops: list[float] = field(default_factory=list)
    parameters: list[float] = field(default_factory=list)
    notes: dict[str, int] = field(default_factory=dict)

    def add(self, mask: np.ndarray, label: np.ndarray, dense_mask: np.ndarray, latency_ms: float,
            gflops: float,
            budget_gflops: float, parameter: float, note: str) -> None:
        self.matrix.update(mask, label)
        self.equal_pixels += int((mask == dense_mask).sum())
        self.pixels += int(mask.size)
        self.latencies_ms.append(latency_ms)
        self.gflops.append(gflops)
        self.budget_gflops.append(budget_gflops)
        self.parameters.append(parameter)
        if note:
            self.notes[note] = self.notes.get(note, 0) + 1


@dataclass
class PolicyScore:
    """One row of the comparison: a policy at a budget over the whole image set.

    miou / pa / mpa / agreement: fractions in [0, 1]; latency_ms: median over images (prefix + this forward +
    mask); gflops / budget_gflops: means over images; gflops_ratio = gflops / budget_gflops (the set's);
    image_ratio_min / _max: the same ratio per image, lowest and highest; parameter_median: the median knob
    (see ``dovit.core.policies.PolicyResult.parameter``); notes: each distinct note with its image count.
    """

    policy: str
    budget: float
    miou: float
    pa: float
    mpa: float
    per_class_iou: list[float | None]
    agreement: float
    latency_ms: float
    gflops: float
    budget_gflops: float
    gflops_ratio: float
    image_ratio_min: float
    image_ratio_max: float
    parameter_median: float
    images: int
    notes: dict[str, int]

    @property
    def within_budget(self) -> bool:
        """The set's mean GFLOPs within BUDGET_TOLERANCE (2 %) of the budget."""
        return abs(self.gflops_ratio - 1.0) <= BUDGET_TOLERANCE


def _score(policy: str, budget: float, tally: _Tally) -> PolicyScore:
    ratios = np.asarray(tally.gflops) / np.asarray(tally.budget_gflops)
    gflops, budget_gflops = float(np.mean(tally.gflops)), float(np.mean(tally.budget_gflops))
    return PolicyScore(policy=policy, budget=budget, **tally.matrix.scores(),
                       agreement=tally.equal_pixels / max(tally.pixels, 1),
                       latency_ms=float(np.median(tally.latencies_ms)), gflops=gflops,
                       budget_gflops=budget_gflops,
                       gflops_ratio=gflops / budget_gflops, image_ratio_min=float(ratios.min()),
                       image_ratio_max=float(ratios.max()),
                       parameter_median=float(np.median(tally.parameters)),
                       images=len(tally.gflops), notes=dict(tally.notes))


def compare_policies(predictor: Predictor, frames: Iterable[Frame], budgets: Sequence[float],
                     policies: Sequence[str] = POLICIES, seed: int = 0, dtop_k: int = DTOP_K,
                     match: str = "set",
                     total: int
                     | None = None, progress: bool = True) -> tuple[PolicyScore, list[PolicyScore]]:
    """Run every policy at every budget on labelled ``frames``; (the dense model's row, one row per policy and
    budget in policy order, budgets ascending). The dense row has budget 1 and gflops_ratio 1.

    match "set": each threshold policy (confidence, random, dtop, oracle) runs one knob value for the whole
    set, searched so that the set's mean GFLOPs meet the budget: per-image costs follow image content, as a
    deployed model's do (every image's xi-independent prefix is kept in memory meanwhile, a few MB each).
    match "image": the knob is searched per image (``PolicyRunner.run``), so every image meets the budget
    and only which tokens stop differs. topk and shallow cost the same on every image of one size: per image
    in both modes.
    """
    budgets = sorted({check_budget(b) for b in budgets})
    policies = check_policies(policies)
    if match not in MATCH_MODES:
        raise ValueError(f"match must be one of {', '.join(MATCH_MODES)}, got {match!r}")
    num_classes, ignore = predictor.config.num_classes, predictor.config.ignore_index
    tallies = {(name, budget): _Tally(ConfusionMatrix(num_classes,
                                                      ignore)) for name in policies for budget in budgets}
    dense = _Tally(ConfusionMatrix(num_classes, ignore))
    kept: list[tuple[PolicyRunner, np.ndarray]] = []
    for frame in tqdm(frames, total=total, desc="prefix + dense" if match == "set" else "compare", unit="img",
                      disable=not progress):
        if frame.label is None:
            raise ValueError(f"{frame.name}: no label; dovit.compare needs labelled images")
        runner = PolicyRunner(predictor, frame.image, seed=seed, dtop_k=dtop_k)
        dense_gflops = runner.dense_flops / 1e9
        dense.add(runner.dense_mask, frame.label, runner.dense_mask, runner.dense_latency_ms, dense_gflops,
                  dense_gflops, 1.0, "")
        if match == "set":
            kept.append((runner, frame.label))
            continue
        for budget in budgets:
            for name in policies:
                result = runner.run(name, budget)
                tallies[name, budget].add(result.mask, frame.label, runner.dense_mask, result.latency_ms,
                                          result.gflops, result.budget_gflops, result.parameter, result.note)
    if not dense.gflops:
        raise ValueError("no images to compare on")
    if match == "set":
        runners = [runner for runner, _ in kept]
        for budget in budgets:
            for name in policies:
                parameter = set_parameter(runners, name, budget) if name in SET_MATCHED else None
                for runner, label in tqdm(kept, desc=f"{name} at {budget:g}", unit="img", leave=False,
                                          disable=not progress):
                    result = runner.run(name, budget) if parameter is None else runner.run_at(name, parameter,
                                                                                              budget)
                    tallies[name, budget].add(result.mask, label, runner.dense_mask, result.latency_ms,
                                              result.gflops, result.budget_gflops, result.parameter,
                                              result.note)
    rows = [_score(name, budget, tallies[name, budget]) for name in policies for budget in budgets]
    return _score("dense", 1.0, dense), rows


MATCH_MODES = ("set", "image")
SET_MATCHED = ("confidence", "random", "dtop", "oracle")  # the policies with a threshold: one value per set


def set_parameter(runners: Sequence[PolicyRunner], policy: str, budget: float) -> float:
    """One knob value (ξ, or τ for oracle; random: confidence's ξ) for all ``runners``' images whose mean
    ``Trace.flops`` meets ``budget`` x the mean dense FLOPs (``policies.search_budget`` on the pooled
    first-decision scores' quantiles; one forward per image and step)."""
    policy = "confidence" if policy == "random" else policy
    scores = torch.cat([runner.first_scores[policy][0] for runner in runners])
    threshold_of = quantile_map(scores, runners[0].first_scores[policy][1])
    dense = float(np.mean([runner.dense_flops for runner in runners]))
    target = budget * dense
    if abs(dense - target) <= SEARCH_TOLERANCE * target:  # budget 1: nothing stops
        return threshold_of(1.0)
    keep_all = float(np.mean([runner.keep_all_flops() for runner in runners]))
    u, _ = search_budget(lambda u: float(np.mean([r.measured_flops(policy,
                                                                   threshold_of(u)) for r in runners])),
                         target, SEARCH_TOLERANCE, ends=(None, keep_all))
    return threshold_of(u)


# ------------------------------------------------------------------ output
def markdown_table(dense: PolicyScore, rows: Sequence[PolicyScore]) -> str:
    """The comparison as a markdown table, dense first, then by budget and policy."""
    lines = [
        "| budget | policy | GFLOPs (of budget) | mIoU | Δ mIoU vs dense | agreement with dense | latency ms "
        "(median) | parameter (median) |",
        "|---|---|---|---|---|---|---|---|",
        f"| 1 | dense | {dense.gflops:.2f} | {100 * dense.miou:.2f} | 0 | 100.0% | {dense.latency_ms:.0f} | "
        "|",
    ]
    for row in sorted(rows, key=lambda r: (r.budget, POLICIES.index(r.policy))):
        flag = "" if row.within_budget or row.policy == "shallow" else " (missed)"
        lines.append(
            f"| {row.budget:g} | {row.policy} | {row.gflops:.2f} ({100 * row.gflops_ratio:.1f}%{flag}) | "
            f"{100 * row.miou:.2f} | {100 * (row.miou - dense.miou):+.2f} | {100 * row.agreement:.1f}% | "
            f"{row.latency_ms:.0f} | {row.parameter_median:.4g} |"
        )
    return "\n".join(lines)


def figure(dense: PolicyScore, rows: Sequence[PolicyScore], title: str = "") -> go.Figure:
    """mIoU (%) against mean GFLOPs, one line per policy, the dense model as a star."""
    fig = go.Figure()
    for name in POLICIES:
        points = sorted((r for r in rows if r.policy == name), key=lambda r: r.budget)
        if points:
            fig.add_trace(go.Scatter(
                x=[r.gflops for r in points], y=[100 * r.miou for r in points], mode="lines+markers",
                name=name,
                text=[f"budget {r.budget:g}, agreement {100 * r.agreement:.1f}%, {r.latency_ms:.0f} ms"
                      for r in points],
                hovertemplate="%{y:.2f} mIoU at %{x:.2f} GFLOPs<br>%{text}<extra>" + name + "</extra>"))
    fig.add_trace(go.Scatter(x=[dense.gflops], y=[100 * dense.miou], mode="markers", name="dense",
                             marker=dict(symbol="star", size=14, color="black")))
    fig.update_layout(template="plotly_white", title=title or "Stopping policies at matched FLOPs",
                      xaxis_title="GFLOPs per image (mean)", yaxis_title="mIoU (%)", height=480)
    return fig
