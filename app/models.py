"""The models the studio offers: the checkpoints under ``checkpoints/`` and each ``--checkpoint``, loaded on
first use and switched per browser session (``Session.model``), each on PyTorch or, when onnxruntime is
installed, on ONNX Runtime (``Session.runtime``: the checkpoint's export, whose graphs run at any working
size, from ``--export`` or exported on first use into EXPORT_CACHE), fp32 or int8
(``dovit.deploy.quantize``). No gradio here.

A page has view slots for the most token groups of any model on the shelf (``ModelShelf.max_groups``, read
from the checkpoints' configs); a model with fewer leaves the rest empty and hidden. A model is refused when
picked if its patch size differs from the default model's (the page's working sizes are multiples of it),
with the command that opens it on its own.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dovit import OrtPredictor, Predictor
from dovit.core.checkpoint import CONFIG_NAME, WEIGHTS_NAME, CheckpointError, read_config

CHECKPOINTS_DIR = Path(__file__).resolve().parent.parent / "checkpoints"
EXPORT_CACHE = Path(os.environ.get("DOVIT_EXPORT_CACHE", Path.home() / ".cache" / "dovit" / "exports"))
RUNTIMES = {"PyTorch": "pytorch", "ONNX Runtime": "onnxruntime",  # picker label -> Session.runtime
            "ONNX Runtime int8": "onnxruntime-int8"}  # dovit.deploy.quantize


def onnxruntime_installed() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def find_checkpoints(root: str | Path) -> list[Path]:
    """The checkpoint folders (config.json + model.safetensors) directly under ``root``, sorted by name."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / CONFIG_NAME).is_file() and (p / WEIGHTS_NAME).is_file())


@dataclass
class ModelShelf:
    """Labelled checkpoints, the first one (``default``) already loaded; the rest load on first ``get``."""

    default: Predictor
    default_label: str
    paths: dict[str, Path]
    # export folders (python -m dovit.export), matched to checkpoints by source
    exports: Sequence[str | Path] = ()
    export_cache: Path = field(default_factory=lambda: EXPORT_CACHE)

    def __post_init__(self) -> None:
        self._loaded: dict[str, Predictor] = {self.default_label: self.default}
        # (label, size, int8); size None: an export whose graphs run at any working size
        self._on_ort: dict[tuple[str, tuple[int, int] | None, bool], OrtPredictor] = {}

    @classmethod
    def build(cls, default: Predictor, default_path: str | Path | None, extra: Sequence[str | Path] = (),
              root: str | Path | None = CHECKPOINTS_DIR, exports: Sequence[str | Path] = ()) -> ModelShelf:
        """The default model, each of ``extra`` and every checkpoint under ``root``; labels are folder names
        (with their parent's name when two folders share one), in that order, without repeats. ``exports``:
        ONNX export folders the ONNX Runtime choice uses for their source checkpoints."""
        paths: list[Path] = [Path(default_path).resolve()] if default_path else []
        for path in [*extra, *(find_checkpoints(root) if root else [])]:
            resolved = Path(path).resolve()
            if resolved not in paths:
                paths.append(resolved)
        names = [p.name for p in paths]
        labels = [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in paths]
        default_label = labels[0] if default_path else "default model"
        shelf = dict(zip(labels, paths, strict=False))
        if not default_path:
            shelf = {default_label: Path(""), **shelf}
        return cls(default, default_label, shelf, exports)

    @property
    def labels(self) -> list[str]:
        return list(self.paths)

    @property
    def max_groups(self) -> int:
        """The most token groups (decision layers + 1) of the default model and every checkpoint on the shelf,
        read from their configs; a config that cannot be read counts as the default's (it is refused when
        picked)."""
        counts = [len(self.default.model.decision_layers) + 1]
        for path in self.paths.values():
            if path != Path(""):
                try:
                    layers = read_config(path)[0].decision_layers
                except (CheckpointError, OSError, ValueError):
                    continue
                counts.append((len(layers) if layers is not None else 3) + 1)  # None: the paper's three
        return max(counts)

    def get(self, label: str | None, runtime: str = "pytorch",
            size: tuple[int, int] | None = None) -> Predictor:
        """The Predictor of ``label`` (None: the default) on ``runtime`` ("pytorch" or "onnxruntime", the
        latter at working ``size``, default the model's input size); ValueError for an unknown or unusable
        one."""
        if runtime in ("onnxruntime", "onnxruntime-int8"):
            return self._on_onnxruntime(label or self.default_label, size, int8=runtime.endswith("int8"))
        if runtime != "pytorch":
            raise ValueError(f"unknown runtime {runtime!r}; choose one of: {', '.join(RUNTIMES.values())}")
        if label is None or label == self.default_label:
            return self.default
        if label not in self.paths:
            raise ValueError(f"unknown model {label!r}; choose one of: {', '.join(self.labels)}")
        if label not in self._loaded:
            predictor = Predictor.from_checkpoint(self.paths[label])
            self._check(label, predictor)
            self._loaded[label] = predictor
        return self._loaded[label]

    def _check(self, label: str, predictor: Predictor) -> None:
        if predictor.model.patch_size != self.default.model.patch_size:
            raise ValueError(
                f"{label} has {predictor.model.patch_size}-px patches; this page's working sizes are for "
                f"{self.default.model.patch_size}-px: open it on its own with "
                f"python app.py --checkpoint {self.paths[label]}")

    def _on_onnxruntime(self, label: str, size: tuple[int, int] | None, int8: bool = False) -> OrtPredictor:
        """The model's ONNX export (``int8``: its int8 export) for working ``size`` on onnxruntime: a matching
        --export folder (one of any size, or an older fixed-size one at ``size``), else one exported on first
        use (about half a minute for ViT-T on 2 cores; int8 about a minute) into the export cache, reused for
        every size after."""
        if not onnxruntime_installed():
            raise ValueError("ONNX Runtime is not installed: pip install onnxruntime onnx onnxscript")
        size = self.get(label).working_size(size)
        for key in ((label, None, int8), (label, size, int8)):
            if key in self._on_ort:
                return self._on_ort[key]
        path = self.paths.get(label)
        if path is None or path == Path("") or not path.is_dir():
            raise ValueError(f"{label} has no checkpoint folder to export; serve it with --checkpoint PATH")
        predictor = OrtPredictor.from_export(self._export_folder(path, size, int8), threads=_torch_threads())
        self._on_ort[(label, None if predictor.model.dynamic_size else size, int8)] = predictor
        return predictor

    def _export_folder(self, checkpoint: Path, size: tuple[int, int], int8: bool = False) -> Path:
        from dovit.deploy.onnx_graphs import EXPORT_FORMAT, ExportConfig, export_onnx

        for folder in self.exports:
            info = read_config(folder)[1].get("export", {})
            fits = info.get("dynamic_size", False) or tuple(info.get("size", ())) == size
            if Path(info.get("source", "")).resolve() == checkpoint and fits and ("quantize" in info) == int8:
                return Path(folder)
        weights = checkpoint / WEIGHTS_NAME
        # a retrained checkpoint gets a new export; its graphs, traced at the input size, run at every size
        stamp = f"{checkpoint}:{weights.stat().st_mtime_ns}:format {EXPORT_FORMAT}"
        folder = self.export_cache / f"{checkpoint.name}-{hashlib.sha1(stamp.encode()).hexdigest()[:10]}"
        if int8:
            return _int8_folder(checkpoint, folder.with_name(folder.name + "-int8"))
        if not (folder / CONFIG_NAME).is_file():
            export_onnx(ExportConfig(str(checkpoint), str(folder), check=False), progress=False)
        return folder


def _int8_folder(checkpoint: Path, folder: Path) -> Path:
    """The int8 export in ``folder``, quantized on first use (dovit.deploy.quantize; about a minute for
    ViT-T), calibrated at the checkpoint's input size."""
    if not (folder / CONFIG_NAME).is_file():
        from dovit.deploy.quantize import int8_export

        int8_export(checkpoint, folder, tuple(read_config(checkpoint)[0].input_size))
    return folder


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()  # the same threads as the PyTorch forwards, so that latencies compare
