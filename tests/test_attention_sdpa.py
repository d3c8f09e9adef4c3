"""The trunk and RMA run open_clip blocks through SDPA: same numbers as open_clip's own forward and
as the old nn.MultiheadAttention path."""
import copy

import pytest
import torch
from torch import nn

from ovdet.clip import CLIPViTTrunk, load_clip
from ovdet.clip.attention import block_forward
from ovdet.clip.rma import region_embeddings


def open_clip_forward(trunk: CLIPViTTrunk, images: torch.Tensor):
    """Reference: open_clip's own blocks (nn.MultiheadAttention) after the trunk's embedding.
    Returns the final tokens and the states entering the last ``keep_last`` blocks."""
    x, _ = trunk.embed(images)
    kept = []
    for index, block in enumerate(trunk.visual.transformer.resblocks):
        if index >= trunk.depth - trunk.keep_last:
            kept.append(x)
        x = block(x)
    return x, kept


def mha_region_embeddings(trunk: CLIPViTTrunk, output, region_masks):
    """Reference RMA through nn.MultiheadAttention with a (B * heads, R, 1 + h*w) -inf bias."""
    kept = output.kept
    batch, total = len(region_masks), max(m.shape[0] for m in region_masks)
    allowed = torch.zeros(batch, total, kept[0].shape[1], dtype=torch.bool)
    allowed[:, :, 0] = True
    for b, masks in enumerate(region_masks):
        allowed[b, :masks.shape[0], 1:] = masks
    blocks = trunk.visual.transformer.resblocks[trunk.depth - len(kept):]
    bias = torch.zeros(allowed.shape).masked_fill(~allowed, float("-inf"))
    bias = bias.repeat_interleave(blocks[0].attn.num_heads, dim=0)
    tokens = kept[0][:, :1].expand(batch, total, -1)
    for block, states in zip(blocks, kept):
        context = block.ln_1(states)
        attended = block.attn(block.ln_1(tokens), context, context, attn_mask=bias,
                              need_weights=False)[0]
        tokens = tokens + block.ls_1(attended)
        tokens = tokens + block.ls_2(block.mlp(block.ln_2(tokens)))
    embeddings = trunk.project(tokens)
    return [embeddings[b, :m.shape[0]] for b, m in enumerate(region_masks)]


def assert_trunk_matches_open_clip(clip, images, native: bool, atol: float) -> None:
    trunk = CLIPViTTrunk(clip.model.visual, keep_last=2)
    with torch.no_grad():
        output = trunk(images)
        tokens, kept = open_clip_forward(trunk, images)
        torch.testing.assert_close(output.tokens, tokens, rtol=0, atol=atol)
        for ours, theirs in zip(output.kept, kept, strict=True):
            torch.testing.assert_close(ours, theirs, rtol=0, atol=atol)
        if native:
            torch.testing.assert_close(trunk.image_embedding(output),
                                       clip.model.encode_image(images), rtol=0, atol=atol)


@pytest.mark.parametrize("size", [(32, 32), (40, 56)])
def test_tiny_trunk_equals_open_clip(tiny_clip, size):
    torch.manual_seed(0)
    assert_trunk_matches_open_clip(tiny_clip, torch.randn(2, 3, *size), size == (32, 32), 1e-5)


@pytest.mark.parametrize("size", [None, (48, 80)])
def test_toy_trunk_equals_open_clip(toy_clip, size):
    native = toy_clip.model.visual.image_size
    size = size or tuple(native)
    torch.manual_seed(0)
    assert_trunk_matches_open_clip(toy_clip, torch.randn(2, 3, *size), size == tuple(native), 1e-5)


def test_vit_b16_trunk_equals_open_clip():
    """Real ViT-B/16 shapes (12 blocks, width 768, 12 heads, 197 tokens), random weights."""
    torch.manual_seed(0)
    clip = load_clip("ViT-B-16")
    assert_trunk_matches_open_clip(clip, torch.randn(1, 3, 224, 224), True, 1e-5)


def test_rma_with_masks_equals_multihead_attention_path(toy_clip):
    trunk = CLIPViTTrunk(toy_clip.model.visual, keep_last=2)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        output = trunk(torch.randn(2, 3, 48, 64, generator=generator))
        patches = output.grid[0] * output.grid[1]
        masks = [torch.rand(5, patches, generator=generator) < 0.3,
                 torch.rand(2, patches, generator=generator) < 0.6]
        for m in masks:
            m[:, 0] = True  # at least one patch per region
        ours = region_embeddings(trunk, output, masks)
        theirs = mha_region_embeddings(trunk, output, masks)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_run_blocks_masks_follow_multihead_attention(tiny_clip):
    """Boolean (True = may not attend) and additive masks, (N, N) and (B * heads, N, N)."""
    trunk = CLIPViTTrunk(tiny_clip.model.visual, keep_last=2)
    heads = trunk.visual.transformer.resblocks[0].attn.num_heads
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, 17, trunk.width, generator=generator)
    blocked = torch.rand(2 * heads, 17, 17, generator=generator) < 0.4
    blocked[:, :, 0] = False  # every token may attend to CLS
    additive = torch.zeros(blocked.shape).masked_fill(blocked, float("-inf"))
    with torch.no_grad():
        for bool_mask, float_mask in ((blocked, additive), (blocked[0], additive[0])):
            expected = x
            for block in trunk.visual.transformer.resblocks:
                expected = block(expected, attn_mask=float_mask)  # open_clip's own forward
            torch.testing.assert_close(trunk.run_blocks(x, 0, float_mask), expected,
                                       rtol=0, atol=1e-5)
            torch.testing.assert_close(trunk.run_blocks(x, 0, bool_mask), expected,
                                       rtol=0, atol=1e-5)


def test_block_without_attention_bias(tiny_clip):
    block = copy.deepcopy(tiny_clip.model.visual.transformer.resblocks[0])
    width, heads = block.attn.embed_dim, block.attn.num_heads
    torch.manual_seed(2)
    block.attn = nn.MultiheadAttention(width, heads, bias=False, batch_first=True)
    x = torch.randn(2, 5, width)
    context = torch.randn(2, 9, width)
    with torch.no_grad():
        torch.testing.assert_close(block_forward(block, x), block(x), rtol=0, atol=1e-5)
        expected = x + block.ls_1(block.attn(block.ln_1(x), block.ln_1(context),
                                             block.ln_1(context), need_weights=False)[0])
        expected = expected + block.ls_2(block.mlp(block.ln_2(expected)))
        torch.testing.assert_close(block_forward(block, x, context), expected, rtol=0, atol=1e-5)


def test_bf16_autocast_trunk_and_rma(toy_clip):
    """Under bf16 autocast (CPU here, CUDA in training) masks follow the query dtype and the
    results stay close to float32."""
    trunk = CLIPViTTrunk(toy_clip.model.visual, keep_last=2)
    torch.manual_seed(3)
    images = torch.randn(1, 3, 48, 48)
    mask = torch.zeros(1, 36, dtype=torch.bool)
    mask[0, :12] = True
    with torch.no_grad():
        reference = region_embeddings(trunk, trunk(images), [mask])[0]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            output = trunk(images)
            region = region_embeddings(trunk, output, [mask])[0]
            blocked = torch.zeros(37, 37)
            blocked[:, 1] = float("-inf")
            masked = trunk.run_blocks(output.kept[0], trunk.depth - 2, blocked)
    assert masked.shape == output.tokens.shape and torch.isfinite(masked).all()
    cosine = torch.nn.functional.cosine_similarity(region.float(), reference, dim=-1)
    assert cosine.item() > 0.99
