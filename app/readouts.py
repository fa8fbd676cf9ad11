"""Numbers of one prediction: a JSON-friendly summary (the /predict API's dict) and its Markdown readout."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from dovit.evaluation.confidence_range import ConfidenceRange, familiarity_note

if TYPE_CHECKING:
    from dovit import Prediction


@dataclass
class PredictionSummary:
    """The numbers of one prediction that the readouts, the export and the /predict API show (``to_dict``:
    JSON)."""

    xi: float
    gflops: float
    dense_gflops: float
    flops_saved_percent: float
    kept_tokens: list[int]  # patch tokens per group B_1..B_{D+1}
    num_tokens: int
    latency_ms: float
    dense_latency_ms: float
    fps: float | None
    dense_fps: float | None
    speedup: float | None  # measured: dense latency / this latency
    ideal_speedup: float | None  # dense FLOPs / these FLOPs
    agreement_with_dense_percent: float
    working_size: list[int]
    grid: list[int]
    flops_convention: str
    dense_confidence: float
    familiarity_note: str | None
    runtime: str
    efficiency: float | None  # speedup / ideal_speedup
    efficiency_note: str | None
    part_ms: dict[str, float]  # this forward's wall time by part: stem, blocks, aux heads, decoder

    def to_dict(self) -> dict:
        return asdict(self)


def prediction_summary(prediction: Prediction, reference: ConfidenceRange | None = None) -> PredictionSummary:
    """``dovit.Prediction`` -> its ``PredictionSummary`` (GFLOPs, latency in ms, FPS, kept tokens per group);
    ``familiarity_note`` is a line when the dense confidence lies below ``reference``, the checkpoint's
    training range, else None."""
    trace = prediction.trace
    latency, dense_latency = float(prediction.latency_ms), float(prediction.dense_latency_ms)
    speedup = dense_latency / latency if latency > 0 else None
    ideal = trace.dense_flops / trace.flops if trace.flops > 0 else None
    return PredictionSummary(
        xi=float(prediction.xi),
        gflops=trace.flops / 1e9,
        dense_gflops=trace.dense_flops / 1e9,
        flops_saved_percent=100.0 * trace.flops_saved,
        kept_tokens=[int(group.tokens) for group in trace.groups],
        num_tokens=int(trace.num_tokens),
        latency_ms=latency,
        dense_latency_ms=dense_latency,
        fps=1000.0 / latency if latency > 0 else None,
        dense_fps=1000.0 / dense_latency if dense_latency > 0 else None,
        speedup=speedup,
        ideal_speedup=ideal,
        agreement_with_dense_percent=100.0 * prediction.agreement_with_dense,
        working_size=[int(v) for v in prediction.working_size],
        grid=[int(v) for v in trace.grid],
        flops_convention=trace.flops_convention,
        dense_confidence=float(prediction.dense_confidence),
        familiarity_note=familiarity_note(float(prediction.dense_confidence), reference),
        runtime=prediction.runtime,
        part_ms=part_times(trace.timings_ms),
        **_efficiency(speedup, ideal),
    )


LOW_EFFICIENCY = 0.7


def _efficiency(speedup: float | None, ideal: float | None) -> dict:
    """efficiency = measured speed-up / ideal (FLOPs) speed-up; below LOW_EFFICIENCY, a line on why."""
    efficiency = speedup / ideal if speedup is not None and ideal else None
    note = None
    if efficiency is not None and efficiency < LOW_EFFICIENCY and ideal is not None and ideal > 1.05:
        note = ("The measured speed-up is below the FLOPs ratio: fixed costs (the patch stem, the "
                "always-dense first group, the decoder, the mask) do not shrink with the tokens, and small "
                "token counts run at a lower FLOP rate on this hardware; one run each, so a busy machine "
                "adds noise.")
    return {"efficiency": efficiency, "efficiency_note": note}


# timings_ms keys (``SegmenterOutput.timings_ms``) by the part of the network they time
_PARTS = {"embed": "stem", "group": "blocks", "decision": "aux heads", "decoder": "decoder",
          "upsample": "decoder"}


def part_times(timings_ms: dict[str, float]) -> dict[str, float]:
    """A forward's stage timings summed by part: the stem (patch embedding or pretrained encoder) apart
    from the ViT blocks, the aux heads with their decisions, and the decoder with its upsample."""
    parts = dict.fromkeys(("stem", "blocks", "aux heads", "decoder"), 0.0)
    for key, ms in timings_ms.items():
        part = _PARTS.get(key.split("_")[0])
        if part is not None:
            parts[part] += float(ms)
    return parts


def readouts_markdown(summary: PredictionSummary) -> str:
    """The live readout panel: FLOPs, latency/FPS vs dense, kept tokens per group."""
    kept = " → ".join(
        f"B{i + 1}: {tokens} ({100 * tokens / summary.num_tokens:.0f}%)"
        for i, tokens in enumerate(summary.kept_tokens)
    )
    saved = summary.flops_saved_percent
    return (
        f"**ξ = {summary.xi:.4g}** · working size {summary.working_size[0]}×{summary.working_size[1]}"
        f" → {summary.grid[0]}×{summary.grid[1]} = {summary.num_tokens} tokens\n\n"
        f"| | DoViT (this ξ) | dense (ξ = 1) | |\n|---|---|---|---|\n"
        f"| GFLOPs | **{summary.gflops:.2f}** | {summary.dense_gflops:.2f} | "
        f"{'saved' if saved >= 0 else 'extra'} **{abs(saved):.1f}%** |\n"
        f"| latency, {summary.runtime or 'PyTorch'} | **{summary.latency_ms:.1f} ms** | "
        f"{summary.dense_latency_ms:.1f} ms | speedup **{summary.speedup:.2f}×** |\n"
        f"| ideal speed-up (dense FLOPs / these FLOPs) | {_number(summary.ideal_speedup)}× | | efficiency "
        f"**{_number(summary.efficiency)}** (measured / ideal) |\n"
        f"| FPS | **{summary.fps:.1f}** | {summary.dense_fps:.1f} | |\n"
        f"| agreement with dense | **{summary.agreement_with_dense_percent:.1f}%** of pixels | | |\n\n"
        f"Kept tokens per group: {kept}\n\n"
        f"Time by part (this ξ): {' · '.join(f'{p} {ms:.1f} ms' for p, ms in summary.part_ms.items())}\n\n"
        + (f"{summary.efficiency_note}\n\n" if summary.efficiency_note else "")
        + (f"**⚠ {summary.familiarity_note}**\n\n" if summary.familiarity_note else "")
        + f"<sub>{summary.flops_convention}. Latency: wall time of the whole forward on this machine, one "
        f"run each (the ξ-independent prefix and the dense forward are timed once per image, this ξ now), "
        f"so expect noise when the machine is busy.</sub>"
    )


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def agreement_markdown(summary: PredictionSummary) -> str:
    """The Dense vs DoViT tab's headline: pixel agreement of this ξ's mask with the dense mask."""
    agreement = summary.agreement_with_dense_percent
    return (
        f"**{agreement:.2f}%** of pixels get the same class as the dense model (ξ = 1); "
        f"{100 - agreement:.2f}% differ (magenta), for {summary.flops_saved_percent:.1f}% fewer FLOPs."
    )
