"""DoViT on ONNX Runtime: the exported stage graphs (``dovit.deploy.onnx_graphs``) driven by the model's own
token pass. Notes and measurements: docs/library_notes.md.
"""
from __future__ import annotations

import statistics
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..core.checkpoint import CheckpointError, read_config
from ..core.model import DoViTSegmenter, SegmenterOutput, TokenState
from ..core.predictor import Predictor
from ..core.stopwatch import Stopwatch
from ..core.token_pass import Forced


class OrtSegmenter(DoViTSegmenter):
    """The model of an export folder on onnxruntime's CPU provider; ``threads``: intra-op threads (None:
    onnxruntime's choice, one per core)."""

    def __init__(self, export_dir: str | Path, threads: int | None = None) -> None:
        import onnxruntime

        config, metadata = _read_export(export_dir)
        with torch.device("meta"):  # shapes for FLOPs and the trace; no weights are allocated
            super().__init__(config, metadata=metadata)
        info = metadata["export"]
        self.export_dir = Path(export_dir)
        self.export_size = tuple(int(v) for v in info["size"])  # the size traced at (and checked, if asked)
        self.export_grid = tuple(int(v) for v in info["grid"])
        # format 2 graphs run at any working size; an export of format 1 only at its own
        self.dynamic_size = bool(info.get("dynamic_size", False))
        options = onnxruntime.SessionOptions()
        # One session per stage, each with its own thread pool: threads that spin after their stage's run (the
        # default) would take the cores from the next stage's (measured: groups 2x slower on 2 cores).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        self.sessions = {name: onnxruntime.InferenceSession(str(self.export_dir / f"{name}.onnx"), options,
                                                            providers=["CPUExecutionProvider"])
                         for name in info["graphs"]}
        self.quantized = info.get("quantize", {}).get("dtype")  # "int8" from dovit.deploy.quantize, else None
        kind = f"cpu, {self.quantized}" if self.quantized else "cpu"
        self.runtime = f"ONNX Runtime {onnxruntime.__version__} ({kind})"
        self.eval()  # nn.Module starts in training mode, which would run the aux heads at xi = 1

    # The Predictor moves its model to its device and sets eval mode: the sessions run on the CPU only.
    def to(self, *args, **kwargs) -> OrtSegmenter:
        device = args[0] if args else kwargs.get("device")
        if device is not None and not isinstance(device, torch.dtype) and torch.device(device).type != "cpu":
            raise ValueError(f"an ONNX export runs on onnxruntime's CPU provider, not on {device}")
        return self

    def _run(self, name: str, *inputs: torch.Tensor) -> list[torch.Tensor]:
        session = self.sessions[name]
        feeds = {arg.name: np.ascontiguousarray(tensor.detach().numpy())
                 for arg, tensor in zip(session.get_inputs(), inputs, strict=False)}
        return [torch.from_numpy(array) for array in session.run(None, feeds)]

    def prefix(self, pixels: torch.Tensor) -> TokenState:
        with single_torch_thread():
            return self._prefix(pixels)

    def forward_from(self, *args, **kwargs) -> SegmenterOutput:
        with single_torch_thread():
            return super().forward_from(*args, **kwargs)

    def check_size(self, size: tuple[int, int]) -> None:
        """ValueError, saying what to do, for a working (height, width) this export cannot run at."""
        height, width = (int(v) for v in size)
        if not self.dynamic_size and (height, width) != self.export_size:
            raise ValueError(f"this export (format 1) runs at working size {self.export_size[0]}x"
                             f"{self.export_size[1]} only, not {height}x{width}: export the checkpoint "
                             "again (python -m dovit.export CKPT OUT --format onnx); today's exports run at "
                             "any size")

    def _prefix(self, pixels: torch.Tensor) -> TokenState:
        height, width = (int(v) for v in pixels.shape[-2:])
        self.check_size((height, width))
        grid = (-(-height // self.patch_size), -(-width // self.patch_size))  # the padded input's patches
        start = Stopwatch()
        outputs = [self._run("prefix", image[None]) for image in pixels]
        maps = tuple(torch.cat([o[i] for o in outputs]) for i in range(1, len(outputs[0])))
        skip = TokenState.skip_from(maps)
        # group B_1 runs inside the prefix graph: its time is the prefix's
        elapsed = start.ms()
        return TokenState(torch.cat([o[0] for o in outputs]), grid, (height, width),
                          {"embed": elapsed, "group_1": 0.0}, skip)

    def _patch_graph_input(self, patches: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """One image's patch tokens (N, E) as the aux and decoder graphs take them: a (1, h, w, E) map (format
        2, whose graphs read the grid from it), or (1, N, E) (format 1)."""
        return patches.reshape(1, *grid, patches.shape[-1]) if self.dynamic_size else patches[None]

    def _aux_logits(self, decision: int, patches: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        return torch.cat([self._run(f"aux_{decision + 1}", self._patch_graph_input(image, grid))[0]
                          for image in patches])

    def _run_group(self, group: int, prefix_tokens: torch.Tensor, patches: torch.Tensor,
                   keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        prefix_out, patches_out = prefix_tokens.clone(), patches.clone()
        p = prefix_tokens.shape[1]
        for image in range(patches.shape[0]):
            # ascending, as the PyTorch gather (token_pass.padded_kept_indices)
            kept = keep[image].nonzero().squeeze(1)
            if kept.numel() == 0:
                continue
            sequence = torch.cat([prefix_tokens[image], patches[image, kept]])[None]
            tokens = self._run(f"group_{group + 1}", sequence)[0][0]
            prefix_out[image], patches_out[image, kept] = tokens[:p], tokens[p:]
        return prefix_out, patches_out

    def _decoder_logits(self, patches: torch.Tensor, state: TokenState) -> torch.Tensor:
        skips = state.skip_tensors()
        return torch.cat([self._run("decoder", self._patch_graph_input(patches[i], state.grid),
                                    *(s[i:i + 1] for s in skips))[0] for i in range(patches.shape[0])])


@contextmanager
def single_torch_thread():
    """PyTorch at one thread while onnxruntime runs the graphs. Its own ops between them (decisions, gathers,
    the merge, the upsample) are small, and with more threads its OpenMP workers spin after each one and take
    a core from onnxruntime's pool (2 cores: ORT DoViT at xi 0.9 69.8 -> 59.2 ms per frame)."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _read_export(export_dir: str | Path):
    folder = Path(export_dir)
    if not folder.is_dir():
        raise CheckpointError(f"{export_dir}: not a folder (an export is a folder of .onnx graphs and "
                              "config.json)")
    config, metadata = read_config(folder)
    info = metadata.get("export")
    if not isinstance(info, dict) or "graphs" not in info:
        raise CheckpointError(f"{export_dir}: config.json has no export section; is this a checkpoint? "
                              "Export it first: python -m dovit.export CKPT OUT --format onnx")
    missing = [name for name in info["graphs"] if not (folder / f"{name}.onnx").is_file()]
    if missing:
        raise CheckpointError(f"{export_dir}: graphs missing: {', '.join(f'{m}.onnx' for m in missing)}")
    return config, metadata


class OrtPredictor(Predictor):
    """The ``Predictor`` over an ``OrtSegmenter``: the same API, Prediction and Trace, run on onnxruntime.

    >>> predictor = OrtPredictor.from_export("exports/camvid_dovit_vit_tiny")
    >>> prediction = predictor.predict(image, xi=0.9)
    """

    @property
    def runtime(self) -> str:
        return self.model.runtime

    @classmethod
    def from_export(cls, export_dir: str | Path, threads: int | None = None) -> OrtPredictor:
        return cls(OrtSegmenter(export_dir, threads=threads))

    def working_size(self, size: tuple[int, int] | None = None,
                     image_size: tuple[int, int] | None = None) -> tuple[int, int]:
        """As ``Predictor.working_size`` (an image's own aspect by default); ValueError for a size that an
        export of format 1 (fixed size) cannot run."""
        working = super().working_size(size, image_size)
        self.model.check_size(working)
        return working


# ---------------------------------------------------------------------------------------- timing
@dataclass
class RuntimeCase:
    """One kept-token setting timed in both runtimes: median ms per image and per-round ratios (median, min,
    max)."""

    name: str  # "xi 0.9" or "25% kept"
    kept_fraction: float  # patch tokens kept to the last group, mean over frames
    ideal_speedup: float  # dense FLOPs / these FLOPs (aux heads and decoder included)
    ms: dict[str, float]  # variant -> median ms per image
    ort_over_pytorch: dict[str, float]  # PyTorch DoViT time / ORT DoViT time (> 1: ORT is faster)
    ort_speedup: dict[str, float]  # ORT dense time / ORT DoViT time
    pytorch_speedup: dict[str, float]

    @property
    def ort_efficiency(self) -> float:
        return self.ort_speedup["median"] / self.ideal_speedup

    @property
    def pytorch_efficiency(self) -> float:
        return self.pytorch_speedup["median"] / self.ideal_speedup


def compare_runtimes(model: DoViTSegmenter, ort_model: OrtSegmenter, frames: torch.Tensor, xi: float,
                     fraction: float = 0.25, warmup: int = 2, repeats: int = 10) -> list[RuntimeCase]:
    """PyTorch and ORT, dense and DoViT, batch 1 over ``frames`` (N, 3, H, W), interleaved (A B C D A B C D
    ...): at ``xi`` (each frame its own tokens) and with ``fraction`` of random tokens kept from the first
    decision."""
    from ..core.flops import forward_flops
    from ..evaluation.timing import forced_masks, interleaved_times, ratio_summary

    rows, columns = (-(-int(side) // model.patch_size) for side in frames.shape[-2:])  # the frames' grid
    num_tokens = rows * columns
    forced = forced_masks(len(model.decision_layers), num_tokens, fraction)
    settings = {f"xi {xi:g}": dict(xi=xi), f"{fraction:.0%} kept": dict(xi=0.0, decider=Forced(forced))}
    variants = {"pytorch dense": lambda: [model(f[None], xi=1.0) for f in frames],
                "ort dense": lambda: [ort_model(f[None], xi=1.0) for f in frames]}
    for name, kwargs in settings.items():
        variants[f"pytorch {name}"] = lambda kwargs=kwargs: [model(f[None], **kwargs) for f in frames]
        variants[f"ort {name}"] = lambda kwargs=kwargs: [ort_model(f[None], **kwargs) for f in frames]
    with torch.inference_mode():
        times = interleaved_times(variants, warmup, repeats, torch.device("cpu"))
        cases = []
        for name, kwargs in settings.items():
            outputs = [ort_model(f[None], **kwargs) for f in frames]
            flops = [forward_flops(model, o.grid, o.group_tokens[0].tolist(),
                                   len(o.aux_logits)) for o in outputs]
            ideal = statistics.mean(f.dense_total for f in flops) / statistics.mean(f.total for f in flops)
            kept = statistics.mean(float(o.group_tokens[0, -1]) / num_tokens for o in outputs)
            cases.append(RuntimeCase(
                name, kept, ideal,
                {v: statistics.median(times[v]) / len(frames) for v in ("pytorch dense", "ort dense",
                                                                        f"pytorch {name}",
                                                                       f"ort {name}")},
                ratio_summary(times[f"pytorch {name}"], times[f"ort {name}"]),
                ratio_summary(times["ort dense"], times[f"ort {name}"]),
                ratio_summary(times["pytorch dense"], times[f"pytorch {name}"])))
    return cases


def format_runtime_cases(cases: list[RuntimeCase]) -> str:
    lines = ["| setting | kept to the end | ideal | PyTorch dense ms | PyTorch DoViT ms | ORT dense ms | ORT "
             "DoViT ms | ORT over PyTorch DoViT (min–max) | PyTorch efficiency | ORT efficiency |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for case in cases:
        ms = list(case.ms.values())
        ratio = case.ort_over_pytorch
        lines.append(f"| {case.name} | {case.kept_fraction:.0%} | {case.ideal_speedup:.2f}x | {ms[0]:.1f} | "
                     f"{ms[2]:.1f} | {ms[1]:.1f} | {ms[3]:.1f} | {ratio['median']:.2f}x "
                     f"({ratio['min']:.2f}–{ratio['max']:.2f}) | {case.pytorch_efficiency:.2f} | "
                     f"{case.ort_efficiency:.2f} |")
    return "\n".join(lines)
