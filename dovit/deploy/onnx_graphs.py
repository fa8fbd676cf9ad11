"""Export a DoViT checkpoint to ONNX graphs that keep the token pass: one graph per stage, decisions between.

The graphs take any working height and width (torch.export's dynamic dimensions): the prefix graph pads,
embeds and resamples the position embedding as the PyTorch model does, and the aux heads and the decoder read
the token grid from their input's shape, a (1, h, w, E) map. So one export serves every image at its own
aspect (``dovit.core.preprocess.aspect_working_size``). Notes and measurements: docs/library_notes.md.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..core.checkpoint import CONFIG_NAME, CheckpointError, atomic_write, load_checkpoint
from ..core.model import DoViTSegmenter, TokenState
from ..core.stopwatch import Stopwatch

# the most patch tokens a group graph takes: a 4096 x 4096 input (config.MAX_INPUT_SIDE) in 16-px patches
MAX_TOKENS = 256 * 256
OPSET = 18  # the first opset whose Resize has antialias (timm's position-embedding resampling)
EXPORT_FORMAT = 2  # 2: graphs of any working size (1: the export's size only)


class ExportError(ValueError):
    """A checkpoint, size or option the ONNX export cannot handle; the message says which and why."""


@dataclass
class ExportConfig:
    checkpoint: str
    output: str
    # the working (height, width) the graphs are traced and checked at (they run at any size); None: the
    # checkpoint's input size
    size: tuple[int, int] | None = None
    opset: int = OPSET
    check: bool = True  # run each graph once in onnxruntime against PyTorch after export


@dataclass
class ExportResult:
    output: Path
    graphs: list[str]
    size: tuple[int, int]
    grid: tuple[int, int]
    seconds: float
    max_abs_error: dict[str, float] = field(default_factory=dict)  # per graph, onnxruntime vs PyTorch


class _Prefix(nn.Module):
    def __init__(self, model: DoViTSegmenter) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor):
        state = self.model.prefix(pixels)
        return (state.tokens, *state.skip_tensors())


class _Group(nn.Module):
    """Blocks of one group over a gathered sequence (1, P + K, E): K kept tokens, no padding, no mask."""

    def __init__(self, blocks: nn.Module) -> None:
        super().__init__()
        self.blocks = blocks

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            tokens = block(tokens)
        return tokens


class _Aux(nn.Module):
    """Aux head ``decision`` on a (1, h, w, E) patch map: the grid comes from the input's shape."""

    def __init__(self, model: DoViTSegmenter, decision: int) -> None:
        super().__init__()
        self.model, self.decision = model, decision

    def forward(self, patch_map: torch.Tensor) -> torch.Tensor:
        grid = (patch_map.shape[1], patch_map.shape[2])
        return self.model._aux_logits(self.decision, patch_map.flatten(1, 2), grid)


class _Decoder(nn.Module):
    """The decoder on a (1, h, w, E) patch map and the stem's skip maps: the grid comes from the input."""

    def __init__(self, model: DoViTSegmenter) -> None:
        super().__init__()
        self.model = model

    def forward(self, patch_map: torch.Tensor, *skips: torch.Tensor) -> torch.Tensor:
        grid = (patch_map.shape[1], patch_map.shape[2])
        patches = patch_map.flatten(1, 2)
        # input_size: unused by the decoder (the logits' upsample runs outside the graph)
        state = TokenState(patches, grid, grid, skip=TokenState.skip_from(skips))
        return self.model._decoder_logits(patches, state)


def stage_modules(model: DoViTSegmenter,
                  size: tuple[int, int]) -> dict[str, tuple[nn.Module, tuple, dict | None]]:
    """name -> (module, example inputs, dynamic shapes) for every graph of ``model``, traced at working
    ``size``; every height, width and token grid is dynamic (``Dim.AUTO``: torch.export ties the skip maps'
    sizes to the grid's)."""
    pixels = torch.zeros(1, 3, *size)
    with torch.no_grad():
        state = model.prefix(pixels)
    p, grid = model.num_prefix_tokens, state.grid
    patches = state.tokens[:, p:].contiguous()
    patch_map = patches.reshape(1, *grid, model.embed_dim)
    spatial = {2: torch.export.Dim.AUTO, 3: torch.export.Dim.AUTO}
    grid_dims = {1: torch.export.Dim.AUTO, 2: torch.export.Dim.AUTO}
    stages = {"prefix": (_Prefix(model), (pixels,), (spatial,))}
    kept = max(2, patches.shape[1] // 2)
    for group in range(1, len(model.group_bounds)):
        first, last = model.group_bounds[group]
        tokens = torch.randn(1, p + kept, model.embed_dim)
        # at least one kept token beside the prefix tokens (a group with none left is skipped at run time)
        dims = ({1: torch.export.Dim(f"tokens_{group}", min=max(2, p + 1), max=p + MAX_TOKENS)},)
        stages[f"group_{group + 1}"] = (_Group(model.vit.blocks[first:last]), (tokens,), dims)
    for decision in range(len(model.decision_layers)):
        stages[f"aux_{decision + 1}"] = (_Aux(model, decision), (patch_map,), (grid_dims,))
    skips = state.skip_tensors()
    # dynamic shapes follow forward's signature: the patch map, then one tuple for *skips (if any)
    dims = (grid_dims, tuple(spatial for _ in skips)) if skips else (grid_dims,)
    stages["decoder"] = (_Decoder(model), (patch_map, *skips), dims)
    return stages


def export_onnx(config: ExportConfig, progress: bool = True) -> ExportResult:
    """Write every stage's graph and config.json into ``config.output``; ExportError for what cannot be
    exported."""
    start = Stopwatch()
    try:
        model = load_checkpoint(config.checkpoint).eval()
    except (CheckpointError, OSError) as error:
        raise ExportError(f"cannot load {config.checkpoint}: {' '.join(str(error).split())}") from error
    if not model.decision_layers:
        raise ExportError(f"{config.checkpoint} has no decision layers: export it as a dense model elsewhere")
    if config.opset < OPSET:
        raise ExportError(f"--opset {config.opset}: the graphs need opset {OPSET} or later")
    size = tuple(int(v) for v in (config.size or model.config.input_size))
    if min(size) < model.patch_size:
        raise ExportError(f"--size {size}: smaller than one {model.patch_size}-pixel patch")
    output = Path(config.output)
    if output.exists() and (not output.is_dir() or any(p.name != CONFIG_NAME and p.suffix != ".onnx"
                                                       for p in output.iterdir())):
        raise ExportError(f"{output} exists and holds other files: export into a new or earlier export's "
                          "folder")
    output.mkdir(parents=True, exist_ok=True)
    stages = stage_modules(model, size)
    errors = {}
    for name, (module, inputs, dynamic) in stages.items():
        if progress:
            print(f"exporting {name}.onnx", flush=True)
        _export_graph(module, inputs, dynamic, output / f"{name}.onnx", config.opset)
        if config.check:
            errors[name] = check_graph(output / f"{name}.onnx", module, inputs)
    grid = model.prefix(torch.zeros(1, 3, *size)).grid
    document = {"format_version": 1, "model": model.config.to_dict(),
                "metadata": {**model.checkpoint_metadata,
                             "export": {"format": EXPORT_FORMAT, "source": str(config.checkpoint),
                                        "size": list(size), "dynamic_size": True,
                                        "grid": list(grid), "opset": config.opset, "graphs": sorted(stages),
                                        "torch": torch.__version__}}}
    atomic_write(output / CONFIG_NAME, lambda handle: handle.write((json.dumps(document,
                                                                               indent=2) + "\n").encode()))
    return ExportResult(output, sorted(stages), size, grid, start.seconds(), errors)


def _export_graph(module: nn.Module, inputs: tuple, dynamic: tuple | None, path: Path, opset: int) -> None:
    import contextlib
    import io

    skips = ["skip"] if len(inputs) == 2 else [f"skip_{i}" for i in range(1, len(inputs))]
    names = ["pixels"] if isinstance(module, _Prefix) else ["tokens"] if isinstance(module, _Group) else \
        ["patches", *skips]
    try:
        # the exporter narrates every step on stdout and warns about its own internals: keep the CLI's output
        # ours with gradients on, the model takes timm's own position-embedding path (its no-grad cache is
        # eager-only)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.enable_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(module, inputs, dynamo=True, opset_version=opset, input_names=names,
                                        dynamic_shapes=dynamic, external_data=False, verbose=False)
            program.save(str(path))
    except Exception as error:  # the exporter raises many kinds; one line names the stage and the cause
        raise ExportError(f"{path.stem}: the ONNX exporter failed "
                          f"({' '.join(str(error).split())[:400]})") from error


def check_graph(path: Path, module: nn.Module, inputs: tuple) -> float:
    """Largest absolute difference between onnxruntime's and PyTorch's outputs for ``inputs``."""
    import numpy as np
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {arg.name: tensor.numpy() for arg, tensor in zip(session.get_inputs(), inputs, strict=False)}
    with torch.no_grad():
        expected = module(*inputs)
    expected = expected if isinstance(expected, tuple) else (expected,)
    return max(float(np.abs(got - want.numpy()).max()) for got, want in zip(session.run(None, feeds),
                                                                            expected, strict=False))
