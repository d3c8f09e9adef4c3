"""Mask tokens with relative mask attention (MaskTokenRMA), their patch masks, and the crop
baseline."""
import copy

import pytest
import torch
import torch.nn.functional as F

from ovdet.clip import CLIPViTTrunk, MaskTokenRMA, crop_embeddings, mask_patch_masks
from ovdet.clip.rma import region_embeddings


@pytest.fixture()
def visual(tiny_clip):
    """A private copy of the tiny CLIP's image tower (tests change requires_grad on it)."""
    return copy.deepcopy(tiny_clip.model.visual)


def random_logits(generator, *shape):
    """Mask logits with blobs: a smooth random field, so that masks cover whole patches."""
    coarse = torch.randn(shape[0], 1, shape[1] // 2, shape[2] // 2, generator=generator)
    return 4 * F.interpolate(coarse, size=shape[1:], mode="bilinear", align_corners=False)[:, 0]


def perturb(module: MaskTokenRMA, generator, *names: str) -> None:
    """Random values for the named parameters of every bias block (e.g. ``key_embed``)."""
    with torch.no_grad():
        for layer in module.layers.values():
            for name in names:
                for p in getattr(layer, name).parameters():
                    p.copy_(torch.randn(p.shape, generator=generator) * 0.5)


def expected_patches(logits, s, threshold):
    """Independent patch masks: (M, h*s, w*s) -> (M, h*w) by reshaping into s x s cells."""
    m, hs, ws = logits.shape
    cells = (logits > 0).float().view(m, hs // s, s, ws // s, s).mean(dim=(2, 4)).flatten(1)
    patches = cells >= threshold
    for i in range(m):
        if cells[i].max() > 0 and not patches[i].any():
            patches[i, cells[i].argmax()] = True
    return patches


def test_whole_image_mask_token_is_clip_image_embedding(tiny_clip, visual):
    trunk = CLIPViTTrunk(visual, keep_last=visual.transformer.layers)  # K = depth
    rma = MaskTokenRMA.for_trunk(trunk)
    assert rma.s == 2 and len(list(rma.parameters())) == 0
    torch.manual_seed(0)
    images = torch.randn(2, 3, 32, 32)
    generator = torch.Generator().manual_seed(0)
    logits = [torch.cat([torch.full((1, 8, 8), 3.0), random_logits(generator, 2, 8, 8)]),
              torch.full((1, 8, 8), 0.5)]
    with torch.no_grad():
        output = trunk(images)
        embeddings, refined = rma(trunk, output, logits)
        clip_embedding = tiny_clip.model.encode_image(images)
    assert refined == [] and [e.shape for e in embeddings] == [(3, 32), (1, 32)]
    torch.testing.assert_close(torch.stack([embeddings[0][0], embeddings[1][0]]),
                               trunk.image_embedding(output), rtol=0, atol=1e-4)
    torch.testing.assert_close(embeddings[0][0], clip_embedding[0], rtol=0, atol=1e-4)
    assert not torch.allclose(embeddings[0][1], embeddings[0][0], atol=1e-3)


def test_zero_init_bias_blocks_are_plain_rma_until_trained(visual):
    trunk = CLIPViTTrunk(visual, keep_last=2)
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, 40, 48, generator=generator)  # 5 x 6 patches, not native
    logits = [random_logits(generator, 4, 10, 12), random_logits(generator, 2, 10, 12)]
    plain = MaskTokenRMA.for_trunk(trunk)
    torch.manual_seed(1)
    biased = MaskTokenRMA.for_trunk(trunk, bias_blocks=(0, 1), refine_dim=8)
    with torch.no_grad():
        output = trunk(images)
        reference, _ = plain(trunk, output, logits)
        regions = region_embeddings(trunk, output, [mask_patch_masks(m, 2, 0.3) for m in logits])
        start, refined = biased(trunk, output, logits)
        assert len(refined) == 2 and all(len(r) == 2 for r in refined)
        for a, b, c in zip(reference, regions, start, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
            torch.testing.assert_close(c, a, rtol=0, atol=1e-5)
        for per_block in refined:
            for r, m in zip(per_block, logits, strict=True):
                assert torch.equal(r, m)  # refinement starts at exactly 0

        perturb(biased, generator, "key_embed")  # the bias alone
        with_bias, refined = biased(trunk, output, logits)
        assert all(torch.equal(r, m) for r, m in zip(refined[-1], logits))
        assert all((a - b).abs().max() > 1e-3 for a, b in zip(with_bias, reference))

        perturb(biased, generator, "refine_out")
        with_refinement, refined = biased(trunk, output, logits)
    for per_block in refined:
        assert all((r - m).abs().max() > 1e-2 for r, m in zip(per_block, logits))
    assert all((a - b).abs().max() > 1e-4 for a, b in zip(with_refinement, with_bias))


def test_mask_tokens_equal_full_sequence_with_attention_mask(visual):
    """Independent path: [CLS, patches, mask tokens] through open_clip's own blocks
    (nn.MultiheadAttention) with an explicit additive mask: CLS and patches never see mask tokens,
    each mask token sees CLS and its patches (with the relative bias at the bias block). Patch
    states must be those of the plain image pass; the mask tokens' outputs those of the module."""
    trunk = CLIPViTTrunk(visual, keep_last=2)
    generator = torch.Generator().manual_seed(2)
    images = torch.randn(2, 3, 40, 48, generator=generator)
    logits = [random_logits(generator, 3, 10, 12), random_logits(generator, 1, 10, 12)]
    rma = MaskTokenRMA.for_trunk(trunk, bias_blocks=(1,), refine_dim=8, patch_threshold=0.5)
    perturb(rma, generator, "key_embed", "mask_embed", "refine_out")
    layer = rma.layers["1"]
    blocks = trunk.visual.transformer.resblocks
    heads = blocks[0].attn.num_heads
    width = trunk.width
    with torch.no_grad():
        output = trunk(images)
        embeddings, refined = rma(trunk, output, logits)
        for b, masks in enumerate(logits):
            m, n = masks.shape[0], output.kept[0].shape[1]  # n = 1 + h*w
            x = torch.cat([output.kept[0][b:b + 1], output.kept[0][b:b + 1, :1].expand(1, m, -1)],
                          dim=1)
            allowed = torch.zeros(n + m, n + m, dtype=torch.bool)
            allowed[:n, :n] = True
            allowed[n:, 0] = True
            allowed[n:, 1:n] = expected_patches(masks, 2, 0.5)
            for index, block in enumerate(blocks):
                bias = torch.zeros(n + m, n + m)
                if index == 1:  # q' . k' / sqrt(dim) on the mask-token -> patch entries
                    q = layer.mask_embed(torch.tanh(masks)[:, None]).flatten(2).transpose(1, 2)
                    q = layer.mask_norm(q)  # (m, h*w, dim)
                    attn = block.attn
                    keys = F.linear(block.ln_1(x[0, 1:n]), attn.in_proj_weight[width:2 * width],
                                    attn.in_proj_bias[width:2 * width])
                    k = layer.key_embed(keys)
                    bias[n:, 1:n] = (q * k[None]).sum(-1) / 8 ** 0.5
                additive = bias.masked_fill(~allowed, float("-inf"))
                x = block(x, attn_mask=additive.repeat(heads, 1, 1))
                if index == 0:  # patch states unchanged by the mask tokens' presence
                    torch.testing.assert_close(x[0, :n], output.kept[1][b], rtol=0, atol=1e-5)
            torch.testing.assert_close(x[0, :n], output.tokens[b], rtol=0, atol=1e-5)
            torch.testing.assert_close(trunk.project(x[0, n:]), embeddings[b], rtol=0, atol=1e-5)
            # refinement from the tokens leaving block 1 and block 1's patch keys
            mixed = F.gelu(layer.token_refine(x[0, n:])[:, None] * layer.key_refine(keys)[None])
            mixed = mixed.transpose(1, 2).reshape(m, -1, 5, 6)
            delta = F.pixel_shuffle(layer.refine_out(mixed), 2)[:, 0]
            torch.testing.assert_close(refined[0][b], masks + delta, rtol=0, atol=1e-5)


def test_empty_masks_and_images_without_masks(visual):
    trunk = CLIPViTTrunk(visual, keep_last=2)
    generator = torch.Generator().manual_seed(3)
    images = torch.randn(3, 3, 32, 32, generator=generator)
    logits = [torch.cat([torch.full((1, 8, 8), -2.0), torch.zeros(1, 8, 8),
                         random_logits(generator, 1, 8, 8)]),
              torch.zeros(0, 8, 8),
              torch.full((1, 8, 8), -1.0)]
    plain = MaskTokenRMA.for_trunk(trunk)
    rma = MaskTokenRMA.for_trunk(trunk, bias_blocks=(0, 1), refine_dim=8)
    perturb(rma, generator, "key_embed", "refine_out")
    with torch.no_grad():
        output = trunk(images)
        reference, _ = plain(trunk, output, logits)
        cls_only = [torch.zeros(len(m), 16, dtype=torch.bool) for m in logits]
        cls_only[0][2] = mask_patch_masks(logits[0][2:], 2, 0.3)[0]
        torch.testing.assert_close(torch.cat(reference),
                                   torch.cat(region_embeddings(trunk, output, cls_only)),
                                   rtol=0, atol=1e-5)
    embeddings, refined = rma(trunk, output, logits)
    assert [e.shape for e in embeddings] == [(3, 32), (0, 32), (1, 32)]
    assert all(torch.isfinite(e).all() for e in embeddings)
    assert all(r.shape == m.shape and torch.isfinite(r).all()
               for per_block in refined for r, m in zip(per_block, logits))
    (torch.cat(embeddings).sum() + sum(r.sum() for per in refined for r in per)).backward()
    assert all(torch.isfinite(p.grad).all() for p in rma.parameters())

    none = [torch.zeros(0, 8, 8) for _ in range(3)]
    embeddings, refined = rma(trunk, output, none)
    assert [e.shape for e in embeddings] == [(0, 32)] * 3
    assert [[r.shape for r in per_block] for per_block in refined] == [[(0, 8, 8)] * 3] * 2


def test_mask_patch_masks_thresholds_and_fallback():
    # 2 x 3 patches of 2 x 2 mask pixels
    logits = torch.full((4, 4, 6), -1.0)
    logits[0, 0:2, 0:2] = 1.0  # patch (0, 0): all of it
    logits[0, 0, 2] = 1.0  # patch (0, 1): a quarter
    logits[0, 2:4, 4] = 1.0  # patch (1, 2): half
    logits[1, 3, 1] = 1.0  # patch (1, 0): a quarter only -> the fallback patch
    logits[1, 0, 4] = 0.0  # logit 0 is outside (sigmoid 0.5)
    logits[3] = 0.0  # all at sigmoid 0.5: empty
    patches = mask_patch_masks(logits, 2, 0.3)
    assert patches.tolist() == [
        [True, False, False, False, False, True],
        [False, False, False, True, False, False],
        [False] * 6,
        [False] * 6,
    ]
    assert mask_patch_masks(logits, 2, 0.25)[0].tolist() == [True, True, False, False, False, True]
    assert mask_patch_masks(logits, 2, 1.0)[0].tolist() == [True] + [False] * 5
    assert mask_patch_masks(logits[:0], 2, 0.3).shape == (0, 6)
    generator = torch.Generator().manual_seed(4)
    blobs = random_logits(generator, 6, 12, 16)
    assert torch.equal(mask_patch_masks(blobs, 4, 0.4), expected_patches(blobs, 4, 0.4))
    with pytest.raises(ValueError, match="patch_threshold"):
        mask_patch_masks(logits, 2, 0.0)
    with pytest.raises(ValueError, match=r"\(M, h\*4, w\*4\)"):
        mask_patch_masks(logits, 4, 0.3)


def test_gradients_reach_the_module_never_clip(visual):
    """As in use: the trunk runs once without autograd; the module trains on its outputs. Even
    with requires_grad on CLIP's weights, the re-entered blocks and ln_post/proj give them none."""
    trunk = CLIPViTTrunk(visual, keep_last=2)
    visual.requires_grad_(True)
    generator = torch.Generator().manual_seed(5)
    images = torch.randn(2, 3, 32, 32, generator=generator)
    logits = [random_logits(generator, 3, 8, 8).requires_grad_(), random_logits(generator, 2, 8, 8)]
    rma = MaskTokenRMA.for_trunk(trunk, bias_blocks=(0, 1), refine_dim=8)
    with torch.no_grad():
        output = trunk(images)
    embeddings, refined = rma(trunk, output, logits)
    loss = torch.cat(embeddings).square().sum()
    loss = loss + sum(r.sigmoid().sum() for per_block in refined for r in per_block)
    loss.backward()
    assert all(p.grad is None for p in visual.parameters())
    assert all(p.grad is not None for p in rma.parameters())
    for layer in rma.layers.values():  # the zero-initialised ends start learning
        assert layer.key_embed.weight.grad.abs().sum() > 0
        assert layer.refine_out.weight.grad.abs().sum() > 0
    assert logits[0].grad is not None and logits[0].grad.abs().sum() > 0
    assert all(p.requires_grad for p in visual.parameters())

    # one optimiser step moves the bias from 0: the mask embedding path then gets gradients too
    torch.optim.SGD(rma.parameters(), lr=0.1).step()
    rma.zero_grad()
    embeddings, _ = rma(trunk, output, logits)
    torch.cat(embeddings).square().sum().backward()
    assert all(layer.mask_embed.weight.grad.abs().sum() > 0 for layer in rma.layers.values())
    assert all(p.grad is None for p in visual.parameters())


def test_bad_arguments(visual):
    trunk = CLIPViTTrunk(visual, keep_last=1)  # depth 2: block 1 only
    for blocks in ((0,), (2,), (-1,), (1, 1)):
        with pytest.raises(ValueError, match=r"distinct block indices in \[1, 2\) \(the last"):
            MaskTokenRMA.for_trunk(trunk, bias_blocks=blocks)
    with pytest.raises(ValueError, match="mask_stride"):
        MaskTokenRMA.for_trunk(trunk, mask_stride=3)
    rma = MaskTokenRMA.for_trunk(trunk, bias_blocks=(1,))
    output = trunk(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"mask_logits\[0\] must be \(M, 8, 8\)"):
        rma(trunk, output, [torch.zeros(2, 16, 16)])
    deeper = MaskTokenRMA(width=trunk.width, patch_size=8, depth=2, keep_last=2)
    with pytest.raises(ValueError, match="keep_last >= 2"):
        deeper(trunk, output, [torch.zeros(2, 8, 8)])


def test_crop_of_whole_image_is_image_embedding(visual):
    trunk = CLIPViTTrunk(visual, keep_last=1)
    generator = torch.Generator().manual_seed(6)
    native = torch.randn(2, 3, 32, 32, generator=generator)
    large = torch.randn(1, 3, 64, 64, generator=generator)
    whole_logits = torch.full((1, 5, 5), 2.0)  # another resolution, resized to the image
    with torch.no_grad():
        whole = torch.ones(1, 32, 32, dtype=torch.bool)
        crops = crop_embeddings(trunk, native, [whole_logits, whole])
        torch.testing.assert_close(torch.cat(crops), trunk.image_embedding(trunk(native)),
                                   rtol=0, atol=1e-5)
        # shrinking 64 -> 32 averages 2 x 2 pixels
        crop = crop_embeddings(trunk, large, [whole_logits])[0]
        resized = trunk.image_embedding(trunk(F.interpolate(large, size=(32, 32), mode="area")))
        torch.testing.assert_close(crop, resized, rtol=0, atol=1e-5)
        # a box crop at size 16: the box's pixels (exact when the box is 16 x 16)
        box = torch.zeros(1, 32, 32, dtype=torch.bool)
        box[0, 8:24, 4:20] = True
        crop = crop_embeddings(trunk, native[:1], [box], size=16)[0]
        expected = trunk.image_embedding(trunk(native[:1, :, 8:24, 4:20]))
        torch.testing.assert_close(crop, expected, rtol=0, atol=1e-5)


def test_crops_batched_like_one_at_a_time_and_masked(visual):
    trunk = CLIPViTTrunk(visual, keep_last=1)
    generator = torch.Generator().manual_seed(7)
    images = torch.randn(2, 3, 48, 40, generator=generator)
    masks = [random_logits(generator, 2, 24, 20), random_logits(generator, 1, 48, 40) > 0]
    masks[0][1] = -1.0  # an empty mask
    with torch.no_grad():
        batched = crop_embeddings(trunk, images, masks)
        for batch_size in (1, 2):
            for a, b in zip(crop_embeddings(trunk, images, masks, batch_size=batch_size), batched):
                torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
        single = [crop_embeddings(trunk, images[b:b + 1], [m[i:i + 1]])[0]
                  for b, m in enumerate(masks) for i in range(len(m))]
        torch.testing.assert_close(torch.cat(single), torch.cat(batched), rtol=0, atol=1e-5)
        assert [e.shape for e in batched] == [(2, 32), (1, 32)]
        # the empty mask: the embedding of an all-mean (zero) image
        mean_image = trunk.image_embedding(trunk(torch.zeros(1, 3, 32, 32)))[0]
        assert torch.isfinite(batched[0][1]).all()
        torch.testing.assert_close(batched[0][1], mean_image, rtol=0, atol=1e-5)
        # only the pixels inside a mask matter
        inside = F.interpolate(masks[0][:1, None], size=(48, 40), mode="nearest")[:, 0] > 0
        changed = images[:1] + 3.0 * (~inside).float()
        outside_changed = crop_embeddings(trunk, changed, [masks[0][:1]])[0]
        torch.testing.assert_close(outside_changed, batched[0][:1], rtol=0, atol=1e-6)
        changed = images[:1] + 3.0 * inside.float()
        inside_changed = crop_embeddings(trunk, changed, [masks[0][:1]])[0]
        assert (inside_changed - batched[0][:1]).abs().max() > 1e-3
        assert [e.shape for e in crop_embeddings(trunk, images, [masks[0][:0], masks[1][:0]])] \
            == [(0, 32), (0, 32)]
