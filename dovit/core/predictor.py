"""The one inference API: ``Predictor`` (set an image once, re-threshold cheaply, like SAM's predictor)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from .checkpoint import CheckpointError, load_checkpoint
from .model import DoViTSegmenter, SegmenterOutput, TokenState
from .preprocess import aspect_working_size, class_mask, preprocess_image
from .stopwatch import Stopwatch
from .token_pass import Decider, check_xi  # noqa: F401  (re-exported: callers validate xi with the Predictor's rule)
from .trace import Trace, build_trace

# The shipped checkpoints sit in the repository's checkpoints/ folder, beside the package: found from a
# checkout (also under `pip install -e .`), not from a `pip install .` copy in site-packages.
DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[2] / "checkpoints" / "camvid_hybrid_dovit_vit_tiny"


def default_checkpoint() -> Path:
    """The shipped CamVid DoViT student's directory; CheckpointError when this dovit is not a checkout's."""
    if not DEFAULT_CHECKPOINT.is_dir():
        raise CheckpointError(
            f"no checkpoint given and the shipped one is not at {DEFAULT_CHECKPOINT}: it comes with a "
            "checkout of the repository (checkpoints/camvid_hybrid_dovit_vit_tiny) and `pip install .` does "
            "not copy it; pass a checkpoint directory (--checkpoint PATH on the command line, "
            "Predictor.from_checkpoint(path) in Python), or install from the checkout with `pip install -e .`"
        )
    return DEFAULT_CHECKPOINT


@dataclass
class Prediction:
    """mask (H, W) int64 class ids at the input image's resolution; trace of the token-pass forward.

    latency_ms / dense_latency_ms: measured wall time of the whole forward at this xi / at xi = 1
    (the cached xi-independent prefix's time, measured once per image, plus the part run now; from
    ``predict_batch``, the batch's time divided by its size). dense_mask / dense_latency_ms are None / nan
    when ``predict_batch(..., dense=False)`` skipped the dense baseline.
    """

    mask: np.ndarray
    trace: Trace
    xi: float
    latency_ms: float
    dense_latency_ms: float
    dense_mask: np.ndarray | None
    working_size: tuple[int, int]
    # the final head's mean top-class probability at xi = 1 (nan: not run)
    dense_confidence: float = float("nan")
    runtime: str = ""  # what ran the forwards and so measured the latencies, e.g. "PyTorch 2.14.1 (cpu)"

    @property
    def agreement_with_dense(self) -> float:
        """Fraction of pixels whose class equals the dense model's (nan without a dense baseline)."""
        if self.dense_mask is None:
            return float("nan")
        return float((self.mask == self.dense_mask).mean())


@dataclass
class PreparedImage:
    """Everything about one image that does not depend on xi (``Predictor.prepare``): its sizes, the
    token state after the always-dense group B_1, the dense forward (xi = 1, no aux heads) and its mask
    at the image's resolution, and their measured times. Every xi of this image starts from ``state``."""

    original_size: tuple[int, int]
    working_size: tuple[int, int]
    state: TokenState
    prefix_ms: float
    dense: SegmenterOutput
    dense_mask: np.ndarray
    dense_ms: float

    @cached_property
    def dense_confidence(self) -> float:
        """The final head's mean top-class probability at xi = 1 (computed once, when first read)."""
        return mean_confidence(self.dense.logits)[0]

    @property
    def dense_latency_ms(self) -> float:
        """Measured wall time of the whole dense forward: the prefix plus the rest at xi = 1, with its
        mask."""
        return self.prefix_ms + self.dense_ms


class Predictor:
    """Run a DoViT segmenter on RGB images.

    >>> predictor = Predictor.from_checkpoint()        # the shipped CamVid model
    >>> predictor.set_image(image)                      # image: (H, W, 3) uint8 RGB
    >>> prediction = predictor.predict(xi=0.95)         # cheap; call again with another xi
    >>> prediction.mask.shape == image.shape[:2]

    A Predictor caches one image at a time and is not thread-safe: serialise calls (the app does).
    """

    def __init__(self, model: DoViTSegmenter, device: str | torch.device = "cpu") -> None:
        self.model = model.to(device).eval()
        self.config = model.config
        self.device = torch.device(device)
        self._cache: PreparedImage | None = None
        self._cache_key: tuple | None = None

    @classmethod
    def from_checkpoint(cls, path: str | Path | None = None, device: str | torch.device = "cpu") -> Predictor:
        """Load a checkpoint directory (default: the shipped CamVid DoViT student, see
        ``default_checkpoint``)."""
        return cls(load_checkpoint(path or default_checkpoint(), map_location="cpu"), device=device)

    @property
    def runtime(self) -> str:
        """What runs the forwards (and so measures the latencies), e.g. "PyTorch 2.14.1 (cpu)"."""
        return f"PyTorch {torch.__version__.split('+')[0]} ({self.device.type})"

    @property
    def default_xi(self) -> float:
        return float(self.config.default_xi)

    def working_size(self, size: tuple[int, int] | None = None,
                     image_size: tuple[int, int] | None = None) -> tuple[int, int]:
        """The (height, width) the model sees: ``size`` when given; else, for an image of (height, width)
        ``image_size``, its own aspect at the checkpoint's token budget (``aspect_working_size``: exactly the
        input size for an image of the input size's aspect); else the checkpoint's input size. At least one
        patch."""
        if size is None and image_size is not None:
            size = aspect_working_size(image_size, self.config.input_size, self.model.patch_size)
        working = tuple(int(v) for v in (size or self.config.input_size))
        if min(working) < self.model.patch_size:
            raise ValueError(f"working size {working} is smaller than one {self.model.patch_size}-pixel "
                             "patch")
        return working

    def preprocess(self, image: np.ndarray, size: tuple[int, int] | None = None) -> torch.Tensor:
        """(H, W, 3) uint8 RGB -> normalised (1, 3, h, w) float tensor at the working size (h, w)
        (default: the image's aspect at the checkpoint's token budget, ``working_size``), via
        ``dovit.core.preprocess.preprocess_image``."""
        image = validate_image(image)
        return preprocess_image(image, self.working_size(size, image.shape[:2]), self.config.mean,
                                self.config.std, self.device)[None]

    @torch.inference_mode()
    def set_image(self, image: np.ndarray, size: tuple[int, int] | None = None) -> None:
        """Compute and cache everything that does not depend on xi (``prepare``) for ``predict``; the same
        image at the same working size (height, width; default ``working_size``'s for the image) is not
        prepared again."""
        image = validate_image(image)
        key = image_key(image, self.working_size(size, image.shape[:2]))
        if key == self._cache_key and self._cache is not None:
            return
        self._cache = self.prepare(image, key[1])
        self._cache_key = key

    @torch.inference_mode()
    def prepare(self, image: np.ndarray, size: tuple[int, int] | None = None) -> PreparedImage:
        """Preprocess, embed and run group B_1 once, then the dense baseline (its mask and measured latency).
        size: the working (height, width), default the image's aspect at the checkpoint's token budget
        (``working_size``). Start any forward from it with ``run``; it does not touch the ``set_image`` cache
        (analysis and policies hold their own)."""
        image = validate_image(image)
        working = self.working_size(size, image.shape[:2])
        start = Stopwatch()
        state = self.model.prefix(self.preprocess(image, working))
        prefix_ms = start.ms()
        start = Stopwatch()
        dense = self.model.forward_from(state, 1.0, with_aux=False)
        dense_mask = class_mask(dense.logits, image.shape[:2])
        dense_ms = start.ms()  # timed like predict(): forward + mask
        return PreparedImage(original_size=image.shape[:2], working_size=working, state=state,
                             prefix_ms=prefix_ms,
                             dense=dense, dense_mask=dense_mask, dense_ms=dense_ms)

    @torch.inference_mode()
    def run(self, prepared: PreparedImage, xi: float, with_aux: bool | None = None,
            decider: Decider | None = None) -> SegmenterOutput:
        """One token-pass forward of a prepared image from its cached state: threshold ``xi`` (Eq. 4-5), or a
        ``decider`` in its place (a stopping policy, ``dovit.core.policies``). with_aux None runs the aux
        heads when something can stop (xi < 1 or a decider given); True always (the trace's confidence
        maps)."""
        return self.model.forward_from(prepared.state, xi, with_aux=with_aux, decider=decider)

    @torch.inference_mode()
    def predict(self, image: np.ndarray | None = None, xi: float | None = None,
                size: tuple[int, int] | None = None) -> Prediction:
        """Segment ``image`` (or the image given to ``set_image``) with token-pass threshold ``xi``.

        xi in [0, 1]; None uses the checkpoint's default. Aux heads always run here, so the trace
        carries confidence maps even at xi = 1.
        """
        xi = self.default_xi if xi is None else check_xi(xi)
        if image is not None:
            self.set_image(image, size)
        if self._cache is None:
            raise RuntimeError("call set_image(image) or pass an image to predict() first")
        cache = self._cache
        start = Stopwatch()
        output = self.run(cache, xi, with_aux=True)
        mask = class_mask(output.logits, cache.original_size)
        run_ms = start.ms()
        return Prediction(
            mask=mask,
            trace=build_trace(self.model, output),
            xi=xi,
            latency_ms=cache.prefix_ms + run_ms,
            dense_latency_ms=cache.dense_latency_ms,
            dense_mask=cache.dense_mask,
            working_size=cache.working_size,
            dense_confidence=cache.dense_confidence,
            runtime=self.runtime,
        )

    @torch.inference_mode()
    def predict_batch(self, images: list[np.ndarray], xi: float | None = None,
                      size: tuple[int, int] | None = None,
                      batch_size: int = 8, dense: bool = True) -> list[Prediction]:
        """Segment many images (a folder, video frames) in batched forwards; one Prediction per image, in
        order.

        images: (H, W, 3) uint8 RGB arrays, sizes may differ (each is resized to the working size ``size``,
        default its own aspect at the checkpoint's token budget (``working_size``), and its mask returned at
        its own resolution); only images of one working size share a forward (frames of one video all do).
        xi in [0, 1], None = the checkpoint's default. batch_size: images per forward. Every image keeps its
        own tokens and gets the mask that ``predict(image, xi)`` gives it (the batched token pass packs
        kept tokens into padded, masked forwards). dense: also run the dense baseline (xi = 1) per batch
        for ``dense_mask``; False skips it (dense_mask None). Latencies are the batch's wall time divided by
        its size. The image cache of ``set_image`` is neither used nor changed.
        """
        xi = self.default_xi if xi is None else check_xi(xi)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        images = [validate_image(image) for image in images]
        by_size: dict[tuple[int, int], list[int]] = {}  # working size -> indices of its images, in order
        for index, image in enumerate(images):
            by_size.setdefault(self.working_size(size, image.shape[:2]), []).append(index)
        predictions: list[Prediction | None] = [None] * len(images)
        for working, indices in by_size.items():
            for first in range(0, len(indices), batch_size):
                chunk = indices[first : first + batch_size]
                results = self._predict_chunk([images[i] for i in chunk], working, xi, dense)
                for index, prediction in zip(chunk, results, strict=True):
                    predictions[index] = prediction
        return predictions  # type: ignore[return-value]

    def _predict_chunk(self, chunk: list[np.ndarray], working: tuple[int, int], xi: float,
                       dense: bool) -> list[Prediction]:
        """One batched forward (and its dense baseline when ``dense``) of images at one working size."""
        start = Stopwatch()
        state = self.model.prefix(torch.cat([self.preprocess(image, working) for image in chunk]))
        prefix_ms = start.ms()
        start = Stopwatch()
        output = self.model.forward_from(state, xi, with_aux=True)
        masks = [class_mask(output.logits[i : i + 1], image.shape[:2]) for i, image in enumerate(chunk)]
        run_ms = start.ms()
        dense_masks, dense_ms, confidences = [None] * len(chunk), float("nan"), [float("nan")] * len(chunk)
        if dense:
            start = Stopwatch()
            logits = self.model.forward_from(state, 1.0, with_aux=False).logits
            dense_masks = [class_mask(logits[i : i + 1], image.shape[:2]) for i, image in enumerate(chunk)]
            dense_ms = start.ms()
            confidences = mean_confidence(logits)
        return [Prediction(mask=masks[i], trace=build_trace(self.model, output, i), xi=xi,
                           latency_ms=(prefix_ms + run_ms) / len(chunk),
                           dense_latency_ms=(prefix_ms + dense_ms) / len(chunk),
                           dense_mask=dense_masks[i], working_size=working, dense_confidence=confidences[i],
                           runtime=self.runtime)
                for i in range(len(chunk))]


def image_key(image: np.ndarray, size: tuple[int, int]) -> tuple:
    """What identifies an image's prepared state: its shape, the working size and a hash of its pixels."""
    return (image.shape, tuple(size), hashlib.blake2b(image.tobytes(), digest_size=16).hexdigest())


def mean_confidence(logits: torch.Tensor) -> list[float]:
    """(B, C, H, W) logits -> per image, the mean over pixels of the top class's softmax probability."""
    return torch.softmax(logits.float(), dim=1).amax(dim=1).mean(dim=(1, 2)).tolist()


def validate_image(image: np.ndarray) -> np.ndarray:
    """Accept (H, W, 3) uint8 RGB; raise ValueError naming the problem otherwise."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array (H, W, 3) uint8 RGB, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must have shape (H, W, 3), got {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {image.dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError("image is empty")
    return image
