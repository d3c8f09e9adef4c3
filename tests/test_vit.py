import pytest
import torch
import torch.nn.functional as F

from ovdet.clip import CLIPViTTrunk


@pytest.fixture()
def trunk(tiny_clip):
    return CLIPViTTrunk(tiny_clip.model.visual, keep_last=2)


def test_image_embedding_matches_clip(trunk, tiny_clip):
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        ours = trunk.image_embedding(trunk(images))
        theirs = tiny_clip.model.encode_image(images)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


def test_positional_embedding_native_is_original_and_resizes(trunk):
    original = trunk.visual.positional_embedding
    assert torch.equal(trunk.positional_embedding(trunk.native_grid), original)
    resized = trunk.positional_embedding((6, 10))
    assert resized.shape == (1 + 60, original.shape[1])
    assert torch.equal(resized[0], original[0])  # CLS position untouched
    output = trunk(torch.randn(2, 3, 48, 80))
    assert output.grid == (6, 10) and output.patch_grid().shape == (2, trunk.width, 6, 10)


def test_input_size_must_be_multiple_of_patch(trunk):
    with pytest.raises(ValueError, match="multiple of the patch size 8"):
        trunk(torch.randn(1, 3, 30, 32))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        trunk(torch.randn(3, 32, 32))


@pytest.mark.parametrize("keep_last", [1, 2])
def test_kept_states_reenter_to_full_forward(tiny_clip, keep_last):
    trunk = CLIPViTTrunk(tiny_clip.model.visual, keep_last=keep_last)
    with torch.no_grad():
        output = trunk(torch.randn(2, 3, 40, 56))
        for offset, state in enumerate(output.kept):
            start = trunk.depth - keep_last + offset
            torch.testing.assert_close(trunk.run_blocks(state, start), output.tokens,
                                       rtol=0, atol=1e-6)


def test_keep_last_range(tiny_clip):
    with pytest.raises(ValueError, match="keep_last"):
        CLIPViTTrunk(tiny_clip.model.visual, keep_last=3)


def test_dense_embeddings_equal_self_only_attention(trunk):
    """Independent path: the last block's own attention, each patch allowed to attend only to
    itself, outputs out_proj(value) per patch; then ln_post and proj."""
    with torch.no_grad():
        output = trunk(torch.randn(2, 3, 32, 48))
        dense = trunk.dense_embeddings(output)
        block = trunk.visual.transformer.resblocks[-1]
        patches = output.kept[-1][:, 1:]
        n = patches.shape[1]
        self_only = torch.full((n, n), float("-inf"))
        self_only.fill_diagonal_(0.0)
        x = block.ln_1(patches)
        attended = block.attn(x, x, x, attn_mask=self_only, need_weights=False)[0]
        expected = trunk.visual.ln_post(attended) @ trunk.visual.proj
    assert dense.shape == (2, trunk.embed_dim, 4, 6)
    torch.testing.assert_close(dense.flatten(2).transpose(1, 2), expected, rtol=0, atol=1e-5)
    assert not torch.allclose(F.normalize(dense[0, :, 0, 0], dim=0), F.normalize(dense[0, :, 1, 1], dim=0))
