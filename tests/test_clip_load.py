import open_clip
import pytest
import torch

from ovdet.clip import WeightsNotFoundError, list_models, load_clip


def test_own_architectures_registered_with_open_clip():
    ours = list_models()
    assert "toyworld" in ours and "ovdet-toy-vit-t8" in ours and "ovdet-test-vit-t8" in ours
    assert "ovdet-test-vit-t8" in open_clip.list_models()


def test_saved_tiny_clip_reloads_identically(tiny_clip, tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save({"state_dict": tiny_clip.model.state_dict()}, path)
    torch.manual_seed(123)  # a different random init, overwritten by the checkpoint
    reloaded = load_clip("ovdet-test-vit-t8", str(path))
    images = torch.randn(2, 3, 32, 32)
    tokens = tiny_clip.tokenizer(["a tomato", "two eggs"])
    with torch.no_grad():
        assert torch.equal(tiny_clip.model.encode_image(images), reloaded.model.encode_image(images))
        assert torch.equal(tiny_clip.model.encode_text(tokens), reloaded.model.encode_text(tokens))
    assert reloaded.pretrained == str(path)
    assert reloaded.preprocess.transforms[0].size == 32


def test_missing_checkpoint_file_is_clear_error(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        load_clip("ovdet-test-vit-t8", str(tmp_path / "missing.pt"))


def test_uncached_tag_offline_says_what_to_download(tmp_path, monkeypatch):
    monkeypatch.setenv("OVDET_CLIP_CACHE", str(tmp_path))
    with pytest.raises(WeightsNotFoundError) as info:
        load_clip("ViT-B-16", "openai")
    message = str(info.value)
    assert "ViT-B-16 / openai" in message and "ViT-B-16.pt" in message
    assert str(tmp_path) in message and "MODEL.CLIP.PRETRAINED" in message


def test_cached_tag_file_is_found_offline(tiny_clip, tmp_path, monkeypatch):
    """A tag whose URL file sits in OVDET_CLIP_CACHE loads without any network."""
    from ovdet.clip import load as load_module

    cfg = {"url": "https://example.invalid/weights/tiny-tag.pt"}
    monkeypatch.setattr(load_module.open_clip, "get_pretrained_cfg",
                        lambda name, tag: cfg if tag == "tinytag" else {})
    monkeypatch.setenv("OVDET_CLIP_CACHE", str(tmp_path))
    torch.save({"state_dict": tiny_clip.model.state_dict()}, tmp_path / "tiny-tag.pt")
    loaded = load_clip("ovdet-test-vit-t8", "tinytag")
    assert torch.equal(loaded.model.visual.proj, tiny_clip.model.visual.proj)


def test_unknown_names_and_tags():
    with pytest.raises(ValueError, match="unknown CLIP architecture"):
        load_clip("ViT-Nope-99")
    with pytest.raises(ValueError, match="neither a pretrained tag"):
        load_clip("ovdet-test-vit-t8", "no_such_tag")


def test_toyworld_bundle_interface(toy_clip):
    from PIL import Image

    assert toy_clip.name == "toyworld"
    image = toy_clip.preprocess(Image.new("RGB", (128, 96), (200, 30, 30)))
    assert image.shape == (3, 64, 64)
    assert toy_clip.tokenizer(["a tomato"]).shape == (1, 32)
    assert not toy_clip.model.training


def test_image_normalization_is_the_preprocess_one(tiny_clip):
    mean, std = tiny_clip.image_normalization()
    normalize = tiny_clip.preprocess.transforms[-1]
    assert mean == tuple(normalize.mean) and std == tuple(normalize.std)
