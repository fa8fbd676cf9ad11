"""Checkpoints: safetensors weights + a JSON config. Loading never unpickles anything.

A checkpoint is a directory holding ``model.safetensors`` and ``config.json``; a path to the
``.safetensors`` file itself works too (the JSON must sit beside it with the same stem or as config.json).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import ModelConfig
from .model import DoViTSegmenter

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, or does not match the model its config describes."""


def save_checkpoint(model: DoViTSegmenter, directory: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``directory/model.safetensors`` and ``directory/config.json``; returns the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_NAME), metadata={"format": "dovit", "version": str(FORMAT_VERSION)})
    document = {"format_version": FORMAT_VERSION, "model": model.config.to_dict(), "metadata": metadata or {}}
    (directory / CONFIG_NAME).write_text(json.dumps(document, indent=2) + "\n")
    return directory


def _resolve(path: str | Path) -> tuple[Path, Path]:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path} (expected a folder with {WEIGHTS_NAME} and {CONFIG_NAME})")
    if path.is_dir():
        return path / WEIGHTS_NAME, path / CONFIG_NAME
    if path.suffix in (".pt", ".pth", ".pkl", ".ckpt", ".bin"):
        raise CheckpointError(
            f"{path}: refusing to load a pickle-based file; DoViT checkpoints are safetensors + JSON "
            "(a pickle can run arbitrary code when loaded)"
        )
    config = path.with_suffix(".json")
    return path, config if config.exists() else path.parent / CONFIG_NAME


def read_config(path: str | Path) -> tuple[ModelConfig, dict[str, Any]]:
    """The ModelConfig and metadata of a checkpoint, without loading weights."""
    _, config_path = _resolve(path)
    if not config_path.exists():
        raise CheckpointError(f"{path}: no config JSON found (looked for {config_path})")
    try:
        document = json.loads(config_path.read_text())
        config = ModelConfig.from_dict(document["model"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{config_path}: not a valid DoViT config ({error})") from error
    return config, document.get("metadata", {})


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> DoViTSegmenter:
    """Build the model described by the checkpoint's config and load its weights (strict)."""
    weights_path, _ = _resolve(path)
    config, metadata = read_config(path)
    if not weights_path.exists():
        raise CheckpointError(f"{path}: weights file {weights_path} not found")
    try:
        state = load_file(str(weights_path), device=str(map_location))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{weights_path}: not a readable safetensors file ({error})") from error
    model = DoViTSegmenter(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong_shape:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing (e.g. {missing[:3]})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
        if wrong_shape:
            k = wrong_shape[0]
            problems.append(f"{len(wrong_shape)} with wrong shape (e.g. {k}: {tuple(state[k].shape)} vs {tuple(expected[k].shape)})")
        raise CheckpointError(f"{weights_path} does not match its config ({config.backbone}): " + "; ".join(problems))
    model.load_state_dict(state, strict=True)
    model.checkpoint_metadata = metadata
    return model.eval()
