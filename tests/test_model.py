import pytest
import timm
import torch

import dovit
from dovit.core.token_pass import Forced


def _pixels(batch: int = 2, size=(64, 96), seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def test_xi_one_reproduces_the_dense_forward(tiny_model):
    pixels = _pixels()
    dense = tiny_model(pixels, xi=1.0)  # no aux heads: the plain dense segmenter
    with_aux = tiny_model(pixels, xi=1.0, with_aux=True)  # decisions run, none stops
    assert (dense.logits - with_aux.logits).abs().max().item() <= 1e-5
    assert all(bool(mask.all()) for mask in with_aux.keep_masks)
    assert with_aux.group_tokens.eq(4 * 6).all()


@torch.no_grad()
def test_backbone_is_timm_vit_forward(tiny_model):
    """With nothing stopped, our grouped blocks compute exactly timm's forward_features."""
    pixels = _pixels(1)
    state = tiny_model.prefix(pixels)
    x = state.tokens
    for first, last in tiny_model.group_bounds[1:]:
        for block in tiny_model.vit.blocks[first:last]:
            x = block(x)
    reference = tiny_model.vit.forward_features(pixels)
    assert torch.allclose(tiny_model.vit.norm(x), reference, atol=1e-5)


@torch.no_grad()
def test_xi_zero_stops_every_patch_token_at_the_first_decision(tiny_model):
    out = tiny_model(_pixels(), xi=0.0)
    assert not bool(out.keep_masks[0].any())
    assert out.group_tokens[:, 1:].eq(0).all()
    assert out.logits.shape == (2, 5, 64, 96)


@torch.no_grad()
def test_masks_are_cumulative_and_counts_match(tiny_model):
    out = tiny_model(_pixels(3), xi=0.3)
    previous = torch.ones_like(out.keep_masks[0])
    for decision, mask in enumerate(out.keep_masks):
        assert not bool((mask & ~previous).any())
        assert torch.equal(out.stopped_now[decision], previous & ~mask)
        assert torch.equal(out.group_tokens[:, decision + 1], mask.sum(1))
        previous = mask


@torch.no_grad()
def test_batch_images_get_exactly_their_single_image_result(tiny_model):
    """Inference: each image keeps its own tokens; a batch mate never changes its output."""
    pixels = _pixels(3, seed=1)
    for xi in (0.25, 0.3, 0.5):
        batched = tiny_model(pixels, xi=xi)
        if len(set(batched.group_tokens[:, -1].tolist())) > 1:
            break
    assert len(set(batched.group_tokens[:, -1].tolist())) > 1, "need images with different kept counts"
    for index in range(3):
        alone = tiny_model(pixels[index : index + 1], xi=xi)
        assert torch.equal(alone.group_tokens[0], batched.group_tokens[index])
        assert (alone.logits[0] - batched.logits[index]).abs().max().item() <= 1e-5


def _forced_different_counts(batch_counts=(2, 12, 24), tokens: int = 24, seed: int = 0) -> list[torch.Tensor]:
    """Three cumulative keep masks whose images keep very different numbers of tokens."""
    generator = torch.Generator().manual_seed(seed)
    first = torch.zeros(len(batch_counts), tokens, dtype=torch.bool)
    for row, count in enumerate(batch_counts):
        first[row, torch.randperm(tokens, generator=generator)[:count]] = True
    second = first & (torch.rand(first.shape, generator=generator) < 0.8)
    return [first, second, second & (torch.rand(first.shape, generator=generator) < 0.8)]


@pytest.mark.parametrize("overhead, forwards", [(float("inf"), 1), (None, None), (0.0, 3)])
@torch.no_grad()
def test_padded_batch_gives_each_image_its_batch_1_logits(tiny_model, monkeypatch, overhead, forwards):
    """Kept counts far apart in one batch, run as one padded forward (overhead inf), image by image (0) or
    as the device's packing decides (None): every image's logits equal its batch-1 logits (float32,
    max |dlogit| <= 1e-4)."""
    monkeypatch.setattr(tiny_model, "pack_overhead_tokens", overhead)
    pixels = _pixels(3, seed=2)
    forced = _forced_different_counts()
    calls = []
    handle = tiny_model.vit.blocks[-1].register_forward_hook(lambda m, i, o: calls.append(tuple(i[0].shape)))
    try:
        batched = tiny_model(pixels, xi=0.0, decider=Forced(forced))
    finally:
        handle.remove()
    counts = batched.group_tokens[:, -1].tolist()
    assert len(set(counts)) == 3 and max(counts) >= 4 * max(min(counts), 1)
    if forwards == 1:
        assert calls == [(3, 1 + max(counts), tiny_model.embed_dim)]  # one padded forward, not one per image
    elif forwards is not None:
        assert sorted(calls) == sorted((1, 1 + count, tiny_model.embed_dim) for count in counts)
    for index in range(3):
        alone = tiny_model(pixels[index : index + 1], xi=0.0,
                           decider=Forced([m[index : index + 1] for m in forced]))
        assert torch.equal(alone.group_tokens[0], batched.group_tokens[index])
        assert (alone.logits[0] - batched.logits[index]).abs().max().item() <= 1e-4


@torch.no_grad()
@pytest.mark.parametrize("overhead", [float("inf"), None])
def test_an_image_result_does_not_depend_on_its_batch_mates(tiny_model, monkeypatch, overhead):
    """The same image beside mates that keep fewer, more or all tokens: the same decisions and logits."""
    monkeypatch.setattr(tiny_model, "pack_overhead_tokens", overhead)
    pixels = torch.cat([_pixels(1, seed=3), _pixels(3, seed=4)])
    results = []
    for mates in ([1, 2], [3], [2, 3, 1]):
        batch = pixels[[0] + mates]
        out = tiny_model(batch, xi=0.35)
        results.append((out.keep_masks[-1][0], out.logits[0]))
    for keep, logits in results[1:]:
        assert torch.equal(keep, results[0][0])
        assert (logits - results[0][1]).abs().max().item() <= 1e-4


def test_padded_batches_train_with_gradients(tiny_model, monkeypatch):
    """Without equalising, a training batch with different kept counts runs padded and back-propagates;
    padded rows send no gradient into tokens an image did not keep."""
    monkeypatch.setattr(tiny_model, "pack_overhead_tokens", float("inf"))
    pixels = _pixels(3, seed=2).requires_grad_(True)
    forced = _forced_different_counts()
    out = tiny_model(pixels, xi=0.0, decider=Forced(forced))
    out.logits[0].sum().backward()
    assert torch.isfinite(pixels.grad).all()
    assert pixels.grad[1:].abs().max().item() == 0.0  # image 0's loss never reaches its batch mates


@torch.no_grad()
def test_equalised_batches_keep_the_mean_count(tiny_model):
    pixels = _pixels(3, seed=1)
    free = tiny_model(pixels, xi=0.3)
    equal = tiny_model(pixels, xi=0.3, equalise=True)
    for decision, mask in enumerate(equal.keep_masks):
        counts = mask.sum(1)
        assert counts.eq(counts[0]).all()
        if decision == 0:
            assert counts[0].item() == round(free.keep_masks[0].sum(1).float().mean().item())


@torch.no_grad()
def test_gathered_tokens_shrink_the_work(tiny_model):
    """Token pass runs real timm blocks on fewer tokens: the attention sees a shorter sequence."""
    lengths = []
    handle = tiny_model.vit.blocks[-1].attn.register_forward_hook(lambda m, i,
                                                                  o: lengths.append(i[0].shape[1]))
    try:
        out = tiny_model(_pixels(1), xi=0.3)
    finally:
        handle.remove()
    assert lengths == [int(out.group_tokens[0, -1]) + 1]  # kept patch tokens + the class token
    assert lengths[0] < 24 + 1


def test_any_input_size_pads_and_crops(tiny_model):
    with torch.no_grad():
        out = tiny_model(_pixels(1, size=(50, 70)), xi=0.5)
    assert out.logits.shape[-2:] == (50, 70)
    assert out.grid == (4, 5)


@torch.no_grad()
def test_decoder_output_is_upsampled_to_the_padded_input_then_cropped(tiny_model):
    """Decoder, bilinear upsample to the padded size, crop (dovit.core.preprocess.upsample_logits), as
    forward_from runs it."""
    state = tiny_model.prefix(_pixels(1, size=(50, 70)))
    patches = state.tokens[:, tiny_model.num_prefix_tokens :]
    feature_map = dovit.core.model.tokens_to_map(tiny_model.vit.norm(patches), state.grid)
    reference = torch.nn.functional.interpolate(tiny_model.decoder(feature_map), size=(64, 80),
                                                mode="bilinear",
                                                align_corners=False)[..., :50, :70]
    decoded = dovit.core.model.upsample_logits(tiny_model._decoder_logits(patches, state), (50, 70),
                                               tiny_model.patch_size)
    assert torch.equal(decoded, reference)


@torch.no_grad()
def test_forward_times_the_upsample_apart_from_the_decoder(tiny_model):
    """The upsample to the input size is a stage of its own in timings_ms (it does not shrink with kept
    tokens)."""
    out = tiny_model.forward_from(tiny_model.prefix(_pixels(1, size=(50, 70))), xi=0.5)
    assert out.logits.shape[-2:] == (50, 70)
    assert {"decoder", "upsample", "decision_1"} <= set(out.timings_ms) and min(out.timings_ms.values()) >= 0


@torch.no_grad()
def test_resampled_position_embedding_is_cached_per_grid(tiny_model, monkeypatch):
    """Off the native grid timm resamples the table every forward; we resample once per grid, same tokens."""
    calls = []
    resample = dovit.core.model.resample_abs_pos_embed
    monkeypatch.setattr(dovit.core.model, "resample_abs_pos_embed", lambda *a,
                        **k: calls.append(1) or resample(*a, **k))
    for size, grid in (((80, 112), (5, 7)), ((96, 96), (6, 6))):
        x = tiny_model.vit.patch_embed(_pixels(2, size=size))
        assert tuple(x.shape[1:3]) == grid
        before = len(calls)
        for _ in range(3):
            assert torch.equal(tiny_model._position_embed(x), tiny_model.vit._pos_embed(x))
        assert len(calls) == before + 1
    native = tiny_model.vit.patch_embed(_pixels(1))
    assert torch.equal(tiny_model._position_embed(native), tiny_model.vit._pos_embed(native))


def test_aux_head_is_its_1x1_conv_on_the_token_map():
    # The head runs its Conv2d's weights as a linear layer on the tokens (faster on a CPU); checkpoints keep
    # the conv's shapes, so the two must agree.
    from dovit.core.model import AuxHead, tokens_to_map

    torch.manual_seed(0)
    head = AuxHead(embed_dim=32, num_classes=7).eval()
    tokens = torch.randn(2, 6 * 5, 32)
    with torch.no_grad():
        logits = head(tokens, (6, 5))
        expected = head.classifier(tokens_to_map(head.norm(tokens), (6, 5)))
    assert logits.shape == (2, 7, 6, 5)
    assert torch.allclose(logits, expected, atol=1e-5)
    assert torch.equal(
        logits.flatten(2).transpose(1, 2).argmax(-1), expected.flatten(2).transpose(1, 2).argmax(-1)
    )


@pytest.mark.parametrize("kind", ["fcn", "setr_up"])
def test_conv_aux_head_is_conv_bn_relu_conv_on_the_token_map(kind):
    """The official code's heads: [LayerNorm] -> 1x1 conv -> BatchNorm -> ReLU -> 1x1 classifier, run as
    linear layers on the tokens with a BatchNorm1d over them; the same as the convs and a BatchNorm2d on the
    map, with running statistics in eval mode and batch statistics (updated alike) in training."""
    from test_mmseg_checkpoint import perturb_
    from torch import nn

    from dovit.core.model import ConvAuxHead, tokens_to_map

    torch.manual_seed(0)
    head = ConvAuxHead(embed_dim=32, num_classes=7, channels=16, input_norm=kind == "setr_up")
    perturb_(head, scale=0.1)
    bn = nn.BatchNorm2d(16)
    bn.load_state_dict(head.bn.state_dict())

    def reference(tokens):
        x = tokens_to_map(head.norm(tokens), (6, 5))
        return head.classifier(torch.relu(bn(head.conv(x))))

    tokens = 2.0 * torch.randn(2, 6 * 5, 32)
    assert isinstance(head.norm, nn.LayerNorm) == (kind == "setr_up")
    with torch.no_grad():
        for mode in (False, True):
            head.train(mode)
            bn.train(mode)
            logits = head(tokens, (6, 5))
            assert logits.shape == (2, 7, 6, 5)
            assert torch.allclose(logits, reference(tokens), atol=1e-5)
    assert torch.allclose(head.bn.running_var, bn.running_var) and int(head.bn.num_batches_tracked) == 1


def test_aux_head_kind_is_a_checked_config_field_and_defaults_to_the_papers():
    from dovit.core.model import AuxHead, ConvAuxHead

    assert dovit.ModelConfig().aux_head == "linear"
    assert all(
        isinstance(h, AuxHead)
        for h in dovit.build_model("vit_tiny_patch16_224", 3, input_size=(32, 32)).aux_heads
    )
    model = dovit.build_model("vit_tiny_patch16_224", 3, input_size=(32, 32), aux_head="fcn",
                              aux_head_channels=8)
    assert all(isinstance(h, ConvAuxHead) and h.conv.out_channels == 8 for h in model.aux_heads)
    with pytest.raises(ValueError, match="aux_head must be one of"):
        dovit.ModelConfig(aux_head="mlp")
    with pytest.raises(ValueError, match="aux_head_channels"):
        dovit.ModelConfig(aux_head="fcn", aux_head_channels=0)


@pytest.mark.parametrize("kind", ["fcn", "setr_up"])
def test_token_pass_and_training_run_on_the_official_aux_heads(kind):
    torch.manual_seed(0)
    model = dovit.build_model("vit_tiny_patch16_224", 5, input_size=(64, 96), aux_head=kind,
                              aux_head_channels=16)
    out = model.train()(_pixels(), xi=0.6)
    sum(logits.mean() for logits in out.aux_logits).backward()
    assert model.aux_heads[0].conv.weight.grad is not None and len(out.keep_masks) == 3
    with torch.no_grad():
        model.eval()
        assert (model(_pixels(), xi=1.0).logits - model(_pixels(), xi=1.0,
                                                        with_aux=True).logits).abs().max() <= 1e-5


def test_merge_switch_changes_only_when_tokens_stop():
    torch.manual_seed(0)
    on = dovit.build_model("vit_tiny_patch16_224", 5, input_size=(64, 96)).eval()
    off = dovit.build_model("vit_tiny_patch16_224", 5, input_size=(64, 96), merge_stopped=False).eval()
    off.load_state_dict(on.state_dict())
    with torch.no_grad():
        assert torch.equal(on(_pixels(1), xi=1.0).logits, off(_pixels(1), xi=1.0).logits)
        assert not torch.equal(on(_pixels(1), xi=0.3).logits, off(_pixels(1), xi=0.3).logits)


def test_default_decision_layers_follow_the_paper():
    assert dovit.build_model("vit_tiny_patch16_224", 3, input_size=(32, 32)).decision_layers == (3, 6, 9)
    large = dovit.ModelConfig(backbone="vit_large_patch16_224")
    assert dovit.core.config.default_decision_layers(24) == (6, 12, 18) and large.decision_layers is None


@pytest.mark.parametrize("options", [dict(decoder="pup", decoder_channels=16), dict(stem="conv"),
                                     dict(stem="conv", decoder="skip", decoder_channels=16),
                                     dict(decision_layers=(2, 4))])
def test_variants_build_and_run(options):
    model = dovit.build_model("vit_tiny_patch16_224", 4, input_size=(64, 64), **options).eval()
    with torch.no_grad():
        out = model(_pixels(1, size=(64, 64)), xi=0.4)
    assert out.logits.shape == (1, 4, 64, 64)
    assert len(out.keep_masks) == len(model.decision_layers)


def test_deit_backbone_and_local_pretrained_file(tmp_path):
    """A timm weights file on disk initialises the backbone (the hub path needs a network)."""
    source = timm.create_model("deit_tiny_patch16_224", pretrained=False, num_classes=0)
    from safetensors.torch import save_file

    save_file(source.state_dict(), str(tmp_path / "deit.safetensors"))
    model = dovit.build_model("deit_tiny_patch16_224", 3, input_size=(64, 64),
                              pretrained=str(tmp_path / "deit.safetensors"))
    assert torch.equal(model.vit.blocks[5].mlp.fc1.weight, source.blocks[5].mlp.fc1.weight)


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="decision_layers"):
        dovit.build_model("vit_tiny_patch16_224", 3, decision_layers=(6, 3))
    with pytest.raises(ValueError, match="decoder"):
        dovit.build_model("vit_tiny_patch16_224", 3, decoder="fpn")
    with pytest.raises(ValueError, match="stem='conv'"):
        dovit.build_model("vit_tiny_patch16_224", 3, decoder="skip", stem="patch")
    model = dovit.build_model("vit_tiny_patch16_224", 3, input_size=(32, 32))
    with pytest.raises(ValueError, match="xi"):
        model(_pixels(1, size=(32, 32)), xi=1.5)


# ------------------------------------------------------------------------------ refused before allocation
@pytest.fixture
def backbone_builds(monkeypatch):
    """Records (backbone, device, pretrained) for every timm.create_model call, and fails any call that
    would allocate a network (off the meta device) bigger than ViT-Tiny or download weights."""
    calls = []
    original = timm.create_model

    def spy(name, pretrained=False, **kwargs):
        device = torch.empty(0).device.type  # the default device set by a `with torch.device(...)` block
        calls.append((name, device, pretrained, kwargs.get("pretrained_cfg_overlay")))
        assert not (pretrained
                    and not kwargs.get("pretrained_cfg_overlay")), f"{name}: would download from the hub"
        assert device == "meta" or name in ("vit_tiny_patch16_224", "deit_tiny_patch16_224", "test_vit"), \
            f"{name}: would be allocated in full before a check"
        return original(name, pretrained=pretrained, **kwargs)

    monkeypatch.setattr(timm, "create_model", spy)
    return calls


@pytest.mark.parametrize("backbone, options, message", [
    ("vit_tiny_patch16_224", dict(decision_layers=[100]), r"decision_layers .* \[1, 11\]"),
    ("vit_so400m_patch14_siglip_224", {}, "needs a class token"),  # 0.43 B parameters, no class token
    ("vit_gigantic_patch14_224", {}, "over the 1.5 B cap"),  # 1.84 B parameters = 6.9 GiB
])
def test_unusable_or_giant_backbones_are_refused_on_the_meta_device(backbone_builds, backbone, options,
                                                                    message):
    with pytest.raises(ValueError, match=message):
        dovit.build_model(backbone, 3, input_size=(224, 224), **options)
    assert backbone_builds and all(device == "meta" for _, device, _, _ in backbone_builds)


def test_a_cnn_backbone_is_refused_with_a_sentence():
    with pytest.raises(ValueError, match="not a plain timm ViT"):
        dovit.build_model("resnet18", 3, input_size=(64, 64))


def test_the_size_cap_counts_the_decoder_and_heads(monkeypatch):
    monkeypatch.setattr(dovit.core.model, "MAX_PARAMETERS", 6_000_000)  # ViT-Tiny's backbone alone is 5.5 M
    dovit.build_model("vit_tiny_patch16_224", 3, input_size=(64, 64), decoder_channels=16)
    with pytest.raises(ValueError, match="parameters, over the"):
        dovit.build_model("vit_tiny_patch16_224", 3, input_size=(64, 64), decoder="pup",
                          decoder_channels=1024)


@pytest.mark.parametrize("missing", ["typo.pth", "weights/deit_tiny.safetensors"])
def test_a_missing_pretrained_file_is_an_error_not_a_download(backbone_builds, missing, tmp_path,
                                                              monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=missing):
        dovit.build_model("vit_tiny_patch16_224", 3, input_size=(32, 32), pretrained=missing)
    with pytest.raises(FileNotFoundError, match="not found"):
        dovit.build_model("vit_tiny_patch16_224", 3, input_size=(32, 32), pretrained=tmp_path)  # a folder
    assert not any(pretrained for _, _, pretrained, _ in backbone_builds)


def test_state_is_set_by_constructors_not_attached_afterwards():
    """The conv stem gets its grid and the model its checkpoint metadata as constructor arguments."""
    from dovit.core.stems import ConvStem

    assert ConvStem(16, 64, grid_size=(2, 3)).grid_size == (2, 3)
    config = dovit.ModelConfig(num_classes=3, input_size=(64, 96), stem="conv")
    model = dovit.DoViTSegmenter(config, metadata={"stage": "dense", "step": 5})
    assert model.checkpoint_metadata == {"stage": "dense", "step": 5}
    assert model.vit.patch_embed.grid_size == (4, 6)
    assert dovit.DoViTSegmenter(config).checkpoint_metadata == {}
