"""The page header: the checkpoint's architecture and where it came from. No gradio here."""
from __future__ import annotations

from pathlib import Path

from dovit import Predictor


def header_markdown(predictor: Predictor) -> str:
    """Title, the checkpoint's architecture (decoder kind included) and short metadata, where a converted
    checkpoint came from (``converted_from`` / ``format``, written by dovit.convert and kept by dovit.train),
    and one line on the method."""
    config = predictor.config
    model = predictor.model
    metadata = getattr(model, "checkpoint_metadata", {}) or {}  # set by dovit.load_checkpoint
    source_keys = ("converted_from", "format")
    trained = ", ".join(  # short facts only (stage, step, mIoU...), not e.g. the training command
        f"{k}: {v}" for k, v in metadata.items()
        if k not in source_keys and isinstance(v, (int, float, str)) and len(str(v)) <= 24
    )
    decoders = {"naive": "SETR-Naive", "naive_up4": "SETR-Naive (MMSeg's, ×4 before its classifier)",
                "pup": "SETR-PUP", "skip": "skip (SETR-Naive + the conv stem's 1/4 features)"}
    if config.decoder == "segmenter":
        decoder = f"Segmenter mask transformer ({len(model.decoder.blocks)} layers)"
    else:
        decoder = decoders.get(config.decoder, config.decoder)
    source, source_format = (str(metadata.get(k, "")).translate({ord("`"): None,
                                                                 ord("<"): None}) for k in source_keys)
    converted = (f"  \n<sub>converted from `{source}` ({source_format or 'mmseg'} format)</sub>" if source
                 else "")
    calibration = metadata.get("calibration")
    if isinstance(calibration, dict):  # written by dovit.calibrate: label-free aux heads on a dense model
        clean = {k: str(calibration.get(k, "?")).translate({ord("`"): None, ord("<"): None})
                 for k in ("source", "images", "image_count", "train", "default_xi", "target_agreement")}
        converted += (f"  \n<sub>calibrated without labels from `{clean['source']}` on "
                      f"{clean['image_count']} images of `{clean['images']}` (trained: {clean['train']}); "
                      f"its label-free rule picked ξ {clean['default_xi']} (masks agree with the dense "
                      f"model's on {clean['target_agreement']} of the pixels)</sub>")
    return (
        "# DoViT Studio — dynamic token-pass ViT segmentation\n"
        f"`{config.backbone}` · decoder {decoder} ({config.decoder_channels} ch) · {config.num_classes} "
        f"classes · decision layers after blocks {', '.join(map(str, model.decision_layers))} · default ξ = "
        f"{config.default_xi} · input {config.input_size[0]}×{config.input_size[1]} · {model.patch_size}-px "
        "patches"
        + (f"  \n<sub>checkpoint: {trained}</sub>" if trained else "")
        + converted
        + "\n\nTokens whose aux-head confidence exceeds ξ **stop** and skip the remaining blocks; "
        "ξ = 1 is the dense model. Move ξ and watch what the network stops computing."
    )


HELP_PATH = Path(__file__).with_name("README_APP.md")


def help_markdown() -> str:
    """The "What each view teaches" part of app/README_APP.md (the README's own copy of it)."""
    text = HELP_PATH.read_text() if HELP_PATH.exists() else ""
    marker = "## What each view teaches"
    return text[text.index(marker) + len(marker):].strip() if marker in text else "See README.md."
