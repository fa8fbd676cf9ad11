"""int8 stage graphs: an fp32 export (``dovit.deploy.onnx_graphs``) quantized with onnxruntime's
quantization tools (``python -m dovit.export ... --quantize int8``).

Each stage graph is quantized on its own, so the token pass between graphs is unchanged: the groups keep
their dynamic token axis and ``OrtSegmenter`` runs an int8 folder as it runs an fp32 one. Two modes:
``static`` (QDQ, int8 weights per channel, uint8 activations with ranges from calibration frames of the
training set: each graph sees the inputs it gets in the token pass) and ``dynamic`` (int8 weights per
channel, activation ranges taken per call). The aux heads stay fp32 (their confidences decide which tokens
stop; a shifted confidence moves the kept counts), as does any graph named in ``fp32_graphs``, and the
prefix graph's Convs (``fp32_convs``): the conv stem, or a hybrid's whole conv encoder (its four skip maps
come from fp32 Convs; the prefix's transformer MatMuls are quantized).
The folder's config.json keeps the export section and adds ``quantize``; ``quantization.json`` is the report.
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..core.checkpoint import CONFIG_NAME, CheckpointError, atomic_write, load_checkpoint
from ..core.stopwatch import Stopwatch
from ..data import DEFAULT_DATA_ROOT
from .onnx_graphs import ExportConfig, ExportError, export_onnx

MODES = ("static", "dynamic")
REPORT_NAME = "quantization.json"
DEFAULT_FP32 = ("aux_",)  # graph-name prefixes kept fp32


class QuantizeError(ExportError):
    """What the int8 export cannot do (a missing tool, missing calibration frames); the message says why."""


@dataclass
class QuantizeConfig:
    mode: str = "dynamic"
    per_channel: bool = True
    frames: int = 16  # calibration frames, spread over the split
    data_root: str = DEFAULT_DATA_ROOT
    split: str = "train"
    fp32_graphs: tuple[str, ...] = DEFAULT_FP32  # graph names (or name prefixes) left fp32
    op_types: tuple[str, ...] = ("MatMul", "Conv")
    # the prefix graph's Convs stay fp32 (the conv stem, a hybrid's encoder): int8 in the conv stem cut
    # agreement to 97.4 % (worst frame 91 %), 99.7 % without
    fp32_convs: tuple[str, ...] = ("prefix",)


@dataclass
class QuantizeReport:
    """int8 against fp32 PyTorch on the calibration frames, at the default xi and at xi = 1."""

    mode: str
    per_channel: bool
    int8_graphs: list[str]
    fp32_graphs: list[str]
    frames: int
    xi: float
    pixel_agreement: float  # mean share of mask pixels equal to fp32 PyTorch's, at xi
    min_pixel_agreement: float  # the worst frame's
    dense_pixel_agreement: float  # at xi = 1 (every token through every group)
    kept_fp32: float  # mean share of patch tokens kept to the last group, fp32 PyTorch
    kept_int8: float
    megabytes_fp32: float
    megabytes_int8: float
    seconds: float = 0.0
    onnxruntime: str = ""

    def to_json(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        return (
            f"int8 ({self.mode}{', per-channel' if self.per_channel else ''}) vs fp32 PyTorch on "
            f"{self.frames} "
            f"calibration frames: {self.pixel_agreement:.2%} of pixels agree at xi {self.xi:g} (worst frame "
            f"{self.min_pixel_agreement:.2%}), {self.dense_pixel_agreement:.2%} at xi 1; kept to the end "
            f"{self.kept_int8:.1%} (fp32 {self.kept_fp32:.1%}); graphs {self.megabytes_fp32:.1f} -> "
            f"{self.megabytes_int8:.1f} MB; fp32: {', '.join(self.fp32_graphs) or 'none'}"
        )


def quantization_tools():
    """onnxruntime.quantization, or a QuantizeError saying what to install."""
    try:
        import onnx  # noqa: F401
        from onnxruntime import quantization
    except ImportError as error:
        raise QuantizeError(
            f"--quantize int8 needs onnxruntime's quantization tools and onnx ({error}): "
            "pip install 'onnxruntime>=1.16' onnx"
        ) from error
    if not all(
        hasattr(quantization, name)
        for name in ("quantize_static", "quantize_dynamic", "CalibrationDataReader")
    ):
        raise QuantizeError(
            "this onnxruntime's quantization module lacks quantize_static/quantize_dynamic: "
            "pip install -U 'onnxruntime>=1.16'"
        )
    return quantization


def calibration_frames(
    data_root: str | Path, count: int, model, split: str = "train", size: tuple[int, int] | None = None
) -> torch.Tensor:
    """``count`` frames spread evenly over ``split``, normalised at ``size`` (default: input size)."""
    from ..data import EvalTransform, build_dataset

    if not Path(data_root).is_dir():
        raise QuantizeError(
            f"no calibration frames: {data_root} is not a folder (pass --calibration-data ROOT, "
            "a CamVid root with train/)"
        )
    config = model.config
    try:
        transform = EvalTransform(tuple(size or config.input_size), config.mean, config.std)
        dataset = build_dataset("camvid", str(data_root), split, transform)
    except (ValueError, OSError) as error:
        raise QuantizeError(f"no calibration frames in {data_root}: {error}") from error
    if len(dataset) == 0 or count < 1:
        raise QuantizeError(
            f"no calibration frames: {data_root} {split} has {len(dataset)}, asked for {count}"
        )
    indices = np.linspace(0, len(dataset) - 1, min(count, len(dataset))).round().astype(int)
    return torch.stack([dataset[int(index)][0] for index in indices])


def record_stage_inputs(
    fp32_dir: str | Path, frames: torch.Tensor, xis: tuple[float, ...]
) -> dict[str, list]:
    """Each graph's feeds (name -> list of {input: array}) as the fp32 token pass gives them on ``frames``."""
    from .onnx_runtime import OrtSegmenter

    model = OrtSegmenter(fp32_dir)
    feeds: dict[str, list] = {name: [] for name in model.sessions}
    run = model._run

    def recording(name, *inputs):
        session = model.sessions[name]
        feeds[name].append(
            {
                arg.name: np.ascontiguousarray(tensor.detach().numpy())
                for arg, tensor in zip(session.get_inputs(), inputs, strict=False)
            }
        )
        return run(name, *inputs)

    model._run = recording
    with torch.inference_mode():
        for xi in xis:
            for frame in frames:
                model(frame[None], xi=xi)
    return feeds


def keeps_fp32(name: str, patterns: tuple[str, ...]) -> bool:
    return any(name == p or (p.endswith("_") and name.startswith(p)) for p in patterns)


def quantize_graph(source: Path, target: Path, config: QuantizeConfig, feeds: list[dict]) -> None:
    """One graph to int8. static: every op of ``config.op_types`` QDQ over ``feeds``. dynamic: MatMul dynamic
    (ranges per call), the rest of ``config.op_types`` (Conv: no fast dynamic kernel) static over ``feeds``.
    """
    import onnx

    quantization = quantization_tools()
    present = {node.op_type for node in onnx.load(str(source), load_external_data=False).graph.node}
    wanted = [
        op
        for op in config.op_types
        if op in present and not (op == "Conv" and keeps_fp32(source.stem, config.fp32_convs))
    ]
    dynamic = ["MatMul"] if config.mode == "dynamic" and "MatMul" in wanted else []
    static = [op for op in wanted if op not in dynamic]
    if not wanted:
        shutil.copyfile(source, target)
        return
    with tempfile.TemporaryDirectory() as scratch:
        between = Path(scratch) / "static.onnx" if dynamic else target
        if static:
            _quantize_static(quantization, source, between, config, static, feeds)
        if dynamic:
            quantization.quantize_dynamic(
                str(between if static else source),
                str(target),
                weight_type=quantization.QuantType.QInt8,
                per_channel=config.per_channel,
                op_types_to_quantize=dynamic,
            )


def _quantize_static(
    quantization, source: Path, target: Path, config: QuantizeConfig, op_types: list[str], feeds: list[dict]
) -> None:
    if not feeds:
        raise QuantizeError(
            f"{source.stem}: static quantization needs calibration inputs, none were recorded"
        )

    class Reader(quantization.CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(feeds)

        def get_next(self):
            return next(self.items, None)

    quantization.quantize_static(
        str(source),
        str(target),
        Reader(),
        quant_format=quantization.QuantFormat.QDQ,
        activation_type=quantization.QuantType.QUInt8,
        weight_type=quantization.QuantType.QInt8,
        per_channel=config.per_channel,
        op_types_to_quantize=op_types,
        calibrate_method=quantization.CalibrationMethod.MinMax,
    )


def quantize_folder(
    fp32_dir: str | Path, output: str | Path, config: QuantizeConfig, frames: torch.Tensor, xi: float
) -> list[str]:
    """Every graph of the fp32 export ``fp32_dir`` into ``output``: int8, or copied where kept fp32. Returns
    int8 graphs' names. config.json gains a ``quantize`` section."""
    if config.mode not in MODES:
        raise QuantizeError(f"unknown quantization mode {config.mode!r}; choose one of: {', '.join(MODES)}")
    quantization_tools()
    fp32_dir, output = Path(fp32_dir), Path(output)
    output.mkdir(parents=True, exist_ok=True)
    document = json.loads((fp32_dir / CONFIG_NAME).read_text())
    graphs = document["metadata"]["export"]["graphs"]
    feeds = record_stage_inputs(fp32_dir, frames, (xi, 1.0))
    int8 = []
    for name in graphs:
        source, target = fp32_dir / f"{name}.onnx", output / f"{name}.onnx"
        if keeps_fp32(name, config.fp32_graphs):
            shutil.copyfile(source, target)
            continue
        try:
            quantize_graph(source, target, config, feeds.get(name, []))
        except Exception as error:  # onnxruntime raises many kinds; one line names the graph and the cause
            raise QuantizeError(
                f"{name}: quantization failed ({' '.join(str(error).split())[:400]})"
            ) from error
        int8.append(name)
    document["metadata"]["export"]["quantize"] = {
        "dtype": "int8",
        "mode": config.mode,
        "per_channel": config.per_channel,
        "int8_graphs": int8,
    }
    atomic_write(
        output / CONFIG_NAME, lambda handle: handle.write((json.dumps(document, indent=2) + "\n").encode())
    )
    return int8


@dataclass
class _Agreement:
    pixels: list[float] = field(default_factory=list)
    kept_reference: list[float] = field(default_factory=list)
    kept: list[float] = field(default_factory=list)


def mask_agreement(reference, model, frames: torch.Tensor, xi: float) -> _Agreement:
    """Per frame: the share of mask pixels ``model`` labels as ``reference`` does, and each one's share of
    tokens kept to the last group."""
    result = _Agreement()
    with torch.inference_mode():
        for frame in frames:
            want, got = reference(frame[None], xi=xi), model(frame[None], xi=xi)
            result.pixels.append(float((want.logits.argmax(1) == got.logits.argmax(1)).float().mean()))
            tokens = want.grid[0] * want.grid[1]
            result.kept_reference.append(float(want.group_tokens[0, -1]) / tokens)
            result.kept.append(float(got.group_tokens[0, -1]) / tokens)
    return result


def build_report(
    checkpoint: str | Path,
    output: Path,
    config: QuantizeConfig,
    frames: torch.Tensor,
    xi: float,
    fp32_dir: Path,
    int8: list[str],
) -> QuantizeReport:
    """The agreement of the int8 folder ``output`` with fp32 PyTorch on ``frames``."""
    import onnxruntime

    from .onnx_runtime import OrtSegmenter

    reference, model = load_checkpoint(checkpoint).eval(), OrtSegmenter(output)
    at_xi, dense = mask_agreement(reference, model, frames, xi), mask_agreement(reference, model, frames, 1.0)
    graphs = json.loads((output / CONFIG_NAME).read_text())["metadata"]["export"]["graphs"]
    megabytes = [
        sum((folder / f"{g}.onnx").stat().st_size for g in graphs) / 2**20 for folder in (fp32_dir, output)
    ]
    report = QuantizeReport(
        config.mode,
        config.per_channel,
        int8,
        [g for g in graphs if g not in int8],
        len(frames),
        xi,
        statistics.mean(at_xi.pixels),
        min(at_xi.pixels),
        statistics.mean(dense.pixels),
        statistics.mean(at_xi.kept_reference),
        statistics.mean(at_xi.kept),
        *megabytes,
        onnxruntime=onnxruntime.__version__,
    )
    return report


def export_int8(
    export: ExportConfig, config: QuantizeConfig, frames: torch.Tensor | None = None, progress: bool = True
) -> QuantizeReport:
    """The checkpoint exported fp32 into a scratch folder, quantized into ``export.output``, the agreement
    measured and written (``quantization.json``). ``frames``: calibration frames (default: ``config.frames``
    from ``config.data_root``'s ``config.split``)."""
    start = Stopwatch()
    quantization_tools()  # refuse before the minute of fp32 export
    output = Path(export.output)
    if output.exists() and (
        not output.is_dir()
        or any(p.name not in (CONFIG_NAME, REPORT_NAME) and p.suffix != ".onnx" for p in output.iterdir())
    ):
        raise QuantizeError(
            f"{output} exists and holds other files: export into a new or earlier export's folder"
        )
    try:
        model = load_checkpoint(export.checkpoint)
    except (CheckpointError, OSError) as error:
        raise QuantizeError(f"cannot load {export.checkpoint}: {' '.join(str(error).split())}") from error
    if frames is None:
        size = export.size or model.config.input_size
        frames = calibration_frames(config.data_root, config.frames, model, config.split, size)
    xi = float(model.config.default_xi)
    with tempfile.TemporaryDirectory() as scratch:
        fp32_dir = Path(scratch) / "fp32"
        export_onnx(
            ExportConfig(export.checkpoint, str(fp32_dir), export.size, export.opset, export.check),
            progress=progress,
        )
        if progress:
            print(f"quantizing ({config.mode}) with {len(frames)} calibration frames", flush=True)
        int8 = quantize_folder(fp32_dir, output, config, frames, xi)
        report = build_report(export.checkpoint, output, config, frames, xi, fp32_dir, int8)
    report.seconds = start.seconds()
    text = json.dumps(report.to_json(), indent=2) + "\n"
    atomic_write(output / REPORT_NAME, lambda handle: handle.write(text.encode()))
    return report


EXAMPLES = Path(__file__).resolve().parents[2] / "assets"


def frames_for(
    model,
    size: tuple[int, int],
    data_root: str | Path = QuantizeConfig.data_root,
    count: int = QuantizeConfig.frames,
) -> torch.Tensor:
    """Calibration frames at ``size``: CamVid's training frames where the data set is, else the example
    images in assets/ (a studio served without the data set)."""
    if Path(data_root).is_dir():
        return calibration_frames(data_root, count, model, "train", size)
    import cv2

    from ..core.preprocess import preprocess_image

    images = [cv2.imread(str(path))[..., ::-1] for path in sorted(EXAMPLES.glob("*.png"))]
    if not images:
        raise QuantizeError(f"no calibration frames: neither {data_root} nor example images in {EXAMPLES}")
    config = model.config
    return torch.stack(
        [preprocess_image(np.ascontiguousarray(image), size, config.mean, config.std) for image in images]
    )


def int8_export(checkpoint: str | Path, output: str | Path, size: tuple[int, int]) -> QuantizeReport:
    """The default int8 export of ``checkpoint`` at ``size`` (the studio's first use of its int8 runtime)."""
    model = load_checkpoint(checkpoint)
    return export_int8(
        ExportConfig(str(checkpoint), str(output), size, check=False),
        QuantizeConfig(),
        frames=frames_for(model, size),
        progress=False,
    )


# ---------------------------------------------------------------------------------------- command line
def add_quantize_args(parser) -> None:
    """``python -m dovit.export``'s int8 flags."""
    group = parser.add_argument_group("int8 (--quantize int8)")
    group.add_argument(
        "--quantize",
        choices=("none", "int8"),
        default="none",
        help="int8: every stage graph but the aux heads quantized with onnxruntime.quantization "
        "(per-channel int8 weights), and its mask agreement with fp32 PyTorch reported",
    )
    group.add_argument(
        "--quantize-mode",
        choices=MODES,
        default="dynamic",
        help="dynamic: MatMul ranges per call, Conv static; static: all QDQ with calibrated ranges",
    )
    group.add_argument(
        "--calibration-data",
        default=DEFAULT_DATA_ROOT,
        help="CamVid root whose --calibration-split gives the calibration frames",
    )
    group.add_argument("--calibration-split", default="train", help="split of the calibration frames")
    group.add_argument(
        "--calibration-frames", type=int, default=16, help="calibration frames, spread over the split"
    )
    group.add_argument(
        "--keep-fp32",
        nargs="*",
        default=list(DEFAULT_FP32),
        metavar="GRAPH",
        help="graphs left fp32 (a name, or a prefix ending in _)",
    )


def quantize_config(args) -> QuantizeConfig | None:
    if args.quantize == "none":
        return None
    return QuantizeConfig(
        args.quantize_mode,
        True,
        args.calibration_frames,
        args.calibration_data,
        args.calibration_split,
        tuple(args.keep_fp32),
    )


def run_int8_export(export: ExportConfig, config: QuantizeConfig) -> int:
    """The CLI's int8 path: export, quantize, print the report; exit 2 with one line for what it cannot do."""
    import sys

    try:
        report = export_int8(export, config)
    except ExportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"exported {export.checkpoint} -> {export.output} as int8 in {report.seconds:.0f} s")
    print(report.summary())
    print(f"report: {Path(export.output) / REPORT_NAME}")
    return 0
