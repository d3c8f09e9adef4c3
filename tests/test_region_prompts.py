"""Learned region prompts (ovdet.clip.prompts): the spliced token sequences checked against
open_clip's own text encoder on the equivalent text, gradients, the prompts file and its CLIP
check, the RegionPromptEmbeddings source in a detector and its checkpoint, the predictor and the
demo's --prompts."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import TINY_DETECTOR, TINY_PANOPTIC
from ovdet import OVPredictor
from ovdet.clip import load_clip
from ovdet.clip.prompts import PROMPTS_FORMAT, PromptsMismatchError, RegionPrompts
from ovdet.config import ConfigError, get_cfg
from ovdet.engine.checkpoint import DetectorCheckpointer
from ovdet.modeling.registry import build_model
from test_train_net import load_tool

LONG = "very long named green striped melon thing"  # 7 tokens
DESCRIPTIONS = {"egg": "a white oval food", "dragon fruit": "a pink star-shaped fruit",
                LONG: "a striped melon"}
NAMES = ["tomato", "egg", "ice cube"]
PROMPT_SOURCE = ["MODEL.OPEN_VOCAB.EMBEDDING_SOURCE", "RegionPromptEmbeddings"]


@pytest.fixture(scope="module")
def toy():
    """The toy CLIP, this module's own copy (RegionPrompts freezes the text tower it is given)."""
    return load_clip("toyworld")


@pytest.fixture(scope="module")
def tiny():
    """The tiny random CLIP, with the weights a tiny detector built at seed 0 has."""
    torch.manual_seed(0)
    return load_clip("ovdet-test-vit-t8")


def open_clip_embeddings(clip, texts):
    """open_clip's own text encoder on ``texts``: the independent path."""
    with torch.no_grad():
        return F.normalize(clip.model.encode_text(clip.tokenizer(texts)), dim=-1)


def embed(prompts, names):
    with torch.no_grad():
        return prompts(names)


# ---- token splicing ------------------------------------------------------------------------------
@pytest.mark.parametrize("init,m,n", [("a {} .", 1, 1), ("{} on grass", 0, 2),
                                      ("a photo of {} .", 3, 1)])
@pytest.mark.parametrize("described", [False, True])
def test_spliced_prompts_equal_open_clip_on_the_same_text(toy, init, m, n, described):
    names = ["egg", "dragon fruit", LONG]
    descriptions = DESCRIPTIONS if described else {}
    prompts = RegionPrompts(toy, m, n, init=init, descriptions=descriptions)
    tokens = prompts.tokens(names)
    eot_id = toy.tokenizer.eot_token_id
    name_lengths = [1, 2, 7]
    description_lengths = [4, 6, 3] if described else [0, 0, 0]  # "star-shaped": 3 tokens
    # [SOS] m name n description . [EOS]
    expected_eot = [1 + m + k + n + d + 1 for k, d in zip(name_lengths, description_lengths)]
    assert tokens.eot.tolist() == expected_eot
    assert tokens.eot.tolist() == [row.tolist().index(eot_id) for row in tokens.ids]
    for row, (k, eot) in enumerate(zip(name_lengths, tokens.eot.tolist())):
        assert tokens.ids[row, 0] == toy.tokenizer.sot_token_id
        assert (tokens.ids[row, eot + 1:] == 0).all()
        assert tokens.before[row].tolist() == list(range(1, 1 + m))
        assert tokens.after[row].tolist() == list(range(1 + m + k, 1 + m + k + n))
        assert (tokens.ids[row, tokens.before[row]] == 0).all()
        assert (tokens.ids[row, tokens.after[row]] == 0).all()

    head, tail = init.split("{}")
    texts = [f"{head}{name}{tail} {descriptions.get(name, '')}." for name in names]
    reference = open_clip_embeddings(toy, texts)
    assert reference.shape == (3, 64)
    torch.testing.assert_close(embed(prompts, names), reference, rtol=0, atol=1e-6)
    # the tokenizer's own sequences end where the built ones do
    assert (toy.tokenizer(texts) == eot_id).float().argmax(1).tolist() == expected_eot


def test_descriptions_follow_the_normal_form_of_names(toy):
    prompts = RegionPrompts(toy, 1, 1, init="a {} .",
                            descriptions={"Dragon_Fruit": " a  pink fruit"})
    assert prompts.descriptions == {"dragon fruit": "a pink fruit"}
    torch.testing.assert_close(embed(prompts, ["DRAGON FRUIT", "egg"]),
                               open_clip_embeddings(toy, ["a dragon fruit . a pink fruit.",
                                                          "a egg . ."]), rtol=0, atol=1e-6)
    prompts.set_descriptions({"dragon fruit": ""})
    assert prompts.descriptions == {}


def test_a_name_too_long_is_refused_and_a_long_description_is_cut(toy):
    length = toy.tokenizer.context_length
    assert length == 32
    prompts = RegionPrompts(toy, 1, 1, init="a {} .")
    # [SOS] a <name> . . [EOS]: a name of length - 5 tokens fits exactly, without its description
    fits = " ".join(["red"] * (length - 5))
    prompts.set_descriptions({fits: "a description that has no room"})
    tokens = prompts.tokens([fits])
    assert tokens.eot.tolist() == [length - 1] and tokens.ids[0, -1] == toy.tokenizer.eot_token_id
    torch.testing.assert_close(embed(prompts, [fits]), open_clip_embeddings(toy, [f"a {fits} . ."]),
                               rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="does not fit CLIP's 32-token context"):
        prompts.tokens([fits + " red"])

    words = ("alpha bravo charlie delta echo golf hotel india juliet lima mike november oscar papa "
             "quebec romeo sierra tango uniform victor whiskey yankee zulu red green blue black "
             "white pink gold").split()
    assert all(len(toy.tokenizer.encode(w)) == 1 for w in words) and len(words) == 30
    prompts.set_descriptions({"egg": " ".join(words)})
    tokens = prompts.tokens(["egg", "tomato"])
    # [SOS] a egg . <26 description words> . [EOS]
    kept = length - 6
    assert tokens.eot.tolist() == [length - 1, 5]
    assert tokens.ids[0, 4:4 + kept].tolist() == toy.tokenizer.encode(" ".join(words[:kept]))
    assert tokens.ids[0, -2] == toy.tokenizer.encode(".")[0]
    texts = [f"a egg . {' '.join(words[:kept])}.", "a tomato . ."]
    torch.testing.assert_close(embed(prompts, ["egg", "tomato"]), open_clip_embeddings(toy, texts),
                               rtol=0, atol=1e-6)


def test_bad_arguments(toy):
    with pytest.raises(ValueError, match="at least one context vector"):
        RegionPrompts(toy, 0, 0)
    with pytest.raises(ValueError, match="has 1 tokens before the name and 1 after"):
        RegionPrompts(toy, 2, 1, init="a {} .")
    with pytest.raises(ValueError, match="one '{}'"):
        RegionPrompts(toy, 1, 1, init="a photo")
    prompts = RegionPrompts(toy, 1, 1)
    with pytest.raises(ValueError, match="non-empty list"):
        prompts("egg")
    with pytest.raises(ValueError, match="has no tokens"):
        prompts.tokens(["..."[:0] + "_"])


# ---- gradients ---------------------------------------------------------------------------------
def test_gradients_reach_only_the_context_vectors():
    clip = load_clip("toyworld")  # its own: frozen and backpropagated through here
    visual = dict(clip.model.visual.named_parameters())
    visual_flags = {name: p.requires_grad for name, p in visual.items()}
    assert all(visual_flags.values())
    prompts = RegionPrompts(clip, 2, 1)
    assert [name for name, _ in prompts.named_parameters()] == ["context_before", "context_after"]
    target = F.normalize(torch.randn(3, 64, generator=torch.Generator().manual_seed(1)), dim=-1)
    loss = -(prompts(["egg", "tomato", LONG]) * target).sum()
    loss.backward()
    for context in (prompts.context_before, prompts.context_after):
        assert context.grad is not None and (context.grad.abs().sum(dim=1) > 0).all()
    text = [(name, p) for name, p in clip.model.named_parameters()
            if not name.startswith("visual.")]
    assert len(text) > 5
    for name, parameter in text:
        assert parameter.grad is None and not parameter.requires_grad, name
    for name, parameter in visual.items():
        assert parameter.grad is None and parameter.requires_grad == visual_flags[name], name


# ---- the file ----------------------------------------------------------------------------------
_unpickled = []


def _record(tag):
    _unpickled.append(tag)
    return tag


class Payload:
    """Runs :func:`_record` when unpickled without weights_only."""

    def __reduce__(self):
        return (_record, ("ran",))


def test_save_load_round_trip(toy, tmp_path, monkeypatch):
    prompts = RegionPrompts(toy, 2, 1, descriptions={"egg": "a white oval food"})
    background = torch.randn(64)
    prompts.extra = {"background": background, "report": '{"steps": 3}'}
    path = tmp_path / "prompts.pt"
    prompts.save(path)
    calls = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(k) or real_load(*a, **k))
    loaded = RegionPrompts.load(path, toy)
    assert [k.get("weights_only") for k in calls] == [True]
    names = ["egg", "tomato", "zebra"]
    assert torch.equal(embed(loaded, names), embed(prompts, names))
    assert torch.equal(loaded.context_before, prompts.context_before)
    assert (loaded.num_before, loaded.num_after) == (2, 1)
    assert loaded.descriptions == {"egg": "a white oval food"}
    assert set(loaded.extra) == {"background", "report"}
    assert torch.equal(loaded.extra["background"], background)
    assert loaded.extra["report"] == '{"steps": 3}'

    # weights_only for real: a pickled object is refused, not run
    data = prompts.to_file_dict()
    data["extra"] = {"payload": Payload()}
    torch.save(data, tmp_path / "payload.pt")
    monkeypatch.undo()
    with pytest.raises(ValueError, match="is not a region prompts file: torch.load cannot read it"):
        RegionPrompts.load(tmp_path / "payload.pt", toy)
    assert _unpickled == []
    torch.load(tmp_path / "payload.pt", weights_only=False)
    assert _unpickled == ["ran"]  # the payload would have run


def test_loading_draws_no_random_numbers(toy, tmp_path):
    RegionPrompts(toy, 1, 1).save(tmp_path / "p.pt")
    state = torch.get_rng_state()
    RegionPrompts.load(tmp_path / "p.pt", toy)
    assert torch.equal(torch.get_rng_state(), state)


def test_unseen_names(toy):
    prompts = RegionPrompts(toy, 1, 1, init="a {} .")
    names = ["zebra", "teapot", "accordion", "red fire truck"]
    got = embed(prompts, names)
    assert got.shape == (4, 64) and got.dtype == torch.float32
    torch.testing.assert_close(got.norm(dim=1), torch.ones(4))
    cosine = got @ got.T
    assert (cosine[~torch.eye(4, dtype=torch.bool)] < 1 - 1e-3).all()
    torch.testing.assert_close(got, open_clip_embeddings(toy, [f"a {n} . ." for n in names]),
                               rtol=0, atol=1e-6)


def test_a_file_for_another_clip_is_refused(toy, tiny, tmp_path):
    toy_file, tiny_file = tmp_path / "toy.pt", tmp_path / "tiny.pt"
    RegionPrompts(toy, 1, 1).save(toy_file)
    RegionPrompts(tiny, 1, 1).save(tiny_file)
    with pytest.raises(PromptsMismatchError, match="learned for CLIP toyworld"):
        RegionPrompts.load(toy_file, tiny)
    with pytest.raises(PromptsMismatchError, match="learned for CLIP ovdet-test-vit-t8"):
        RegionPrompts.load(tiny_file, toy)

    other = load_clip("toyworld")
    with torch.no_grad():
        other.model.visual.conv1.weight[0, 0, 0, 0] += 1.0
    RegionPrompts.load(toy_file, other)  # the image tower is no part of the text embeddings
    with torch.no_grad():
        other.model.token_embedding.weight[320, 0] += 1e-3
    with pytest.raises(PromptsMismatchError, match="learned for other toyworld weights"):
        RegionPrompts.load(toy_file, other)
    assert issubclass(PromptsMismatchError, ValueError)


def test_files_that_are_not_prompts(toy, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        RegionPrompts.load(tmp_path / "missing.pt", toy)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00 not a torch file at all" * 10)
    with pytest.raises(ValueError, match="is not a region prompts file: torch.load cannot read it"):
        RegionPrompts.load(garbage, toy)
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="torch.load cannot read it"):
        RegionPrompts.load(tmp_path / "empty.pt", toy)
    for name, content in (("tensor", torch.zeros(3)), ("checkpoint", {"model": {}}),
                          ("other", {"format": "something-else"})):
        torch.save(content, tmp_path / f"{name}.pt")
        with pytest.raises(ValueError, match="is not an ovdet region prompts file"):
            RegionPrompts.load(tmp_path / f"{name}.pt", toy)
    data = RegionPrompts(toy, 1, 1).to_file_dict()
    torch.save({**data, "version": 2}, tmp_path / "v2.pt")
    with pytest.raises(ValueError, match="version 2 prompts file"):
        RegionPrompts.load(tmp_path / "v2.pt", toy)
    torch.save({k: v for k, v in data.items() if k != "context_after"}, tmp_path / "cut.pt")
    with pytest.raises(ValueError, match="damaged region prompts file .missing context_after"):
        RegionPrompts.load(tmp_path / "cut.pt", toy)
    torch.save({**data, "context_before": torch.zeros(2, 96)}, tmp_path / "shape.pt")
    with pytest.raises(ValueError, match=r"context_before must be \(1, 96\)"):
        RegionPrompts.load(tmp_path / "shape.pt", toy)
    assert data["format"] == PROMPTS_FORMAT


# ---- in a detector -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_files(tiny, tmp_path_factory):
    """Two prompts files (other context vectors) for the tiny CLIP at seed 0, and one for the toy
    CLIP."""
    folder = tmp_path_factory.mktemp("prompts")
    torch.manual_seed(11)
    RegionPrompts(tiny, 1, 1).save(folder / "a.pt")
    RegionPrompts(tiny, 2, 1).save(folder / "b.pt")
    RegionPrompts(load_clip("toyworld"), 1, 1).save(folder / "toy.pt")
    return folder


def tiny_model(*overrides, base=TINY_DETECTOR):
    cfg = get_cfg()
    cfg.merge_from_list(base + list(overrides))
    torch.manual_seed(0)
    return build_model(cfg)


def test_region_prompt_source_from_config(tiny, tiny_files):
    model = tiny_model(*PROMPT_SOURCE, "MODEL.OPEN_VOCAB.PROMPTS", str(tiny_files / "a.pt"))
    prompts = RegionPrompts.load(tiny_files / "a.pt", tiny)
    model.set_training_vocabulary(NAMES)
    expected = embed(prompts, NAMES)
    torch.testing.assert_close(model.vocabulary.embeddings, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(model.vocabulary(), expected, rtol=0, atol=1e-6)
    model.set_vocabulary(["egg", "zebra"])
    torch.testing.assert_close(model.class_embeddings, embed(prompts, ["egg", "zebra"]), rtol=0,
                               atol=1e-6)
    assert model.novel_mask.tolist() == [False, True]
    # the source is the only difference from a template model of the same seed: the prompts
    # file is read without drawing from the seeded generator
    templates = tiny_model().state_dict()
    weights = model.state_dict()
    assert set(weights) - set(templates) == {
        f"{v}.source.prompts.context_{s}" for v in ("vocabulary", "stuff_vocabulary")
        for s in ("before", "after")}
    for key, value in templates.items():
        assert torch.equal(weights[key], value), key


def test_config_errors(tiny_files, tmp_path):
    with pytest.raises(ConfigError, match="needs a prompts file"):
        tiny_model(*PROMPT_SOURCE)
    with pytest.raises(ConfigError, match="PROMPTS is set .* TemplateEmbeddings"):
        tiny_model("MODEL.OPEN_VOCAB.PROMPTS", str(tiny_files / "a.pt"))
    with pytest.raises(ConfigError, match="MODEL.OPEN_VOCAB.PROMPTS: .* learned for CLIP toyworld"):
        tiny_model(*PROMPT_SOURCE, "MODEL.OPEN_VOCAB.PROMPTS", str(tiny_files / "toy.pt"))
    with pytest.raises(ConfigError, match="MODEL.OPEN_VOCAB.PROMPTS: .* does not exist"):
        tiny_model(*PROMPT_SOURCE, "MODEL.OPEN_VOCAB.PROMPTS", str(tmp_path / "none.pt"))


def test_detector_checkpoint_keeps_the_prompt_vectors(tiny, tiny_files, tmp_path):
    names = ["tomato", "egg", "zebra"]
    a = RegionPrompts.load(tiny_files / "a.pt", tiny)
    model = tiny_model(*PROMPT_SOURCE, "MODEL.OPEN_VOCAB.PROMPTS", str(tiny_files / "a.pt"))
    model.set_training_vocabulary(names)
    weights = model.state_dict()
    assert torch.equal(weights["vocabulary.source.prompts.context_before"], a.context_before)
    assert torch.equal(weights["vocabulary.source.prompts.context_after"], a.context_after)
    DetectorCheckpointer(model, str(tmp_path)).save("model_final")

    # built from other vectors of the same shape: the checkpoint's replace them
    other = tmp_path / "other.pt"
    torch.manual_seed(5)
    RegionPrompts(tiny, 1, 1).save(other)
    restored = tiny_model(*PROMPT_SOURCE, "MODEL.OPEN_VOCAB.PROMPTS", str(other))
    restored.set_vocabulary(names)
    assert not torch.allclose(restored.vocabulary(), embed(a, names), atol=1e-3)
    DetectorCheckpointer(restored, complete=True).load(str(tmp_path / "model_final.pth"))
    restored.eval()
    torch.testing.assert_close(restored.vocabulary(), embed(a, names), rtol=0, atol=1e-6)
    restored.set_vocabulary(["egg"])
    torch.testing.assert_close(restored.class_embeddings, embed(a, ["egg"]), rtol=0, atol=1e-6)

    # prompts of another shape (m = 2) do not fit the checkpoint
    mismatched = tiny_model(*PROMPT_SOURCE, "MODEL.OPEN_VOCAB.PROMPTS", str(tiny_files / "b.pt"))
    with pytest.raises(ValueError, match="does not fit this model"):
        DetectorCheckpointer(mismatched, complete=True).load(str(tmp_path / "model_final.pth"))
    # the file is read when the model is built, before any checkpoint: without it no model
    # (the checkpoint's vectors would have sufficed; reported, not designed here)
    other.unlink()
    with pytest.raises(ConfigError, match="does not exist"):
        tiny_model(*PROMPT_SOURCE, "MODEL.OPEN_VOCAB.PROMPTS", str(other))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_region_prompt_source_on_a_gpu(tiny, tiny_files):
    """build_model moves the context vectors to MODEL.DEVICE but not the text tower (the CLIP is
    no submodule of the detector)."""
    model = tiny_model(*PROMPT_SOURCE, "MODEL.OPEN_VOCAB.PROMPTS", str(tiny_files / "a.pt"),
                       "MODEL.DEVICE", "cuda")
    model.set_vocabulary(NAMES)
    model.eval()
    embeddings = model.vocabulary()
    assert embeddings.device.type == "cuda"
    prompts = RegionPrompts.load(tiny_files / "a.pt", tiny)
    torch.testing.assert_close(embeddings.cpu(), embed(prompts, NAMES), rtol=0, atol=1e-5)


# ---- the predictor and the demo ------------------------------------------------------------------
@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A tiny template detector's checkpoint and its config file."""
    folder = tmp_path_factory.mktemp("detector")
    model = tiny_model()
    model.set_training_vocabulary(["tomato", "egg"])
    DetectorCheckpointer(model, str(folder)).save("model_final")
    cfg = get_cfg()
    cfg.merge_from_list(TINY_DETECTOR)
    (folder / "config.yaml").write_text(cfg.dump())
    return folder


def test_predictor_with_prompts(tiny, tiny_files, weights):
    cfg = get_cfg()
    cfg.merge_from_list(TINY_DETECTOR)
    torch.manual_seed(0)  # the random text tower is no part of a checkpoint: the tiny CLIP's
    predictor = OVPredictor(cfg, str(weights / "model_final.pth"))
    names = ["tomato", "egg", "zebra"]
    prompts = RegionPrompts.load(tiny_files / "b.pt", tiny)
    predictor.set_vocabulary(names, prompts=tiny_files / "b.pt")
    torch.testing.assert_close(predictor.model.vocabulary.embeddings, embed(prompts, names), rtol=0,
                               atol=1e-6)
    assert predictor.model.novel_mask.tolist() == [False, False, True]
    results = predictor(np.full((40, 56, 3), 90, np.uint8))
    assert set(results[0]["labels"]) <= set(names)
    predictor.set_vocabulary(["egg"], prompts=prompts)  # loaded prompts
    torch.testing.assert_close(predictor.model.class_embeddings, embed(prompts, ["egg"]), rtol=0,
                               atol=1e-6)
    with pytest.raises(ValueError, match="one of templates, embeddings or prompts"):
        predictor.set_vocabulary(names, templates=["a {}."], prompts=prompts)
    with pytest.raises(ValueError, match="one of templates, embeddings or prompts"):
        predictor.set_vocabulary(names, embeddings=torch.zeros(3, 32), prompts=prompts)
    with pytest.raises(PromptsMismatchError):
        predictor.set_vocabulary(names, prompts=str(tiny_files / "toy.pt"))
    assert predictor.vocabulary == ["egg"]  # unchanged by the refusals


def test_predictor_prompts_embed_stuff_of_a_panoptic_model(tiny, tiny_files, tmp_path):
    model = tiny_model(base=TINY_PANOPTIC)
    model.set_training_vocabulary(["tomato", "egg"], stuff=["wall"])
    DetectorCheckpointer(model, str(tmp_path)).save("model_final")
    cfg = get_cfg()
    cfg.merge_from_list(TINY_PANOPTIC)
    torch.manual_seed(0)
    predictor = OVPredictor(cfg, str(tmp_path / "model_final.pth"))
    prompts = RegionPrompts.load(tiny_files / "a.pt", tiny)
    predictor.set_vocabulary(["tomato", "zebra"], stuff=["sky", "wall"],
                             prompts=tiny_files / "a.pt")
    assert predictor.stuff_vocabulary == ["sky", "wall"]
    torch.testing.assert_close(predictor.model.stuff_vocabulary.embeddings,
                               embed(prompts, ["sky", "wall"]), rtol=0, atol=1e-6)
    torch.testing.assert_close(predictor.model.vocabulary.embeddings,
                               embed(prompts, ["tomato", "zebra"]), rtol=0, atol=1e-6)


def test_demo_prompts(tiny_files, weights, tmp_path, capsys):
    image = tmp_path / "a.png"
    Image.fromarray(np.full((40, 56, 3), 90, np.uint8)).save(image)
    demo = load_tool("demo")
    common = ["--config-file", str(weights / "config.yaml"), "--input", str(image),
              "--vocabulary", "tomato,egg,zebra", "--confidence", "0"]
    with pytest.raises(SystemExit) as exited:
        demo.main([*common, "--output", str(tmp_path / "wrong"), "--prompts",
                   str(tiny_files / "toy.pt"), "MODEL.WEIGHTS", str(weights / "model_final.pth")])
    message = str(exited.value.code)
    assert message.startswith("error: ") and "\n" not in message
    assert "learned for CLIP toyworld" in message
    assert not (tmp_path / "wrong").exists()

    torch.manual_seed(0)  # the predictor's random text tower is then the tiny CLIP's
    demo.main([*common, "--output", str(tmp_path / "out"), "--prompts", str(tiny_files / "a.pt"),
               "MODEL.WEIGHTS", str(weights / "model_final.pth")])
    assert (tmp_path / "out" / "a.json").is_file() and (tmp_path / "out" / "a.png").is_file()
    assert "wrote 1 of 1 images" in capsys.readouterr().out


def test_checkpoint_prompts_that_differ_from_the_file_are_used_with_a_warning(toy, caplog):
    from ovdet.modeling.vocabulary import RegionPromptEmbeddings

    source = RegionPromptEmbeddings(clip=toy, prompts=RegionPrompts(toy, 1, 1))
    same = {k: v.clone() for k, v in source.state_dict().items()}
    with caplog.at_level("WARNING", logger="ovdet.modeling.vocabulary"):
        source.load_state_dict(same)
    assert not caplog.records
    other = {k: v + 1 for k, v in same.items()}
    with caplog.at_level("WARNING", logger="ovdet.modeling.vocabulary"):
        source.load_state_dict(other)
    assert "differ from those of the prompts file" in caplog.text
    assert torch.equal(source.prompts.context_before, other["prompts.context_before"])
