"""Checkpoints: safetensors weights + a JSON config. Loading never unpickles anything.

A checkpoint is a directory holding ``model.safetensors`` and ``config.json``; a path to the
``.safetensors`` file itself works too (the JSON must sit beside it with the same stem or as config.json).

Saving is crash-safe: both files are written to a hidden sibling folder and fsynced, then that folder
replaces the checkpoint by rename, so a reader sees the old pair or the new pair, never a mix or a
half-written file. POSIX cannot rename a folder over a non-empty one, and a versioned folder + symlink
would change what users see on disk (and breaks on Windows), so the old folder is first renamed aside to
``.NAME.previous``; a kill between the two renames leaves only that complete copy, which loading accepts
and the next save cleans up.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .config import ModelConfig
from .model import DoViTSegmenter

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"  # a checkpoint folder's model card
FORMAT_VERSION = 1
MAX_CONFIG_BYTES = 4 * 2**20  # a 10 000-class config with names and colours is ~0.5 MB


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, or does not match the model its config describes."""


# ------------------------------------------------------------------------------------------ saving
def save_checkpoint(model: DoViTSegmenter, directory: str | Path,
                    metadata: dict[str, Any] | None = None) -> Path:
    """Write ``directory/model.safetensors`` and ``directory/config.json`` as one unit; returns the directory.

    metadata: JSON-serialisable facts about the run (stage, step, validation). An existing ``directory``
    must hold only a checkpoint and its model card (README.md, kept); anything else raises CheckpointError.
    """
    directory = Path(os.path.abspath(directory))
    model.config.validate()
    document = {"format_version": FORMAT_VERSION, "model": model.config.to_dict(), "metadata": metadata or {}}
    text = json.dumps(document, indent=2, allow_nan=False) + "\n"  # fails here, before anything is written
    if directory.is_dir():
        kept = (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME)
        others = sorted(p.name for p in directory.iterdir() if p.name not in kept)
        if others:
            raise CheckpointError(f"{directory} holds files besides a checkpoint ({', '.join(others[:5])}); "
                                  "saving replaces the whole folder, so save into an empty or "
                                  "checkpoint-only folder")
    elif directory.exists():
        raise CheckpointError(f"{directory} exists and is not a folder")
    directory.parent.mkdir(parents=True, exist_ok=True)
    partial, previous = _sibling(directory, "partial"), _sibling(directory, "previous")
    shutil.rmtree(partial, ignore_errors=True)  # left by a save that was killed
    partial.mkdir()
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, str(partial / WEIGHTS_NAME), metadata={"format": "dovit",
                                                            "version": str(FORMAT_VERSION)})
    _fsync(partial / WEIGHTS_NAME)
    atomic_write(partial / CONFIG_NAME, lambda handle: handle.write(text.encode()))
    if (directory / CARD_NAME).is_file():  # the model card stays with the weights it describes
        shutil.copy2(directory / CARD_NAME, partial / CARD_NAME)
    _fsync(partial)
    if directory.exists():
        shutil.rmtree(previous, ignore_errors=True)  # a complete older copy, left by a kill after the swap
        os.replace(directory, previous)
    os.replace(partial, directory)
    _fsync(directory.parent)
    shutil.rmtree(previous, ignore_errors=True)
    return directory


def atomic_write(path: str | Path, write: Callable[[BinaryIO], Any]) -> None:
    """Write a file through ``write(handle)`` to ``path + '.tmp'``, fsync it, rename it over ``path``, fsync
    the folder: after a crash ``path`` holds the old content or the new, never a part."""
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    _fsync(path.parent)


def _sibling(directory: Path, role: str) -> Path:
    """The hidden folder beside ``directory`` used while saving it: ``.NAME.partial`` or
    ``.NAME.previous``."""
    return directory.with_name(f".{directory.name}.{role}")


def _fsync(path: Path) -> None:
    if os.name == "nt" and path.is_dir():  # Windows cannot open a folder to fsync it
        return
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


# ------------------------------------------------------------------------------------------ loading
def _resolve(path: str | Path) -> tuple[Path, Path]:
    path = Path(path)
    if not path.exists():
        path = _interrupted_save(path)
    if path.is_dir():
        return path / WEIGHTS_NAME, path / CONFIG_NAME
    if path.suffix in (".pt", ".pth", ".pkl", ".ckpt", ".bin"):
        raise CheckpointError(
            f"{path}: refusing to load a pickle-based file; DoViT checkpoints are safetensors + JSON "
            "(a pickle can run arbitrary code when loaded)"
        )
    config = path.with_suffix(".json")
    return path, config if config.exists() else path.parent / CONFIG_NAME


def _interrupted_save(path: Path) -> Path:
    """A save killed between its two renames leaves the complete previous checkpoint aside: use it."""
    folder, inside = (path.parent, path.name) if path.name in (WEIGHTS_NAME, CONFIG_NAME) else (path, None)
    previous = _sibling(Path(os.path.abspath(folder)), "previous")
    if not previous.is_dir():
        raise CheckpointError(f"checkpoint not found: {path} (expected a folder with {WEIGHTS_NAME} and "
                              f"{CONFIG_NAME})")
    warnings.warn(f"{folder} is missing because a save was interrupted; loading the previous save, "
                  f"{previous}",
                  stacklevel=3)
    return previous / inside if inside else previous


def _read_bounded(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (a FIFO, device or huge file is refused)."""
    try:
        # a FIFO must not block the open
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as error:
        raise CheckpointError(f"{path}: cannot open ({error.strerror})") from None
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise CheckpointError(f"{path}: not a regular file")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise CheckpointError(f"{path}: larger than {limit // 2**20} MiB, too large for a DoViT config")
    return data


def read_config(path: str | Path) -> tuple[ModelConfig, dict[str, Any]]:
    """The ModelConfig and metadata of a checkpoint, without loading weights; CheckpointError if invalid."""
    return _read_config_file(path, _resolve(path)[1])


def _read_config_file(path: str | Path, config_path: Path) -> tuple[ModelConfig, dict[str, Any]]:
    if not config_path.exists():
        raise CheckpointError(f"{path}: no config JSON found (looked for {config_path})")
    try:
        document = json.loads(_read_bounded(config_path, MAX_CONFIG_BYTES).decode("utf-8"))
        if not isinstance(document, dict):
            raise ValueError("the file must hold a JSON object")
        if document.get("format_version", FORMAT_VERSION) != FORMAT_VERSION:
            raise ValueError(f"format_version {document['format_version']!r}, this DoViT reads "
                             f"{FORMAT_VERSION}")
        if "model" not in document:
            raise ValueError("no 'model' section")
        metadata = document.get("metadata", {})
        if not isinstance(metadata, dict):
            raise ValueError("'metadata' must be a JSON object")
        config = ModelConfig.from_dict(document["model"])
    # JSONDecodeError is a ValueError
    except (UnicodeDecodeError, RecursionError, TypeError, ValueError) as error:
        raise CheckpointError(f"{config_path}: not a valid DoViT config ({_one_line(error)})") from error
    return config, metadata


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> DoViTSegmenter:
    """Build the model described by the checkpoint's config and load its weights (strict).

    Every failure (missing, unreadable or oversized files, an invalid config, a model that cannot be built,
    weights that do not match the config or hold NaN/inf) raises CheckpointError with a one-line message.
    """
    weights_path, config_path = _resolve(path)
    config, metadata = _read_config_file(path, config_path)
    if not weights_path.is_file():
        raise CheckpointError(f"{path}: weights file {weights_path} not found" if not weights_path.exists()
                              else f"{weights_path}: not a regular file")
    try:  # read the header only: names and shapes, checked before any tensor data is read
        with safe_open(str(weights_path), framework="pt") as handle:
            shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{weights_path}: not a readable safetensors file "
                              f"({_one_line(error)})") from error
    try:
        model = DoViTSegmenter(config, metadata=metadata)
    except (ValueError, TypeError, RuntimeError, OSError, MemoryError) as error:
        raise CheckpointError(f"{path}: cannot build the model its config describes "
                              f"({_one_line(error)})") from error
    _check_names_and_shapes(weights_path, config, shapes, model.state_dict())
    try:
        state = load_file(str(weights_path), device=str(map_location))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{weights_path}: not a readable safetensors file "
                              f"({_one_line(error)})") from error
    broken = [k for k, tensor in state.items() if tensor.is_floating_point()
              and not bool(torch.isfinite(tensor).all())]
    if broken:
        raise CheckpointError(f"{weights_path}: {len(broken)} tensors hold NaN or infinite values (e.g. "
                              f"{broken[:3]}); the training diverged or the file is damaged")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:  # names and shapes were checked; e.g. a dtype that cannot be copied
        raise CheckpointError(f"{weights_path}: {_one_line(error)}") from error
    return model.eval()


def _check_names_and_shapes(weights_path: Path, config: ModelConfig, shapes: dict[str, tuple[int, ...]],
                            expected: dict[str, torch.Tensor]) -> None:
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    wrong_shape = sorted(k for k in set(expected) & set(shapes) if tuple(expected[k].shape) != shapes[k])
    if missing or unexpected or wrong_shape:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing (e.g. {missing[:3]})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
        if wrong_shape:
            k = wrong_shape[0]
            problems.append(f"{len(wrong_shape)} with wrong shape (e.g. {k}: {shapes[k]} vs "
                            f"{tuple(expected[k].shape)})")
        raise CheckpointError(f"{weights_path} does not match its config ({config.backbone}): "
                              + "; ".join(problems))


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
