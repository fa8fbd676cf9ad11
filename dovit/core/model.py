"""The DoViT segmenter: a timm ViT whose blocks run in groups, with token pass between groups.

Modifications relative to timm's VisionTransformer.forward_features:
- blocks run in D+1 groups split at ``decision_layers``; after each group an auxiliary head
  (LayerNorm + one 1x1 conv, E -> C; or a converted official checkpoint's conv-BN-ReLU-conv head, see
  ``ModelConfig.aux_head``) scores every token (Eq. 2-3);
- tokens whose confidence exceeds xi stop (Eq. 4-5): the kept tokens are gathered into a compact
  sequence and only they run through the next group's real timm blocks (Eq. 6-7); stopped tokens are
  carried unchanged and scattered back (token reconstruction) before every aux head and the decoder;
- stopped tokens are merged into the class token (Eq. 8; see ``token_pass.merge_stopped_into_class_token``).
Training, inference and the app's trace all use ``forward`` = ``prefix`` + ``forward_from``. The four stages
``forward_from`` calls (``prefix``, ``_aux_logits``, ``_run_group``, ``_decoder_logits``) are where another
runtime substitutes its own (``dovit.deploy.onnx_runtime.OrtSegmenter`` runs ONNX graphs there).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed
from torch import nn

from . import token_pass as tp
from .config import ModelConfig, default_decision_layers
from .decoders import build_decoder
from .preprocess import upsample_logits
from .stems import STEM_CLASSES
from .stopwatch import Stopwatch

KeepDecider = tp.KeepDecider  # a stopping policy's choice; wrapped as ``tp.Policy``


@dataclass
class TokenState:
    """The xi-independent part of a forward: embedded tokens after the always-dense group B_1.

    tokens (B, P + N, E) with P prefix (class) tokens first; ``grid`` = (h, w), N = h*w.
    """

    tokens: torch.Tensor
    grid: tuple[int, int]
    input_size: tuple[int, int]  # (H, W) before padding to the patch size
    timings_ms: dict[str, float] = field(default_factory=dict)
    # what the decoder reads besides the tokens: the conv stem's 1/4-resolution features ("skip" decoder) or a
    # pretrained encoder's maps ("espnetv2" decoder, a tuple)
    skip: torch.Tensor | tuple[torch.Tensor, ...] | None = None

    def skip_tensors(self) -> tuple[torch.Tensor, ...]:
        """``skip`` as a flat tuple (another runtime's graph inputs and outputs): none, one map, the maps."""
        return () if self.skip is None else tuple(self.skip) if isinstance(self.skip, tuple) else (self.skip,)

    @staticmethod
    def skip_from(tensors: tuple[torch.Tensor, ...]) -> torch.Tensor | tuple[torch.Tensor, ...] | None:
        """The inverse of ``skip_tensors``."""
        return None if not tensors else tensors[0] if len(tensors) == 1 else tuple(tensors)


@dataclass
class SegmenterOutput:
    """What one forward returns; ``dovit.core.trace.build_trace`` turns one image of it into a Trace.

    logits (B, C, H, W) at input resolution; per decision l (lists of length D, empty when no aux head
    ran): aux_logits (B, C, h, w), confidence (B, N), keep_masks (B, N) cumulative M_l,
    stopped_now (B, N) = tokens stopped at this decision; group_tokens (B, D+1) kept patch tokens that
    ran through each group.
    """

    logits: torch.Tensor
    aux_logits: list[torch.Tensor]
    confidence: list[torch.Tensor]
    keep_masks: list[torch.Tensor]
    stopped_now: list[torch.Tensor]
    group_tokens: torch.Tensor
    grid: tuple[int, int]
    xi: float
    timings_ms: dict[str, float]


class AuxHead(nn.Module):
    """H_l: one 1x1 conv E -> C on the reconstructed token map (Eq. 2); aux_head "linear", the paper's.

    A LayerNorm comes first because the residual stream's scale grows with depth (SETR's aux heads
    normalise too); it has no matmul, so it adds no FLOPs in our convention.
    """

    def __init__(self, embed_dim: int, num_classes: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.classifier = nn.Conv2d(embed_dim, num_classes, 1)

    def forward(self, patch_tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """patch_tokens (B, N, E) -> logits (B, C, h, w), a channels-last view of (B, N, C).

        The 1x1 conv runs as the equal linear layer on the tokens: on a CPU oneDNN's convolution took 0.38 ms
        for ViT-T's 690 tokens against 0.13 ms for the linear (docs/benchmarks.md, issue 11), and the
        (B, N, C) layout makes the softmax over classes of Eq. 3 run over contiguous memory.
        """
        logits = _conv1x1_on_tokens(self.classifier, self.norm(patch_tokens))
        return tokens_to_map(logits, grid)

    def flops(self, num_tokens: int) -> int:
        """FLOPs (2 x MACs) of one forward over num_tokens tokens."""
        return 2 * num_tokens * self.classifier.in_channels * self.classifier.out_channels


class ConvAuxHead(nn.Module):
    """The official DoViT code's aux heads (MMSegmentation's FCNHead / SETRUPHead as its configs set them):
    [LayerNorm] -> 1x1 conv E -> channels (no bias) -> BatchNorm -> ReLU -> 1x1 classifier channels -> C.

    aux_head "fcn" (its Segmenter configs: FCNHead, num_convs=1, kernel_size=1, concat_input=False) has no
    LayerNorm: the head sees the raw residual stream. "setr_up" (its SETR configs: SETRUPHead, num_convs=1,
    kernel_size=1) normalises the tokens first (LayerNorm, eps 1e-6) and upsamples x4 before its classifier;
    a 1x1 classifier commutes with bilinear upsampling, so the logits here are SETRUPHead's before that
    upsampling, at the token grid like every DoViT aux head (output contract of ``AuxHead``).
    The convs run as linear layers on the tokens (as ``AuxHead``); the BatchNorm is a BatchNorm1d over the
    B*N tokens, which has BatchNorm2d's statistics and state-dict entries (running stats in eval mode).
    """

    def __init__(self, embed_dim: int, num_classes: int, channels: int, input_norm: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6) if input_norm else nn.Identity()
        self.conv = nn.Conv2d(embed_dim, channels, 1, bias=False)
        self.bn = nn.BatchNorm1d(channels)  # MMCV's ConvModule with norm_cfg BN/SyncBN: eps 1e-5
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, patch_tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """patch_tokens (B, N, E) -> logits (B, C, h, w), a channels-last view of (B, N, C)."""
        hidden = _conv1x1_on_tokens(self.conv, self.norm(patch_tokens))
        batch, num_tokens, channels = hidden.shape
        hidden = F.relu(self.bn(hidden.reshape(batch * num_tokens, channels))).reshape(batch, num_tokens,
                                                                                       channels)
        return tokens_to_map(_conv1x1_on_tokens(self.classifier, hidden), grid)

    def flops(self, num_tokens: int) -> int:
        """FLOPs (2 x MACs) of one forward over num_tokens tokens: the two 1x1 convs."""
        return 2 * num_tokens * (self.conv.in_channels * self.conv.out_channels
                                 + self.classifier.in_channels * self.classifier.out_channels)


def build_aux_head(config: ModelConfig, embed_dim: int) -> nn.Module:
    """The aux head ``config.aux_head`` names, for embed_dim-wide tokens and config.num_classes classes."""
    if config.aux_head == "linear":
        return AuxHead(embed_dim, config.num_classes)
    return ConvAuxHead(embed_dim, config.num_classes, config.aux_head_channels,
                       input_norm=config.aux_head == "setr_up")


def _conv1x1_on_tokens(conv: nn.Conv2d, tokens: torch.Tensor) -> torch.Tensor:
    """A 1x1 Conv2d applied to (B, N, in) tokens as the equal linear layer: (B, N, out)."""
    return F.linear(tokens, conv.weight.flatten(1), conv.bias)


def tokens_to_map(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, N, E) -> (B, E, h, w)."""
    b, n, e = tokens.shape
    return tokens.transpose(1, 2).reshape(b, e, grid[0], grid[1])


class DoViTSegmenter(nn.Module):
    """config: the architecture (validated again here, as fields may have been assigned since).

    pretrained: None/False for random init, True for timm's default weights from the hub (needs a network),
    or a local weights file (str or Path) for the backbone, which must exist: a missing file raises
    FileNotFoundError, never a download. metadata: what the checkpoint records about training (stage,
    step, validation), kept as ``checkpoint_metadata`` for the app to show.
    The backbone is inspected on the meta device first, so a backbone that DoViT cannot use, or a network
    over MAX_PARAMETERS, is refused before any memory is allocated for it.
    """

    def __init__(self, config: ModelConfig, pretrained: str | Path | bool | None = None,
                 metadata: dict | None = None) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.checkpoint_metadata: dict = dict(metadata or {})
        weights_file = _local_weights_file(pretrained)
        with torch.device("meta"):  # read the patch size, then size the whole network, without allocating
            self.patch_size = _patch_size(config.backbone, _create_backbone(config.backbone,
                                                                            weight_init="skip"))
            kwargs = _backbone_options(config, self.patch_size)
            probe = _create_backbone(config.backbone, weight_init="skip", **kwargs)
            _, probe_heads, probe_decoder = _attach_parts(config, probe, self.patch_size)
        size = sum(p.numel() for part in (probe, probe_heads, probe_decoder) for p in part.parameters())
        if size > MAX_PARAMETERS:
            raise ValueError(f"{config.backbone} at input {config.input_size} with this decoder has "
                             f"{size / 1e9:.2f} B parameters, over the {MAX_PARAMETERS / 1e9:.1f} B cap "
                             f"({4 * size / 2**30:.1f} GiB in float32)")
        del probe, probe_heads, probe_decoder
        if weights_file is not None:
            kwargs["pretrained_cfg_overlay"] = dict(file=weights_file)
        vit = _create_backbone(config.backbone, pretrained=pretrained is True or weights_file is not None,
                               **kwargs)
        self.decision_layers, self.aux_heads, self.decoder = _attach_parts(config, vit, self.patch_size)
        self.vit = vit
        self.embed_dim = int(vit.embed_dim)
        self.num_prefix_tokens = int(vit.num_prefix_tokens)
        depth = len(vit.blocks)
        self.group_bounds = list(zip((0,) + self.decision_layers, self.decision_layers + (depth,),
                                     strict=False))
        # (key, table): the position embedding resampled for the last non-native grid, see _position_embed
        self._pos_embed_cache: tuple[tuple, torch.Tensor] | None = None
        # The price of one more forward in tokens, for splitting batches with different kept counts
        # (see token_pass.pack_by_kept_count); None: PACK_OVERHEAD_TOKENS for the device. inf pads the
        # whole batch into one forward, 0 runs images with different counts one by one.
        self.pack_overhead_tokens: float | None = None

    # ------------------------------------------------------------------ forward
    def forward(
        self, pixels: torch.Tensor, xi: float = 1.0, equalise: bool = False, with_aux: bool | None = None,
        decider: tp.Decider | None = None,
    ) -> SegmenterOutput:
        """pixels (B, 3, H, W) normalised float; any H, W (padded to the patch size internally).

        xi: the token-pass threshold (1 = dense). equalise: the paper's equal kept counts for training
        batches. with_aux: run the aux heads even at xi = 1 (default: only when xi < 1 or training).
        decider: see ``forward_from``.
        """
        return self.forward_from(self.prefix(pixels), xi, equalise, with_aux, decider)

    def prefix(self, pixels: torch.Tensor) -> TokenState:
        """Pad, embed (timm's pos-embed resampling) and run the always-dense first group B_1."""
        watch = Stopwatch()
        height, width = pixels.shape[-2:]  # ints; symbols while exporting (int() would fix the size)
        pad_h, pad_w = -height % self.patch_size, -width % self.patch_size
        # an exported graph pads always (by 0 at multiples of the patch), so its height and width stay dynamic
        if torch.compiler.is_exporting() or pad_h or pad_w:
            pixels = F.pad(pixels, (0, pad_w, 0, pad_h))
        vit = self.vit
        skip = None
        if self.decoder.needs_skip:
            x, skip = vit.patch_embed.forward_with_skip(pixels)
        else:
            x = vit.patch_embed(pixels)  # (B, h, w, E)
        grid = (x.shape[1], x.shape[2])
        x = vit.norm_pre(vit.patch_drop(self._position_embed(x)))
        embed_ms = watch.lap_ms()
        first, last = self.group_bounds[0]
        for block in vit.blocks[first:last]:
            x = block(x)
        timings = {"embed": embed_ms, "group_1": watch.ms()}
        return TokenState(x, grid, (height, width), timings, skip)

    def _position_embed(self, x: torch.Tensor) -> torch.Tensor:
        """Prefix tokens and position embedding for patch tokens x (B, h, w, E) -> (B, P + h*w, E).

        timm's ``_pos_embed`` resamples the position embedding (bicubic, antialiased: ~10 ms on a 2-core
        CPU) on every forward whose grid differs from the one the backbone was built for. Without
        gradients the resampled table is cached per grid (and per version of the weights) and added here
        as timm adds it; with gradients, or at the native grid (no resampling), timm's own code runs.
        """
        vit = self.vit
        # exporting: timm's path, before any int(): reading the grid would fix the graph's height and width
        if torch.compiler.is_exporting():
            return vit._pos_embed(x)
        grid = (int(x.shape[1]), int(x.shape[2]))
        if torch.is_grad_enabled() or vit.pos_embed is None or grid == tuple(vit.patch_embed.grid_size):
            return vit._pos_embed(x)
        table = vit.pos_embed
        key = (grid, table.device, table.dtype, table.data_ptr(), table._version)
        if self._pos_embed_cache is None or self._pos_embed_cache[0] != key:
            resampled = resample_abs_pos_embed(table, new_size=grid, old_size=vit.patch_embed.grid_size,
                                               num_prefix_tokens=0 if vit.no_embed_class
                                               else vit.num_prefix_tokens)
            self._pos_embed_cache = (key, resampled)
        pos_embed = self._pos_embed_cache[1]
        batch = x.shape[0]
        prefix = [token.expand(batch, -1, -1) for token in (vit.cls_token,
                                                            vit.reg_token) if token is not None]
        x = x.reshape(batch, grid[0] * grid[1], x.shape[-1])
        if vit.no_embed_class:  # deit-3 style: the table covers patch tokens only
            x = torch.cat(prefix + [x + pos_embed], dim=1)
        else:
            x = torch.cat(prefix + [x], dim=1) + pos_embed
        return vit.pos_drop(x)

    def forward_from(
        self, state: TokenState, xi: float, equalise: bool = False, with_aux: bool | None = None,
        decider: tp.Decider | None = None,
    ) -> SegmenterOutput:
        """Everything after B_1: decisions, sparse groups, reconstruction and decoder.

        decider: which tokens run on (``tp.Forced`` masks, a ``tp.Policy``; not with with_aux=False);
        None: ``tp.Threshold(xi, equalise)``. Gather, scatter, merge (Eq. 8) and decoder: the same for all."""
        xi = tp.check_xi(xi)
        if decider is not None and with_aux is False:
            raise ValueError("a decider needs the aux heads: leave with_aux None or True")
        run_aux = with_aux if with_aux is not None else (xi < 1.0 or self.training or decider is not None)
        decider = decider if decider is not None else tp.Threshold(xi, equalise)
        timings = dict(state.timings_ms)
        p = self.num_prefix_tokens
        prefix_tokens, patches = state.tokens[:, :p], state.tokens[:, p:]
        batch, num_tokens = patches.shape[:2]
        keep = torch.ones(batch, num_tokens, dtype=torch.bool, device=patches.device)
        group_tokens = [torch.full((batch,), num_tokens, device=patches.device)]
        aux_logits, confidences, keep_masks, stopped = [], [], [], []
        for decision in range(len(self.group_bounds) - 1):
            if run_aux:
                watch = Stopwatch()
                logits = self._aux_logits(decision, patches, state.grid)
                confidence = tp.token_confidence(logits.flatten(2).transpose(1, 2))
                new_keep = decider(decision, confidence, logits, keep)
                stopped_now = keep & ~new_keep
                if self.config.merge_stopped:
                    cls = tp.merge_stopped_into_class_token(prefix_tokens[:, :1], patches, stopped_now)
                    prefix_tokens = torch.cat([cls, prefix_tokens[:, 1:]], dim=1)
                keep = new_keep
                aux_logits.append(logits)
                confidences.append(confidence)
                keep_masks.append(keep)
                stopped.append(stopped_now)
                timings[f"decision_{decision + 1}"] = watch.ms()
            watch = Stopwatch()
            prefix_tokens, patches = self._run_group(decision + 1, prefix_tokens, patches, keep)
            group_tokens.append(keep.sum(dim=1))
            timings[f"group_{decision + 2}"] = watch.ms()
        watch = Stopwatch()
        logits = self._decoder_logits(patches, state)
        decoder_ms = watch.lap_ms()
        # The decoder's output covers the input padded to the patch size: upsample to that, crop the padding.
        logits = upsample_logits(logits, state.input_size, self.patch_size)
        # Timed apart: the upsample to the input size costs the same at every kept fraction (no FLOPs
        # counted).
        timings["decoder"], timings["upsample"] = decoder_ms, watch.ms()
        return SegmenterOutput(
            logits=logits,
            aux_logits=aux_logits,
            confidence=confidences,
            keep_masks=keep_masks,
            stopped_now=stopped,
            group_tokens=torch.stack(group_tokens, dim=1),
            grid=state.grid,
            xi=xi,
            timings_ms=timings,
        )

    def _aux_logits(self, decision: int, patches: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """H_l of decision ``decision`` (0-based) on all patch tokens (B, N, E) -> logits (B, C, h, w) (Eq.
        2)."""
        return self.aux_heads[decision](patches, grid)

    def _run_group(
        self, group: int, prefix_tokens: torch.Tensor, patches: torch.Tensor, keep: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the kept tokens (plus prefix tokens) through the real timm blocks of group ``group`` (0-based,
        ``group_bounds[group]``; 0 is the dense B_1); carry stopped ones unchanged.

        prefix_tokens (B, P, E), patches (B, N, E), keep (B, N) bool -> updated (prefix_tokens, patches).
        When kept counts differ (inference), ``token_pass.pack_by_kept_count`` splits the batch into
        sub-batches at the least modelled cost (one padded forward for the whole batch when padding is
        cheaper than another forward, image by image when counts are far apart on a CPU), and each
        sub-batch runs as one padded, masked forward (``_run_padded``). Every image gets its batch-1
        result (up to float reassociation) whatever its batch mates keep.
        """
        first, last = self.group_bounds[group]
        blocks = self.vit.blocks[first:last]
        if bool(keep.all()) or keep.shape[0] == 1:
            return self._run_padded(blocks, prefix_tokens, patches, keep)
        groups = tp.pack_by_kept_count(keep.sum(dim=1).tolist(), prefix_tokens.shape[1], self.embed_dim,
                                       self._pack_overhead_tokens(patches.device))
        if len(groups) == 1:
            return self._run_padded(blocks, prefix_tokens, patches, keep)
        outputs = []
        for group in groups:
            rows = torch.tensor(group, device=patches.device)
            outputs.append(self._run_padded(blocks, prefix_tokens[rows], patches[rows], keep[rows]))
        inverse = torch.tensor([i for group in groups for i in group], device=patches.device).argsort()
        return torch.cat([o[0] for o in outputs])[inverse], torch.cat([o[1] for o in outputs])[inverse]

    def _run_padded(
        self, blocks: nn.Module, prefix_tokens: torch.Tensor, patches: torch.Tensor, keep: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward of the blocks over the batch's kept tokens, padded to its largest kept count.

        All kept: the plain dense forward. Equal counts (batch 1, equalised training batches): gathered,
        unpadded, unmasked. Otherwise a key-padding mask (``token_pass.key_padding_mask``, True = attend,
        passed to timm's ``Block.forward(x, attn_mask=...)`` and on to SDPA) keeps each image attending to
        its own tokens only, and the padded rows' outputs are dropped by the masked scatter.
        """
        p = prefix_tokens.shape[1]
        if bool(keep.all()):
            x = torch.cat([prefix_tokens, patches], dim=1)
            for block in blocks:
                x = block(x)
            return x[:, :p], x[:, p:]
        indices, valid = tp.padded_kept_indices(keep)
        padded = not bool(valid.all())
        attn_mask = tp.key_padding_mask(valid, p) if padded else None
        x = torch.cat([prefix_tokens, tp.gather_tokens(patches, indices)], dim=1)
        for block in blocks:
            x = block(x, attn_mask=attn_mask)
        return x[:, :p], tp.scatter_tokens(patches, x[:, p:], indices, valid if padded else None)

    def _pack_overhead_tokens(self, device: torch.device) -> float:
        if self.pack_overhead_tokens is not None:
            return float(self.pack_overhead_tokens)
        return PACK_OVERHEAD_TOKENS.get(device.type, PACK_OVERHEAD_TOKENS["cuda"])

    def _decoder_logits(self, patches: torch.Tensor, state: TokenState) -> torch.Tensor:
        """patches (B, N, E) -> the decoder's logits (B, C, h', w') at its own resolution (grid or stem's
        1/4)."""
        feature_map = tokens_to_map(self.vit.norm(patches), state.grid)
        return self.decoder(feature_map, state.skip) if self.decoder.needs_skip else self.decoder(feature_map)


# What one more forward of a group costs, in tokens of that forward (token_pass.pack_by_kept_count).
# CPU, measured on the 2-core project machine (docs/benchmarks.md, "Which packing wins on a CPU"): on
# real CamVid frames (kept counts within 20 % of each other) one padded forward per group was 7-11 %
# faster (medians of three interleaved runs) than 2-3 sub-batches or image by image; with counts spread
# over 10-90 % image by image was 1.6x faster than one padded forward. 256 pads the former into one
# forward and splits the latter into pairs. CUDA: not measured (no GPU in this project so far); a GPU
# idles on small forwards, so a larger price keeps typical batches in one padded forward.
PACK_OVERHEAD_TOKENS = {"cpu": 256.0, "cuda": 4096.0}


# Networks above this many parameters are refused before they are built: ViT-g/14 (1.0 B), the largest
# timm ViT with a class token in common use, fits; 1.5 B float32 parameters are 5.6 GiB before gradients.
MAX_PARAMETERS = 1_500_000_000


def _local_weights_file(pretrained: str | Path | bool | None) -> str | None:
    """The backbone weights file named by ``pretrained``, checked to exist; None for random or hub weights."""
    if pretrained is None or isinstance(pretrained, bool):
        return None
    path = Path(pretrained)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained backbone weights file not found: {path} "
                                "(pass pretrained=True to download timm's default weights instead)")
    return str(path)


def _create_backbone(name: str, pretrained: bool = False, **kwargs) -> nn.Module:
    try:
        return timm.create_model(name, pretrained=pretrained, num_classes=0, **kwargs)
    except TypeError as error:  # e.g. a CNN, which takes no img_size / dynamic_img_size
        raise ValueError(f"{name}: not a plain timm ViT/DeiT that DoViT can drive ({error})") from error


def _patch_size(name: str, vit: nn.Module) -> int:
    patch_embed = getattr(vit, "patch_embed", None)
    if patch_embed is None or not hasattr(vit, "blocks"):
        raise ValueError(f"{name}: not a plain timm ViT/DeiT that DoViT can drive (it has no patch_embed and "
                         "blocks)")
    return int(patch_embed.patch_size[0])


def _backbone_options(config: ModelConfig, patch_size: int) -> dict:
    height, width = config.input_size
    padded = (_round_up(height, patch_size), _round_up(width, patch_size))
    return dict(img_size=padded, dynamic_img_size=True, drop_path_rate=config.drop_path_rate)


def _attach_parts(config: ModelConfig, vit: nn.Module,
                  patch_size: int) -> tuple[tuple[int, ...], nn.ModuleList, nn.Module]:
    """Check that ``vit`` suits the config, swap in the conv stem if asked, build the aux heads and decoder.

    Runs twice: on the meta device (to refuse and size before allocating) and for real, in the same order,
    so that random initialisation draws the same numbers as building the parts inline would.
    """
    if getattr(vit, "cls_token", None) is None:
        raise ValueError(f"{config.backbone}: DoViT needs a class token (Eq. 8 merges into it)")
    depth = len(vit.blocks)
    layers = config.decision_layers or default_decision_layers(depth)
    if not layers or layers[0] < 1 or layers[-1] >= depth:
        raise ValueError(f"decision_layers must be increasing in [1, {depth - 1}] for {config.backbone} "
                         f"({depth} blocks), got {layers}")
    if config.stem in STEM_CLASSES:
        stem = STEM_CLASSES[config.stem]
        vit.patch_embed = stem(patch_size, vit.embed_dim, grid_size=vit.patch_embed.grid_size)
    embed_dim = int(vit.embed_dim)
    aux_heads = nn.ModuleList(build_aux_head(config, embed_dim) for _ in layers)
    skip_channels = getattr(vit.patch_embed, "skip_channels", 0)  # timm's PatchEmbed has no skip
    decoder = build_decoder(config.decoder, embed_dim, config.num_classes, config.decoder_channels,
                            skip_channels, config.class_names)
    return tuple(layers), aux_heads, decoder


def _round_up(value: int, multiple: int) -> int:
    return -(-int(value) // multiple) * multiple


def build_model(
    backbone: str = "vit_tiny_patch16_224",
    num_classes: int = 11,
    pretrained: str | bool | None = None,
    **options,
) -> DoViTSegmenter:
    """Build a DoViT segmenter on any timm plain ViT/DeiT.

    backbone: a timm name (vit_tiny/small/base/large_patch16_*, deit_*). pretrained: None/False for
    random init, a local weights file (.safetensors/.pth, loaded by timm; FileNotFoundError if missing), or
    True to fetch timm's default weights from the hub (needs a network). options: any other ``ModelConfig``
    field (decision_layers, decoder, stem, merge_stopped, input_size, default_xi, class_names, ...).
    """
    config = ModelConfig(backbone=backbone, num_classes=num_classes, **options)
    return DoViTSegmenter(config, pretrained=pretrained)
