import pytest
import torch
import torch.nn.functional as F

from ovdet.clip import class_embeddings, compute_class_embeddings, encode_texts
from ovdet.clip import text as text_module

TEMPLATES = ("a photo of a {}.", "a {} on the grass.")


def test_template_ensemble_by_hand(tiny_clip):
    names = ["tomato", "ice cube"]
    got = compute_class_embeddings(tiny_clip, names, TEMPLATES)
    with torch.no_grad():
        for row, name in enumerate(names):
            tokens = tiny_clip.tokenizer([t.format(name) for t in TEMPLATES])
            each = F.normalize(tiny_clip.model.encode_text(tokens), dim=-1)
            torch.testing.assert_close(got[row], F.normalize(each.mean(0), dim=0), rtol=0, atol=1e-6)
    torch.testing.assert_close(got.norm(dim=1), torch.ones(2))


def test_encode_texts_batches_consistently(tiny_clip):
    texts = [f"a photo of {i} eggs" for i in range(7)]
    torch.testing.assert_close(encode_texts(tiny_clip, texts, batch_size=3),
                               encode_texts(tiny_clip, texts), rtol=0, atol=1e-6)


def test_cache_hit_miss_and_invalidation(tiny_clip, tmp_path, monkeypatch):
    names = ["tomato", "egg"]
    first = class_embeddings(tiny_clip, names, TEMPLATES, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 1

    calls = []
    real = text_module.compute_class_embeddings
    monkeypatch.setattr(text_module, "compute_class_embeddings",
                        lambda *a, **k: calls.append(a) or real(*a, **k))
    assert torch.equal(class_embeddings(tiny_clip, names, TEMPLATES, cache_dir=tmp_path), first)
    assert calls == []  # hit

    class_embeddings(tiny_clip, names + ["olive"], TEMPLATES, cache_dir=tmp_path)
    class_embeddings(tiny_clip, names, TEMPLATES[:1], cache_dir=tmp_path)
    assert len(calls) == 2 and len(list(tmp_path.glob("*.pt"))) == 3  # names, templates: misses

    with torch.no_grad():
        tiny_clip.model.text_projection.mul_(-1.0)
    try:
        flipped = class_embeddings(tiny_clip, names, TEMPLATES, cache_dir=tmp_path)
    finally:
        with torch.no_grad():
            tiny_clip.model.text_projection.mul_(-1.0)
    assert len(calls) == 3  # changed weights: a miss
    torch.testing.assert_close(flipped, -first)


def test_corrupt_cache_entry_is_recomputed(tiny_clip, tmp_path):
    names = ["banana"]
    good = class_embeddings(tiny_clip, names, TEMPLATES, cache_dir=tmp_path)
    (entry,) = tmp_path.glob("*.pt")
    entry.write_bytes(b"not a tensor")
    assert torch.equal(class_embeddings(tiny_clip, names, TEMPLATES, cache_dir=tmp_path), good)


@pytest.mark.parametrize("names,templates,match", [
    ([], TEMPLATES, "non-empty list"),
    ("tomato", TEMPLATES, "non-empty list"),
    (["tomato", " "], TEMPLATES, "non-empty strings"),
    (["tomato"], ("a photo",), "must contain"),
])
def test_bad_inputs(tiny_clip, names, templates, match):
    with pytest.raises(ValueError, match=match):
        class_embeddings(tiny_clip, names, templates, use_cache=False)
