"""Does an image look like the training data? The final head's mean confidence against its training range.

A segmenter is less sure of itself on photos unlike its training frames (other cameras, colour casts,
noise, fog): the mean over pixels of the dense forward's top-class probability (``Prediction.
dense_confidence``) drops. ``python -m dovit.familiarity CKPT`` measures that number on the training
frames and stores its range in the checkpoint (``metadata["confidence_range"]``); ``familiarity_note``
then says, for a new image, when it lies below the range's low end (the 5th percentile), so a user knows
when to distrust the mask. About 5 % of training-like frames get the note too: it is a hint, not a test.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from tqdm import tqdm

from ..core.predictor import Predictor

METADATA_KEY = "confidence_range"
LOW_PERCENTILE, HIGH_PERCENTILE = 5, 95


@dataclass(frozen=True)
class ConfidenceRange:
    """Per-frame mean dense confidence over the reference frames: the low (5th), median and high (95th)
    percentiles, how many frames, and which (data set, split, recordings)."""

    low: float
    median: float
    high: float
    frames: int
    source: str

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_metadata(cls, metadata: dict | None) -> ConfidenceRange | None:
        """The range stored in a checkpoint's metadata, or None when it has none (or a malformed one)."""
        stored = (metadata or {}).get(METADATA_KEY)
        try:
            return cls(float(stored["low"]), float(stored["median"]), float(stored["high"]),
                       int(stored["frames"]),
                       str(stored["source"]))
        except (TypeError, KeyError, ValueError):
            return None


def measure_range(predictor: Predictor, images, source: str, batch_size: int = 8,
                  progress: bool = True) -> ConfidenceRange:
    """The ConfidenceRange of ``images`` (an iterable of (H, W, 3) uint8 RGB arrays, at least 2)."""
    confidences, batch = [], []
    for image in tqdm(images, desc="confidence", disable=not progress, dynamic_ncols=True):
        batch.append(image)
        if len(batch) == batch_size:
            confidences += [p.dense_confidence for p in predictor.predict_batch(batch, xi=1.0,
                                                                                batch_size=batch_size)]
            batch = []
    if batch:
        confidences += [p.dense_confidence for p in predictor.predict_batch(batch, xi=1.0,
                                                                            batch_size=batch_size)]
    if len(confidences) < 2:
        raise ValueError(f"a confidence range needs at least 2 frames, got {len(confidences)}")
    low, median, high = np.percentile(confidences, [LOW_PERCENTILE, 50, HIGH_PERCENTILE])
    return ConfidenceRange(float(low), float(median), float(high), len(confidences), source)


def familiarity_note(confidence: float, reference: ConfidenceRange | None) -> str | None:
    """One line when ``confidence`` lies below the reference's low end; None when it does not (or no
    range)."""
    if reference is None or not np.isfinite(confidence) or confidence >= reference.low:
        return None
    return (f"This image looks unlike the training data: the model's mean confidence is {confidence:.2f}, "
            f"below {100 - LOW_PERCENTILE}% of its training frames ({reference.low:.2f}–{reference.high:.2f} "
            f"on {reference.source}). Trust the mask less.")
