"""ESPNetv2 (Mehta et al., CVPR 2019, arXiv 1811.11431) for semantic segmentation, written from the paper and
the layout of the released state dicts, so that the authors' Cityscapes weights load with ``strict=True``.

The encoder (``base_net``) is the EESP network to level 4 (1/16 of the input, 512 channels at s = 2.0); the
decoder is the paper's bottom-up path: an efficient pyramid pooling module (EPP) at each level, merged with
the encoder's 1/8, 1/4 and 1/2 maps through efficient point-wise convolutions (EPW).
DoViT uses the encoder as a hybrid ViT's patch embedding (``dovit.core.stems.EncoderStem``) and the decoder as
its segmentation head (``dovit.core.decoders.EncoderDecoderHead``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import partial
from pathlib import Path
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

Built = TypeVar("Built")

# s = 2.0: channels of levels 1-4; EESP blocks after each down-sampling at levels 3 and 4; receptive-field
# limits of the branches per level (the paper's Table 1 and Section 3.2); branches K = 4.
CHANNELS = (32, 128, 256, 512)
REPEATS = {3: 3, 4: 7}
RECEPTIVE_LIMITS = (13, 11, 9, 7)
BRANCHES = 4
REINFORCE_CHANNELS = 3  # the input image, average-pooled, reinforces every down-sampling (Fig. 4c)
DILATION_OF_KERNEL = {3: 1, 5: 2, 7: 3, 9: 4, 11: 5, 13: 6, 15: 7, 17: 8}  # 3x3 conv, effective size -> d
PYRAMID_SCALES = (2.0, 1.5, 1.0, 0.5, 0.1)

# Cityscapes train ids -> CamVid's 11 classes (../shared/data/pretrained/README.md): CamVid class -> ids.
CITYSCAPES_TO_CAMVID = {
    "Sky": (10,),
    "Building": (2, 3),
    "Pole": (5,),
    "Road": (0,),
    "Pavement": (1,),
    "Tree": (8, 9),
    "SignSymbol": (6, 7),
    "Fence": (4,),
    "Car": (13, 14, 15, 16),
    "Pedestrian": (11,),
    "Bicyclist": (12, 17, 18),
}


_FOLDING = ContextVar("espnetv2_batchnorm_folding", default=True)


@contextmanager
def as_written() -> Iterator[None]:
    """Within it (this thread or task only), eval mode runs the modules as written: every BatchNorm on its
    own and the pyramid pooling's channel shuffle and group conv, not the dense merge. The reference that
    the fast path is tested and timed against, and what FLOPs are counted on (the network's own operations,
    not the zeros a dense merge multiplies)."""
    token = _FOLDING.set(False)
    try:
        yield
    finally:
        _FOLDING.reset(token)


def folds_batchnorm(norm: nn.BatchNorm2d) -> bool:
    """Whether ``norm`` runs folded into the conv before it: in eval mode (running statistics, a fixed affine
    map) and without gradients (folded weights are cached constants; training and autograd see the modules as
    written, and so does the ONNX exporter, which runs with gradients on; ONNX Runtime folds on its own);
    not inside ``as_written()``."""
    return _FOLDING.get() and not norm.training and not torch.is_grad_enabled()


def cached_per_version(
    owner: nn.Module, name: str, sources: tuple[torch.Tensor, ...], build: Callable[[], Built]
) -> Built:
    """``build()`` (run without gradients) once per version of ``sources``, kept in ``owner``'s plain
    attribute ``name`` (outside state_dict). The key is each source's storage, in-place version counter and
    device: load_state_dict and optimizer steps write in place (a new version), ``.to()`` moves the storage.
    Key derived tensors on the parameters they come from, not on another cache's output (a freed cache's
    storage can come back at the same address with the same version). Built outside inference mode, so that
    a cache made under ``torch.inference_mode`` can still enter a forward with gradients later."""
    key = tuple((t.data_ptr(), t._version, t.device) for t in sources)
    cached = owner.__dict__.get(name)
    if cached is None or cached[0] != key:
        with torch.inference_mode(False), torch.no_grad():
            cached = (key, build())
        owner.__dict__[name] = cached
    return cached[1]


def folded_conv_bn(
    owner: nn.Module,
    name: str,
    norm: nn.BatchNorm2d,
    sources: tuple[torch.Tensor | None, ...],
    weight: Callable[[], torch.Tensor],
    bias: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of a conv followed by eval-mode ``norm`` as one conv: w * g / sqrt(v + eps) and
    (b - m) * g / sqrt(v + eps) + beta (g, beta, m, v: the BatchNorm's weight, bias, running mean and
    variance). ``weight()`` gives the conv's weight (it may derive one, e.g. stacked or placed) from
    ``sources``, the parameters it reads; ``bias``: the conv's, if any. Cached on ``owner`` under ``name``
    per version of the sources and the BatchNorm's tensors; the weight keeps the memory format of
    ``weight()``.
    """
    def fold() -> tuple[torch.Tensor, torch.Tensor]:
        w, b = fuse_conv_bn_weights(
            weight(), bias, norm.running_mean, norm.running_var, norm.eps, norm.weight, norm.bias
        )
        return w.detach(), b.detach()

    keys = (*sources, bias, norm.weight, norm.bias, norm.running_mean, norm.running_var)
    return cached_per_version(owner, name, tuple(t for t in keys if t is not None), fold)


def conv_bn(
    owner: nn.Module, name: str, x: torch.Tensor, conv: nn.Conv2d, norm: nn.BatchNorm2d
) -> torch.Tensor:
    """norm(conv(x)); where ``folds_batchnorm(norm)``, one conv with the BatchNorm folded in (the same affine
    map up to float rounding, one pass over the output fewer), cached on ``owner`` under ``name``."""
    if not folds_batchnorm(norm):
        return norm(conv(x))
    weight, bias = folded_conv_bn(owner, name, norm, (conv.weight,), lambda: conv.weight, conv.bias)
    return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)


class ConvBN(nn.Module):
    """conv (no bias) -> BatchNorm -> optional PReLU; keys conv / bn / act as in the released files."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int,
        stride: int = 1,
        groups: int = 1,
        dilation: int = 1,
        act: bool = True,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            cin, cout, kernel, stride, (kernel - 1) // 2 * dilation, dilation, groups, bias=False
        )
        self.bn = nn.BatchNorm2d(cout)
        if act:
            self.act = nn.PReLU(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = conv_bn(self, "_folded_cache", x, self.conv, self.bn)
        return self.act(x) if hasattr(self, "act") else x


class DepthwiseDilated(nn.Module):
    def __init__(self, channels: int, stride: int, dilation: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride, dilation, dilation, channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class BNAct(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.act = nn.PReLU(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(x))


class EESP(nn.Module):
    """Extremely efficient spatial pyramid (Fig. 1c): reduce with a group 1x1 conv, K depth-wise dilated
    3x3 branches fused hierarchically (each adds the previous, against gridding), merge with a group 1x1 conv.
    ``downsample``: stride 2 and no residual nor activation (the DownSampler adds them)."""

    def __init__(self, cin: int, cout: int, receptive_limit: int, downsample: bool = False) -> None:
        super().__init__()
        width = cout // BRANCHES
        self.downsample = downsample
        self.proj_1x1 = ConvBN(cin, width, 1, groups=BRANCHES)
        sizes = sorted(3 + 2 * i if 3 + 2 * i <= receptive_limit else 3 for i in range(BRANCHES))
        self.spp_dw = nn.ModuleList(
            DepthwiseDilated(width, 2 if downsample else 1, DILATION_OF_KERNEL[k]) for k in sizes
        )
        self.conv_1x1_exp = ConvBN(cout, cout, 1, groups=BRANCHES, act=False)
        self.br_after_cat = BNAct(cout)
        self.module_act = nn.PReLU(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.proj_1x1(x)
        branches = [self.spp_dw[0](reduced)]
        for branch in self.spp_dw[1:]:
            branches.append(branch(reduced) + branches[-1])
        expanded = self.conv_1x1_exp(self.br_after_cat(torch.cat(branches, 1)))
        if self.downsample:
            return expanded
        if expanded.shape == x.shape:
            expanded = expanded + x
        return self.module_act(expanded)


class DownSampler(nn.Module):
    """Strided EESP beside a 3x3 average pool (concatenated), plus the pooled input image (Fig. 4c)."""

    def __init__(self, cin: int, cout: int, receptive_limit: int) -> None:
        super().__init__()
        self.eesp = EESP(cin, cout - cin, receptive_limit, downsample=True)
        self.avg = nn.AvgPool2d(3, 2, 1)
        self.inp_reinf = nn.Sequential(
            ConvBN(3, REINFORCE_CHANNELS, 3), ConvBN(REINFORCE_CHANNELS, cout, 1, act=False)
        )
        self.act = nn.PReLU(cout)

    def forward(self, x: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        pooled = self.avg(x)
        out = torch.cat([pooled, self.eesp(x)], 1)
        while image.shape[-2:] != pooled.shape[-2:]:
            image = F.avg_pool2d(image, 3, 2, 1)
        return self.act(out + self.inp_reinf(image))


class ESPNetv2Encoder(nn.Module):
    """The EESP network to level 4; ``forward`` returns the maps at 1/2, 1/4, 1/8 and 1/16."""

    def __init__(self) -> None:
        super().__init__()
        c1, c2, c3, c4 = CHANNELS
        self.level1 = ConvBN(3, c1, 3, stride=2)
        self.level2_0 = DownSampler(c1, c2, RECEPTIVE_LIMITS[0])
        self.level3_0 = DownSampler(c2, c3, RECEPTIVE_LIMITS[1])
        self.level3 = nn.ModuleList(EESP(c3, c3, RECEPTIVE_LIMITS[2]) for _ in range(REPEATS[3]))
        self.level4_0 = DownSampler(c3, c4, RECEPTIVE_LIMITS[2])
        self.level4 = nn.ModuleList(EESP(c4, c4, RECEPTIVE_LIMITS[3]) for _ in range(REPEATS[4]))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        l1 = self.level1(image)
        l2 = self.level2_0(l1, image)
        l3 = self.level3_0(l2, image)
        for block in self.level3:
            l3 = block(l3)
        l4 = self.level4_0(l3, image)
        for block in self.level4:
            l4 = block(l4)
        return l1, l2, l3, l4


class ChannelShuffle(nn.Module):
    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        return x.reshape(b, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class DecoderConvBN(nn.Module):
    """conv -> BN -> PReLU under ``cbr`` (the decoder's keys: ``cbr.0``, ``cbr.1``, ``cbr.2``)."""

    def __init__(self, cin: int, cout: int, kernel: int, groups: int = 1) -> None:
        super().__init__()
        self.cbr = nn.Sequential(
            nn.Conv2d(cin, cout, kernel, 1, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.PReLU(cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv, norm, act = self.cbr
        return act(conv_bn(self, "_folded_cache", x, conv, norm))


class DecoderBNAct(nn.Module):
    """BN -> PReLU under ``br`` (the decoder's keys: ``br.0``, ``br.1``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.br = nn.Sequential(nn.BatchNorm2d(channels), nn.PReLU(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.br(x)


def adaptive_avg_pool(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``F.adaptive_avg_pool2d(x, size)`` for (B, C, H, W) ``x``; while exporting, the same averages as two
    matrix products, because the exporter's own decomposition fixes the pooling windows to the traced input's
    size (an ONNX graph of the decoder would then fail, or pool wrongly, at any other working size)."""
    if not torch.compiler.is_exporting():
        return F.adaptive_avg_pool2d(x, size)
    rows = _pooling_matrix(x.shape[-2], size[0], x)
    columns = _pooling_matrix(x.shape[-1], size[1], x)
    return torch.matmul(torch.matmul(rows, x), columns.transpose(0, 1))


def _pooling_matrix(source: int, target: int, like: torch.Tensor) -> torch.Tensor:
    """(target, source): row i averages source cells [floor(i * source / target), ceil((i + 1) * source /
    target)), adaptive pooling's windows."""
    index = torch.arange(target, device=like.device)
    start = (index * source) // target
    end = ((index + 1) * source + target - 1) // target
    cells = torch.arange(source, device=like.device)
    inside = (cells[None, :] >= start[:, None]) & (cells[None, :] < end[:, None])
    return inside.to(like.dtype) / (end - start)[:, None].to(like.dtype)


class PyramidPool(nn.Module):
    """Efficient pyramid pooling (the paper's Fig. 6): project, one depth-wise 3x3 per scale on the map
    resized to that scale (at least 5 x 5), shuffle and merge with a group 3x3 conv, then a 1x1 conv."""

    def __init__(self, cin: int, proj: int, cout: int, last: bool = False) -> None:
        super().__init__()
        self.projection_layer = DecoderConvBN(cin, proj, 1)
        self.stages = nn.ModuleList(
            nn.Conv2d(proj, proj, 3, 1, 1, groups=proj, bias=False) for _ in PYRAMID_SCALES
        )
        n = len(PYRAMID_SCALES)
        self.merge_layer = nn.Sequential(
            DecoderBNAct(proj * n),
            ChannelShuffle(n),
            DecoderConvBN(proj * n, proj, 3, groups=proj),
            nn.Conv2d(proj, cout, 1, bias=last),
        )
        self.last = last
        if not last:
            self.br = DecoderBNAct(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.projection_layer(x)
        size = x.shape[-2:]
        # without gradients in eval mode the merge's first BatchNorm runs inside the stages' convs: a
        # per-channel affine map commutes with the average pooling and bilinear resizing around them (both
        # weigh with sums of 1), so each stage adds its slice of the BatchNorm's shift as a bias
        fold = folds_batchnorm(self.merge_layer[0].br[0])
        stages = self._folded_stages() if fold else self.stages
        outs = []
        for scale, stage in zip(PYRAMID_SCALES, stages, strict=True):
            scaled = tuple(max(5, math.ceil(side * scale)) for side in size)
            if scale < 1.0:
                h = F.interpolate(
                    stage(adaptive_avg_pool(x, scaled)), size, mode="bilinear", align_corners=True
                )
            elif scale > 1.0:
                h = adaptive_avg_pool(
                    stage(F.interpolate(x, scaled, mode="bilinear", align_corners=True)), size
                )
            else:
                h = stage(x)
            outs.append(h)
        if self.training or not _FOLDING.get():
            out = self.merge_layer(torch.cat(outs, 1))
            return out if self.last else self.br(out)
        return self._merge(torch.cat(outs, 1), fold)

    def _folded_stages(self) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        """The depth-wise stage convs with the merge's first BatchNorm folded in, one slice per stage."""
        norm = self.merge_layer[0].br[0]
        sources = tuple(stage.weight for stage in self.stages)
        weight, bias = folded_conv_bn(self, "_folded_stages_cache", norm, sources, lambda: torch.cat(sources))
        groups = self.stages[0].groups
        return [
            partial(F.conv2d, weight=w, bias=b, padding=1, groups=groups)
            for w, b in zip(weight.chunk(len(self.stages)), bias.chunk(len(self.stages)), strict=True)
        ]

    def _merge(self, x: torch.Tensor, fold: bool) -> torch.Tensor:
        """merge_layer (and ``br``) in eval mode, without its channel shuffle: the shuffle and the group 3x3
        conv as one dense conv whose weight places each group's kernels at the channels the shuffle would have
        brought it (on a CPU one dense conv runs faster than a shuffle copy plus a conv with 10 groups); the
        same sums. ``fold``: the stages already applied the first BatchNorm, and the others fold into the
        convs before them."""
        norm_act, _, merge, project = self.merge_layer
        conv, norm, act = merge.cbr
        if not fold:
            out = project(act(norm(F.conv2d(norm_act(x), self._dense_merge_weight(), None, 1, 1))))
            return out if self.last else self.br(out)
        dense = self._dense_merge_weight
        weight, bias = folded_conv_bn(self, "_folded_merge_cache", norm, (conv.weight,), dense)
        x = act(F.conv2d(norm_act.br[1](x), weight, bias, 1, 1))
        if self.last:
            return project(x)
        norm, act = self.br.br
        return act(conv_bn(self, "_folded_project_cache", x, project, norm))

    def _dense_merge_weight(self) -> torch.Tensor:
        """The group 3x3 conv's weight (10 groups of 5 channels) as a dense (10, 50, 3, 3) one: group g reads
        channels i * 10 + g, where ChannelShuffle(5) would have brought its i-th input. Cached without
        gradients; with them built afresh, so that gradients reach the weight (calibration trains in eval
        mode)."""
        weight = self.merge_layer[2].cbr[0].weight
        groups = weight.shape[0]

        def place() -> torch.Tensor:  # (G, P, 1, 3, 3) x one-hot (G, 1, G, 1, 1) -> (G, P * G, 3, 3)
            one_hot = torch.eye(groups, dtype=weight.dtype, device=weight.device)[:, None, :, None, None]
            dense = (weight[:, :, None] * one_hot).reshape(groups, -1, *weight.shape[-2:])
            return dense.contiguous(memory_format=torch.channels_last)

        if torch.is_grad_enabled():
            return place()
        return cached_per_version(self, "_dense_cache", (weight,), place)


class PointwiseMerge(nn.Module):
    """Efficient point-wise convolution (EPW): a group 3x3 conv gated per channel by the global context."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.wt_layer = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1, bias=False), nn.Sigmoid()
        )
        self.expansion_layer = DecoderConvBN(cin, cout, 3, groups=math.gcd(cin, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.expansion_layer(x) * self.wt_layer(x)


class ESPNetv2Decoder(nn.Module):
    """Bottom-up decoder: EPP at 1/16, then three x2 steps, each adding an EPW projection of an encoder
    map."""

    def __init__(self, num_classes: int, base: int = 16) -> None:
        super().__init__()
        planes = (4 * base, 3 * base, 2 * base)
        proj = min(num_classes // 2, base)
        c1, c2, c3, c4 = CHANNELS
        self.bu_dec_l1 = PyramidPool(c4, proj, planes[0])
        self.bu_dec_l2 = PyramidPool(planes[0], proj, planes[1])
        self.bu_dec_l3 = PyramidPool(planes[1], proj, planes[2])
        self.bu_dec_l4 = PyramidPool(planes[2], proj, num_classes, last=True)
        self.merge_enc_dec_l2 = PointwiseMerge(c3, planes[0])
        self.merge_enc_dec_l3 = PointwiseMerge(c2, planes[1])
        self.merge_enc_dec_l4 = PointwiseMerge(c1, planes[2])
        self.bu_br_l2 = nn.Sequential(nn.BatchNorm2d(planes[0]), nn.PReLU(planes[0]))
        self.bu_br_l3 = nn.Sequential(nn.BatchNorm2d(planes[1]), nn.PReLU(planes[1]))
        self.bu_br_l4 = nn.Sequential(nn.BatchNorm2d(planes[2]), nn.PReLU(planes[2]))

    def forward(self, l1: torch.Tensor, l2: torch.Tensor, l3: torch.Tensor, l4: torch.Tensor) -> torch.Tensor:
        """Encoder maps -> logits at 1/2 of the input."""
        x = self.bu_dec_l1(l4)
        steps = (
            (l3, self.merge_enc_dec_l2, self.bu_br_l2, self.bu_dec_l2),
            (l2, self.merge_enc_dec_l3, self.bu_br_l3, self.bu_dec_l3),
            (l1, self.merge_enc_dec_l4, self.bu_br_l4, self.bu_dec_l4),
        )
        for skip, merge, norm, pool in steps:
            # to the encoder map's size, not x2: the same where the authors' code runs (sides multiples
            # of 16), and it also runs where halving rounded up (360 rows: 23 at 1/16, 45 at 1/8)
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=True)
            x = pool(norm(merge(skip) + x))
        return x


class ESPNetv2Segmentation(nn.Module):
    """The released segmenter: ``base_net`` + decoder; logits at the input size (bilinear, align_corners)."""

    def __init__(self, num_classes: int = 20) -> None:
        super().__init__()
        self.base_net = ESPNetv2Encoder()
        self.decoder = ESPNetv2Decoder(num_classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logits = self.decoder(*self.base_net(image))
        return F.interpolate(logits, size=image.shape[-2:], mode="bilinear", align_corners=True)

    def load_released(self, path: str | Path) -> None:
        """Load the authors' state dict (``strict=True``)."""
        encoder, decoder = released_parts(path)
        self.base_net.load_state_dict(encoder, strict=True)
        self.decoder.load_state_dict(decoder, strict=True)


def released_parts(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The released state dict split into the encoder's (``base_net.*``, prefix removed) and the decoder's
    tensors (the rest: the authors keep the decoder at the top level)."""
    state = load_released_state(path)
    encoder = {k.removeprefix("base_net."): v for k, v in state.items() if k.startswith("base_net.")}
    return encoder, {k: v for k, v in state.items() if not k.startswith("base_net.")}


def load_released_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The released ``.pth`` (a plain state dict), on the CPU; a clear error when it is missing."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"ESPNetv2 weights not found: {path} (the Cityscapes file "
            "espnetv2_s_2.0_city_1024x512.pth, see ../shared/data/pretrained/README.md)"
        )
    return torch.load(path, map_location="cpu", weights_only=True)


def class_groups(class_names: list[str]) -> list[tuple[int, ...]]:
    """For each CamVid class name (in the model's order), the Cityscapes train ids it collects."""
    missing = [name for name in class_names if name not in CITYSCAPES_TO_CAMVID]
    if missing:
        raise ValueError(
            f"no Cityscapes class maps to {missing}: the ESPNetv2 head serves CamVid's 11 classes"
        )
    return [CITYSCAPES_TO_CAMVID[name] for name in class_names]


def group_logits(logits: torch.Tensor, groups: list[tuple[int, ...]]) -> torch.Tensor:
    """(B, 20, H, W) Cityscapes logits -> (B, len(groups), H, W): log of the summed probability of each group
    (logsumexp), so the argmax is the group with the most probability mass."""
    return torch.stack([torch.logsumexp(logits[:, list(ids)], dim=1) for ids in groups], dim=1)
