"""The models the studio offers: the checkpoints under ``checkpoints/`` and each ``--checkpoint``, loaded on
first use and switched per browser session (``Session.model``). No gradio here.

A page is laid out for one number of token groups (its view slots), so a model is offered only when it has
the default model's number of decision layers and patch size; any other is refused when picked, with the
command that opens it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from dovit import Predictor
from dovit.checkpoint import CONFIG_NAME, WEIGHTS_NAME

CHECKPOINTS_DIR = Path(__file__).resolve().parent.parent / "checkpoints"


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

    def __post_init__(self) -> None:
        self._loaded: dict[str, Predictor] = {self.default_label: self.default}

    @classmethod
    def build(cls, default: Predictor, default_path: str | Path | None, extra: Sequence[str | Path] = (),
              root: str | Path | None = CHECKPOINTS_DIR) -> "ModelShelf":
        """The default model, each of ``extra`` and every checkpoint under ``root``; labels are folder names
        (with their parent's name when two folders share one), in that order, without repeats."""
        paths: list[Path] = [Path(default_path).resolve()] if default_path else []
        for path in [*extra, *(find_checkpoints(root) if root else [])]:
            resolved = Path(path).resolve()
            if resolved not in paths:
                paths.append(resolved)
        names = [p.name for p in paths]
        labels = [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in paths]
        default_label = labels[0] if default_path else "default model"
        shelf = dict(zip(labels, paths))
        if not default_path:
            shelf = {default_label: Path(""), **shelf}
        return cls(default, default_label, shelf)

    @property
    def labels(self) -> list[str]:
        return list(self.paths)

    def get(self, label: str | None) -> Predictor:
        """The Predictor of ``label`` (None: the default); ValueError for an unknown or unusable one."""
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
        groups, default_groups = len(predictor.model.decision_layers), len(self.default.model.decision_layers)
        if groups != default_groups or predictor.model.patch_size != self.default.model.patch_size:
            raise ValueError(
                f"{label} has {groups} decision layers and {predictor.model.patch_size}-px patches; this page shows "
                f"{default_groups} and {self.default.model.patch_size}-px: open it on its own with "
                f"python app.py --checkpoint {self.paths[label]}")
