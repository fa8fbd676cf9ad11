"""dovit.interop.mmseg_checkpoint against MMSegmentation's own modules: random-init MMSeg ViT + Segmenter /
SETR heads, converted; official DoViT checkpoints; refusals."""
import importlib.machinery
import importlib.util
import sys
import types

import pytest
import torch
import torch.nn.functional as F

import dovit
from dovit import convert
from dovit.interop import mmseg_checkpoint

TOLERANCE = 1e-4
SIZE = (64, 96)  # a 4 x 6 token grid at patch 16
CLASSES = ("road", "sky", "car", "tree", "person")
PALETTE = [[128, 64, 128], [70, 130, 180], [0, 0, 142], [107, 142, 35], [220, 20, 60]]


# ------------------------------------------------------------------------------------------ no MMSeg needed
def test_saved_config_is_read_as_data_never_executed(tmp_path):
    marker = tmp_path / "ran"
    text = ("model = dict(backbone=dict(num_heads=3, img_size=(64, 96), norm_cfg=dict(type='LN', "
            f"eps=1e-06)))\nevil = __import__('pathlib').Path({str(marker)!r}).touch()\ncrop_size = (512, "
            "512)\n")
    parsed = mmseg_checkpoint.parse_mmengine_config(text)
    assert parsed["model"]["backbone"] == {"num_heads": 3, "img_size": (64, 96), "norm_cfg": {"type": "LN",
                                                                                              "eps": 1e-6}}
    assert parsed["evil"] is None and parsed["crop_size"] == (512, 512) and not marker.exists()


@pytest.mark.parametrize("key,expected", [
    ("backbone.layers.11.attn.attn.in_proj_weight", "vit.blocks.11.attn.qkv.weight"),
    ("backbone.layers.0.ffn.layers.0.0.bias", "vit.blocks.0.mlp.fc1.bias"),
    ("backbone.layers.3.ffn.layers.1.weight", "vit.blocks.3.mlp.fc2.weight"),
    ("backbone.ln1.weight", "vit.norm.weight"),
    ("decode_head.layers.1.ln2.bias", "decoder.blocks.1.norm2.bias"),
    ("decode_head.cls_emb", "decoder.class_embedding"),
    ("backbone.layers.0.attn.attn.extra", None),
    ("decode_head.unknown.weight", None),
])
def test_key_mapping(key, expected):
    assert mmseg_checkpoint.dovit_name(key, "segmenter") == expected


def test_a_pickled_object_is_refused_not_unpickled(tmp_path):
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {"backbone.cls_token": torch.zeros(1, 1, 8)}, "meta": {"hook": _Marker()}},
               path)
    with pytest.raises(mmseg_checkpoint.ConversionError, match="weights_only=True"):
        mmseg_checkpoint.load_mmseg_checkpoint(path)


class _Marker:
    pass


# ------------------------------------------------------------------------------------------ MMSeg
def _stub_mmcv_ops() -> None:
    """mmseg.models imports mmcv.ops, whose compiled extensions mmcv-lite lacks: members raise on use."""
    if "mmcv.ops" in sys.modules or importlib.util.find_spec("mmcv._ext") is not None:
        return
    stub = types.ModuleType("mmcv.ops")
    stub.__spec__ = importlib.machinery.ModuleSpec("mmcv.ops", None)

    def missing(name):
        if name.startswith("__"):
            raise AttributeError(name)

        def unavailable(*args, **kwargs):
            raise RuntimeError(f"mmcv.ops.{name} needs mmcv's compiled extensions (a test stub stands in)")
        return type(name, (), {"__init__": unavailable, "__call__": unavailable})

    stub.__getattr__ = missing
    sys.modules["mmcv.ops"] = stub


@pytest.fixture(scope="module")
def mmseg():
    pytest.importorskip("mmseg",
                        reason="mmsegmentation not installed (pip install -r requirements-convert-test.txt)")
    _stub_mmcv_ops()
    from mmengine.config import Config
    from mmseg.models.backbones import VisionTransformer
    from mmseg.models.decode_heads import SegmenterMaskTransformerHead, SETRUPHead
    return types.SimpleNamespace(Config=Config, VisionTransformer=VisionTransformer,
                                 SegmenterMaskTransformerHead=SegmenterMaskTransformerHead,
                                 SETRUPHead=SETRUPHead)


BACKBONE = dict(type="VisionTransformer", img_size=SIZE, patch_size=16, embed_dims=192, num_layers=12,
                num_heads=3,
                norm_cfg=dict(type="LN", eps=1e-6), with_cls_token=True, interpolate_mode="bicubic")
HEADS = {
    "segmenter": dict(type="SegmenterMaskTransformerHead", in_channels=192, channels=192, num_classes=5,
                      num_layers=2,
                      num_heads=3, embed_dims=192, dropout_ratio=0.0),
    "naive": dict(type="SETRUPHead", in_channels=192, channels=64, num_classes=5, num_convs=1, up_scale=4,
                  kernel_size=1, norm_cfg=dict(type="BN"), dropout_ratio=0.0, align_corners=False),
    "pup": dict(type="SETRUPHead", in_channels=192, channels=64, num_classes=5, num_convs=4, up_scale=2,
                kernel_size=3, norm_cfg=dict(type="BN"), dropout_ratio=0.0, align_corners=False),
}


def _build(mmseg, kind: str, num_classes: int = len(CLASSES), **backbone_options):
    """A random MMSeg ViT-T + head, every parameter and BN statistic perturbed so that a swapped key shows."""
    torch.manual_seed(0)
    backbone_cfg = {**BACKBONE, "final_norm": kind == "segmenter", **backbone_options}
    head_cfg = dict(HEADS[kind], num_classes=num_classes)
    vit = mmseg.VisionTransformer(**{k: v for k, v in backbone_cfg.items() if k != "type"})
    head_class = mmseg.SegmenterMaskTransformerHead if kind == "segmenter" else mmseg.SETRUPHead
    head = head_class(**{k: v for k, v in head_cfg.items() if k != "type"})
    vit.init_weights()
    head.init_weights()
    perturb_(vit, head)
    cfg = mmseg.Config(dict(model=dict(type="EncoderDecoder", backbone=backbone_cfg, decode_head=head_cfg,
                                       data_preprocessor=dict(type="SegDataPreProcessor", mean=[127.5] * 3,
                                                              std=[127.5] * 3, bgr_to_rgb=True)),
                            crop_size=SIZE))
    vit.eval()  # MMSeg's VisionTransformer.train() returns None, so no chaining
    head.eval()
    return vit, head, cfg


@torch.no_grad()
def perturb_(*modules, scale: float = 0.05) -> None:
    """Add scale * N(0, 1) to every floating tensor of the modules' state dicts (running variances kept >
    0.5)."""
    for module in modules:
        for name, tensor in module.state_dict().items():
            if tensor.is_floating_point():
                tensor.add_(scale * torch.randn_like(tensor))
                if name.endswith("running_var"):
                    tensor.abs_().add_(0.5)


def _save(tmp_path, vit, head, cfg, extra=None, meta=True) -> str:
    """An MMSeg 1.x checkpoint (meta: the config text, classes, palette); meta=False: a bare state dict."""
    state = {**{f"backbone.{k}": v for k, v in vit.state_dict().items()},
             **{f"decode_head.{k}": v for k, v in head.state_dict().items()}, **(extra or {})}
    path = tmp_path / "mmseg.pth"
    saved_meta = {"cfg": cfg.pretty_text, "dataset_meta": {"classes": CLASSES, "palette": PALETTE}}
    torch.save({"state_dict": state, "meta": saved_meta} if meta else state, path)
    return str(path)


def _mmseg_logits(vit, head, pixels):
    """MMSeg's head output and the same upsampled to the input (EncoderDecoder's bilinear resize)."""
    with torch.no_grad():
        out = head(vit(pixels))
    return out, F.interpolate(out, size=pixels.shape[-2:], mode="bilinear", align_corners=False)


def _convert(tmp_path, path, *flags) -> dovit.DoViTSegmenter:
    assert convert.main([path, str(tmp_path / "dovit"), *flags]) == 0
    return dovit.load_checkpoint(tmp_path / "dovit").eval()


@pytest.mark.parametrize("size", [SIZE, (80, 112)])
def test_segmenter_logits_equal_mmseg(mmseg, tmp_path, size):
    """(80, 112) also checks the position embedding, resized as MMSeg resizes it at run time."""
    vit, head, cfg = _build(mmseg, "segmenter")
    flags = ["--input-size", *map(str, size)] if size != SIZE else []
    model = _convert(tmp_path, _save(tmp_path, vit, head, cfg), *flags)
    assert model.config.decoder == "segmenter" and model.config.backbone == "vit_tiny_patch16_224"
    assert model.config.class_names == list(CLASSES) and model.config.class_colors[0] == (128, 64, 128)
    assert model.config.mean == (0.5, 0.5, 0.5) and model.config.input_size == size
    pixels = torch.randn(2, 3, *size)
    _, expected = _mmseg_logits(vit, head, pixels)
    with torch.no_grad():
        logits = model(pixels, xi=1.0).logits
    gap = float((logits - expected).abs().max())
    print(f"segmenter {size}: max |dlogit| = {gap:.2e}")
    assert gap <= TOLERANCE


@pytest.mark.parametrize("kind,decoder", [("pup", "pup"), ("naive", "naive_up4")])
def test_setr_logits_equal_mmseg(mmseg, tmp_path, kind, decoder):
    """SETR-Naive: MMSeg upsamples x4 inside the head and again to the image; decoder 'naive_up4' does too."""
    vit, head, cfg = _build(mmseg, kind)
    model = _convert(tmp_path, _save(tmp_path, vit, head, cfg))
    assert model.config.decoder == decoder and model.config.decoder_channels == 64
    pixels = torch.randn(2, 3, *SIZE)
    _, expected = _mmseg_logits(vit, head, pixels)
    with torch.no_grad():
        gap = float((model(pixels, xi=1.0).logits - expected).abs().max())
    print(f"SETR {kind}: max |dlogit| = {gap:.2e}")
    assert gap <= TOLERANCE


@pytest.mark.parametrize("released,decoder", [
    ("segmenter/segmenter_vit-t_mask_8xb1-160k_ade20k-512x512.py", "segmenter"),
    ("setr/setr_vit-l_naive_8xb1-80k_cityscapes-768x768.py", "naive_up4"),
])
def test_a_released_mmseg_config_converts_and_matches_encode_decode(mmseg, tmp_path, released, decoder):
    """MMSeg's own config file and EncoderDecoder.encode_decode (its inference path, final resize included),
    at 64 x 96 where MMSeg resizes the 512 / 768-px position embedding on the fly and the converter ahead of
    time. SETR's ViT-L becomes a ViT-T (out_indices moved to match) to keep the test small."""
    import os

    import mmseg as package
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    register_all_modules()
    cfg = mmseg.Config.fromfile(os.path.join(os.path.dirname(package.__file__), ".mim", "configs", released))
    cfg.model.pretrained = None
    if decoder == "naive_up4":
        cfg.model.backbone.update(embed_dims=192, num_layers=12, num_heads=3, out_indices=(2, 5, 8, 11),
                                  init_cfg=None)
        cfg.model.decode_head.in_channels = 192
        cfg.model.decode_head.norm_cfg = dict(type="BN", requires_grad=True)  # SyncBN needs a process group
        cfg.model.auxiliary_head = None
    torch.manual_seed(0)
    segmentor = MODELS.build(cfg.model)
    segmentor.init_weights()
    with torch.no_grad():
        for tensor in segmentor.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(0.05 * torch.randn_like(tensor))
    segmentor.eval()
    path = tmp_path / "released.pth"
    torch.save({"state_dict": segmentor.state_dict(), "meta": {"cfg": cfg.pretty_text}}, path)
    model = _convert(tmp_path, str(path), "--input-size", *map(str, SIZE))
    assert model.config.decoder == decoder
    pixels = torch.randn(1, 3, *SIZE)
    with torch.no_grad():
        expected = segmentor.encode_decode(pixels, [dict(img_shape=SIZE)])
        gap = float((model(pixels, xi=1.0).logits - expected).abs().max())
    print(f"released {decoder}: max |dlogit| = {gap:.2e}")
    assert gap <= TOLERANCE


# ------------------------------------------------------------------------------------------ official DoViT
# code Key names and shapes as the official code (github.com/FLHonker/DoViT-code, MMSeg 0.x) saves them, read
# from its mmseg/models/backbones/do_vit.py (timm-style attention, aux heads inside the backbone), segmentors/
# do_encoder_decoder.py and local_configs/segmenter/segmenter_dovit-*.py (FCNHead aux heads, 256 channels). No
# real official checkpoint can be downloaded here: these are built from MMSeg's own modules and renamed.
# the official configs' aux heads, at ViT-T width (norm_cfg BN: SyncBN needs a process group)
OFFICIAL_AUX = {
    "segmenter": dict(type="FCNHead", in_channels=192, channels=256, in_index=0, dropout_ratio=0, num_convs=1,
                      kernel_size=1, concat_input=False, num_classes=5, norm_cfg=dict(type="BN"),
                      act_cfg=dict(type="ReLU"), align_corners=False),
    "naive": dict(type="SETRUPHead", in_channels=192, channels=256, in_index=0, dropout_ratio=0, num_convs=1,
                  up_scale=4, kernel_size=1, num_classes=5, norm_cfg=dict(type="BN"),
                  act_cfg=dict(type="ReLU"),
                  align_corners=False),
}
AUX_KINDS = {"segmenter": "fcn", "naive": "setr_up"}


def test_official_attention_keys_are_renamed_to_mmseg_ones():
    assert (mmseg_checkpoint.mmseg_name("backbone.layers.7.attn.qkv.weight")
            == "backbone.layers.7.attn.attn.in_proj_weight")
    assert (mmseg_checkpoint.mmseg_name("backbone.layers.0.attn.proj.bias")
            == "backbone.layers.0.attn.attn.out_proj.bias")
    # the Segmenter head keeps MMSeg's attention (its layers are mmseg.models.backbones.vit's)
    assert (mmseg_checkpoint.mmseg_name("decode_head.layers.1.attn.attn.in_proj_bias")
            == "decode_head.layers.1.attn.attn.in_proj_bias")


def _official_aux_head(mmseg, kind: str, **options):
    """One official aux head built by MMSeg's own FCNHead / SETRUPHead, every tensor and BN statistic
    perturbed."""
    from mmseg.models.decode_heads import FCNHead

    head_cfg = {**OFFICIAL_AUX[kind], **options}
    head_class = FCNHead if head_cfg["type"] == "FCNHead" else mmseg.SETRUPHead
    head = head_class(**{key: value for key, value in head_cfg.items() if key != "type"})
    head.init_weights()
    perturb_(head, scale=0.1)
    for name, tensor in head.state_dict().items():
        if name.endswith("num_batches_tracked"):
            tensor.fill_(1234)
    return head.eval()


def _official_checkpoint(mmseg, tmp_path, *, kind="segmenter", config=True, distiller=False, exit_conf=0.96,
                         aux_options=None, extra=None):
    """An official DoViT-S-style checkpoint at ViT-T size: DoViT backbone keys, 3 aux heads (FCNHead with the
    Segmenter head, as its Segmenter configs; SETRUPHead with SETR-Naive, as its ADE20K SETR configs), MMSeg
    0.x meta (``config`` text, CLASSES, PALETTE). Returns (path, vit, head, aux_heads) for the reference
    forward."""
    vit, head, _ = _build(mmseg, kind, patch_bias=True)  # MMSeg 0.x's PatchEmbed has a bias
    aux_cfg = {**OFFICIAL_AUX[kind], **(aux_options or {})}
    aux_heads = [_official_aux_head(mmseg, kind, **(aux_options or {})) for _ in range(3)]
    aux = {f"backbone.auxiliary_head.{k}.{name}": tensor for k, module in enumerate(aux_heads)
           for name, tensor in module.state_dict().items()}
    state = {**{f"backbone.{k}".replace("attn.attn.in_proj_", "attn.qkv.").replace("attn.attn.out_proj",
                                                                                   "attn.proj"): v
                for k, v in vit.state_dict().items()},
             **aux, **{f"decode_head.{k}": v for k, v in head.state_dict().items()}, **(extra or {})}
    assert ("backbone.layers.0.attn.qkv.weight" in state
            and "backbone.auxiliary_head.2.conv_seg.weight" in state)
    if distiller:
        state = {**{f"student.{k}": v for k, v in state.items()},
                 **{f"teacher.{k}": v for k, v in state.items()
                    if not k.startswith("backbone.auxiliary_head")},
                 "generation.0.weight": torch.zeros(8, 8, 3, 3)}
    backbone = {**BACKBONE, "type": "DoViT", "final_norm": kind == "segmenter", "out_indices": (2, 5, 8, 11),
                "exit_conf": exit_conf, "diff_conf": 0.02, "max_iters": 140000}
    cfg = mmseg.Config(dict(model=dict(type="DoEncoderDecoder", backbone=backbone, decode_head=HEADS[kind],
                                       auxiliary_head=[aux_cfg] * 3),
                            img_norm_cfg=dict(mean=[127.5] * 3, std=[127.5] * 3, to_rgb=True),
                            crop_size=SIZE))
    meta = {"config": cfg.pretty_text, "CLASSES": CLASSES, "PALETTE": PALETTE} if config else {}
    path = tmp_path / "official.pth"
    torch.save({"state_dict": state, "meta": meta, "optimizer": {"state": {}, "param_groups": []}}, path)
    return str(path), vit, head, aux_heads


def _official_aux_logits(aux_head, token_map, like):
    """(official, DoViT's at the official resolution): the official aux head on a (B, E, h, w) token map as
    ``DoViT.forward`` runs it (``auxiliary_head[k].forward_test([x1], ...)`` = its forward), and ``like``,
    DoViT's (B, C, h, w) logits, upsampled bilinearly to that output: SETRUPHead's x4 upsampling comes before
    its 1x1 classifier, and the two commute."""
    with torch.no_grad():
        official = aux_head([token_map])
    return official, F.interpolate(like, size=official.shape[-2:], mode="bilinear", align_corners=False)


@pytest.mark.parametrize("kind", ["segmenter", "naive"])
def test_official_aux_heads_convert_and_give_the_official_logits(mmseg, tmp_path, capsys, kind):
    from dovit.core.model import tokens_to_map

    path, vit, _, aux_heads = _official_checkpoint(mmseg, tmp_path, kind=kind)
    model = _convert(tmp_path, path, "--format", "dovit-official")
    assert f"as aux_head '{AUX_KINDS[kind]}'" in capsys.readouterr().out
    assert model.config.aux_head == AUX_KINDS[kind] and model.config.aux_head_channels == 256
    assert int(model.aux_heads[1].bn.num_batches_tracked) == 1234  # BN statistics came along
    grid, scale = (SIZE[0] // 16, SIZE[1] // 16), 4 if kind == "naive" else 1
    # 1. each converted head against its official head on the same token map
    token_map = 3.0 * torch.randn(2, 192, *grid)
    for k, reference in enumerate(aux_heads):
        with torch.no_grad():
            logits = model.aux_heads[k](token_map.flatten(2).transpose(1, 2), grid)
        official, ours = _official_aux_logits(reference, token_map, logits)
        assert logits.shape == (2, 5, *grid) and official.shape == (2, 5, grid[0] * scale, grid[1] * scale)
        gap = float((ours - official).abs().max())
        print(f"official {kind} aux head {k}: max |dlogit| = {gap:.2e}")
        assert gap <= TOLERANCE
    # 2. in the forward, decision 0 sees the dense tokens after out_indices[0] = 2 blocks of MMSeg's ViT
    pixels = torch.randn(2, 3, *SIZE)
    vit.out_indices = [1]
    with torch.no_grad():
        first_map = vit(pixels)[0]
        dense = model(pixels, xi=1.0, with_aux=True)
    official, ours = _official_aux_logits(aux_heads[0], first_map, dense.aux_logits[0])
    assert float((ours - official).abs().max()) <= TOLERANCE
    # FCNHead runs at the token grid: the official confidence is Eq. 3 on these logits
    if kind == "segmenter":
        assert torch.allclose(dense.confidence[0], official.softmax(1).amax(1).flatten(1), atol=1e-5)
    # 3. at a xi < 1 that stops some tokens and keeps others, every decision comes from the converted heads
    xi = float(dense.confidence[0].quantile(0.5))
    inputs = []
    hooks = [h.register_forward_hook(lambda module, args, out: inputs.append(args[0]))
             for h in model.aux_heads]
    with torch.no_grad():
        sparse = model(pixels, xi=xi)
    for hook in hooks:
        hook.remove()
    assert 0 < int(sparse.stopped_now[0].sum()) < sparse.keep_masks[0].numel() and len(inputs) == 3
    keep = torch.ones_like(sparse.keep_masks[0])
    for k, reference in enumerate(aux_heads):
        official, ours = _official_aux_logits(reference, tokens_to_map(inputs[k], grid), sparse.aux_logits[k])
        assert float((ours - official).abs().max()) <= TOLERANCE
        assert torch.allclose(sparse.confidence[k], sparse.aux_logits[k].softmax(1).amax(1).flatten(1),
                              atol=1e-6)
        keep = keep & (sparse.confidence[k] <= xi)
        assert torch.equal(sparse.keep_masks[k], keep)


def test_official_aux_heads_round_trip_through_a_checkpoint(mmseg, tmp_path):
    path, _, _, _ = _official_checkpoint(mmseg, tmp_path)
    model = _convert(tmp_path, path, "--format", "dovit-official")
    config, _ = dovit.read_config(tmp_path / "dovit")
    assert config.aux_head == "fcn" and config.aux_head_channels == 256
    assert "aux_heads.0.bn.running_var" in model.state_dict()


@pytest.mark.parametrize("distiller", [False, True])
def test_official_checkpoint_logits_equal_mmseg_and_keep_its_decisions(mmseg, tmp_path, capsys, distiller):
    path, vit, head, _ = _official_checkpoint(mmseg, tmp_path, distiller=distiller)
    model = _convert(tmp_path, path, "--format", "dovit-official")
    out = capsys.readouterr().out
    assert "converted the 3 official aux heads (FCNHead, 256 channels)" in out and "diff_conf 0.02" in out
    assert ("converted its student" in out) == distiller
    config = model.config
    assert model.decision_layers == (2, 5, 8) and config.default_xi == 0.96  # out_indices[:-1], exit_conf
    assert config.decoder == "segmenter" and config.mean == (0.5, 0.5,
                                                             0.5) and config.class_names == list(CLASSES)
    assert dovit.read_config(tmp_path / "dovit")[1]["format"] == "dovit-official"
    pixels = torch.randn(2, 3, *SIZE)
    _, expected = _mmseg_logits(vit, head, pixels)
    with torch.no_grad():
        gap = float((model(pixels, xi=1.0).logits - expected).abs().max())
        sparse = model(pixels, xi=0.5)  # DoViT's token pass runs on it, with the official aux heads
    print(f"official (distiller={distiller}): max |dlogit| = {gap:.2e}")
    assert gap <= TOLERANCE and sparse.logits.shape == expected.shape and len(sparse.keep_masks) == 3
    assert config.aux_head == "fcn"


def test_official_checkpoint_without_config_takes_the_official_layers(mmseg, tmp_path, capsys):
    path, _, _, _ = _official_checkpoint(mmseg, tmp_path, config=False)
    model = _convert(tmp_path, path, "--format", "dovit-official", "--pos-size", *map(str, SIZE))
    assert model.decision_layers == (2, 5, 8) and model.config.aux_head == "fcn"
    out = capsys.readouterr().out
    assert "official configs' for 12 blocks" in out and "no saved config for the official aux heads" in out


def test_class_names_and_palette_of_a_data_set_the_config_names():
    from dovit.data.datasets import CITYSCAPES_CLASSES, CITYSCAPES_COLORS

    city = mmseg_checkpoint._class_metadata({}, 19, {"dataset_type": "CityscapesDataset"})
    assert city["class_names"] == list(CITYSCAPES_CLASSES) and city["class_colors"] == list(CITYSCAPES_COLORS)
    ade = mmseg_checkpoint._class_metadata({}, 150, {"data": {"train": {"type": "ADE20KDataset"}}})
    assert ade["class_names"][:3] == ["wall", "building", "sky"]
    # sky, as MMSeg draws it
    assert len(ade["class_colors"]) == 150 and ade["class_colors"][2] == (6, 230, 230)
    assert (
        mmseg_checkpoint._class_metadata({}, 19, {"train_dataloader": {"dataset": {"type": "ADE20KDataset"}}})
        == {}
    )
    saved = mmseg_checkpoint._class_metadata({"CLASSES": ["a", "b"]}, 2,
                                             {"dataset_type": "CityscapesDataset"})
    assert saved == {"class_names": ["a", "b"]}  # names saved with the checkpoint win
