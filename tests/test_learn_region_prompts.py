"""Learning region prompts (ovdet.clip.prompt_learning) and tools/learn_region_prompts.py: box
geometry by hand, accuracy of a hand-made region set, the trainer's loss against a by-hand
computation, a resumed training equal to a whole one, and the command line on the tiny toy
world."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ovdet.clip import load_clip
from ovdet.clip.prompt_learning import (PromptTrainer, PromptTrainingOptions, RegionSet,
                                        background_boxes, clip_logit_scale, extract_regions,
                                        object_overlap, region_accuracy, scale_boxes)
from ovdet.clip.prompts import RegionPrompts
from ovdet.clip.rma import box_embeddings
from ovdet.clip.vit import CLIPViTTrunk
from ovdet.data import DatasetCatalog
from test_train_net import load_tool

NAMES = ["tomato", "egg", "lime"]
# the first 3 losses of the trainer below (toy CLIP, seed 7), computed when it was written
PINNED_LOSSES = [1.442706823348999, 0.4495841860771179, 0.18216149508953094]


@pytest.fixture(scope="module")
def toy():
    """The toy CLIP, this module's own copy (RegionPrompts freezes its text tower)."""
    return load_clip("toyworld")


# ---- boxes -------------------------------------------------------------------------------------
def test_object_overlap_by_hand():
    gt = torch.tensor([[10., 10., 20., 20.], [40., 40., 44., 44.]])
    boxes = torch.tensor([[10., 10., 20., 20.],   # the object: 1
                          [0., 0., 40., 40.],     # around the first object: IoU 100/1600, covers it
                          [15., 10., 25., 20.],   # half of it: IoU 50/150, covers 0.5
                          [21., 21., 39., 39.],   # between them: 0
                          [38., 38., 48., 48.],   # around the small one: IoU 16/100, covers 1
                          [42., 42., 50., 50.]])  # a quarter of the small one: IoU 4/(64+16-4)
    expected = [1.0, 1.0, 0.5, 0.0, 1.0, 4 / 16]
    torch.testing.assert_close(object_overlap(boxes, gt), torch.tensor(expected))
    # IoU when it is the larger: a box a little larger than the object
    torch.testing.assert_close(object_overlap(torch.tensor([[10., 10., 20., 22.]]), gt[:1]),
                               torch.tensor([1.0]))
    torch.testing.assert_close(object_overlap(torch.tensor([[12., 10., 22., 20.]]), gt[:1]),
                               torch.tensor([0.8]))  # IoU 80/120 = 0.667 < coverage 0.8
    # a small box lying on a large object: IoU 4/100, covers 0.04, but it is all inside
    torch.testing.assert_close(object_overlap(torch.tensor([[12., 12., 14., 14.]]), gt[:1]),
                               torch.tensor([1.0]))
    assert object_overlap(boxes, torch.zeros(0, 4)).tolist() == [0.0] * 6
    assert object_overlap(torch.zeros(0, 4), gt).shape == (0,)


def overlap_by_hand(box, gt):
    """IoU, coverage and inside fraction of one box with one gt box, in plain floats."""
    iw = max(0.0, min(box[2], gt[2]) - max(box[0], gt[0]))
    ih = max(0.0, min(box[3], gt[3]) - max(box[1], gt[1]))
    inter = iw * ih
    area = (box[2] - box[0]) * (box[3] - box[1])
    gt_area = (gt[2] - gt[0]) * (gt[3] - gt[1])
    return max(inter / (area + gt_area - inter), inter / gt_area, inter / area)


def test_background_boxes_avoid_objects():
    gt = torch.tensor([[10., 10., 30., 30.], [40., 5., 60., 40.], [2., 40., 6., 44.]])
    size = (48, 64)  # height, width
    boxes = background_boxes(gt, size, 40, 0.3, np.random.default_rng(0))
    assert boxes.shape == (40, 4) and boxes.dtype == torch.float32
    for box in boxes.tolist():
        assert 0 <= box[0] < box[2] <= 64 and 0 <= box[1] < box[3] <= 48
        assert box[2] - box[0] >= 4 - 1e-4 and box[3] - box[1] >= 4 - 1e-4
        assert all(overlap_by_hand(box, g) < 0.3 for g in gt.tolist()), box
    again = background_boxes(gt, size, 40, 0.3, np.random.default_rng(0))
    assert torch.equal(boxes, again)
    # nowhere to go: an object as large as the image, a box must cover under 0.3 of it
    crowded = background_boxes(torch.tensor([[0., 0., 64., 48.]]), size, 10, 0.3,
                               np.random.default_rng(1))
    assert all(overlap_by_hand(b, [0, 0, 64, 48]) < 0.3 for b in crowded.tolist())
    assert len(background_boxes(torch.zeros(0, 4), size, 7, 0.3, np.random.default_rng(2))) == 7


def test_scale_boxes_by_hand():
    boxes = torch.tensor([[10., 10., 20., 30.], [30., 30., 34., 34.]])
    torch.testing.assert_close(scale_boxes(boxes, 2.0, (40, 100)),
                               torch.tensor([[5., 0., 25., 40.], [28., 28., 36., 36.]]))
    torch.testing.assert_close(scale_boxes(boxes, 1.5, (100, 22)),
                               torch.tensor([[7.5, 5., 22., 35.], [22., 29., 22., 35.]]))
    assert torch.equal(scale_boxes(boxes, 1.0, (1, 1)), boxes)


# ---- accuracy ----------------------------------------------------------------------------------
def test_region_accuracy_of_a_hand_made_set():
    classes = torch.eye(4)[:3] * torch.tensor([[1.0], [2.0], [0.5]])  # not unit norm
    novel = torch.tensor([False, False, True])
    embeddings = torch.tensor([[1., 0.1, 0., 0.],    # class 0, right
                               [0., 1., 0., 0.5],    # class 0, wrong (1)
                               [0.2, 3., 0., 0.],    # class 1, right
                               [0., 0., 5., 0.],     # class 2, right
                               [1., 0., 0.9, 0.],    # class 2, wrong (0)
                               [0., 0., 1., 0.]])    # background: not counted
    labels = torch.tensor([0, 0, 1, 2, 2, -1])
    regions = RegionSet(embeddings, labels)
    expected = {"all": 60.0, "all_boxes": 5, "base": 66.67, "base_boxes": 3, "novel": 50.0,
                "novel_boxes": 2}
    assert region_accuracy(regions, classes, 100.0, novel) == expected
    assert region_accuracy(regions, classes, 100.0, novel, batch_size=2) == expected
    base_only = RegionSet(embeddings[:3], labels[:3])
    assert region_accuracy(base_only, classes, 1.0, novel) == {
        "all": 66.67, "all_boxes": 3, "base": 66.67, "base_boxes": 3, "novel": None,
        "novel_boxes": 0}
    background = RegionSet(embeddings[5:], labels[5:])
    assert region_accuracy(background, classes, 1.0, novel) == {
        "all": None, "all_boxes": 0, "base": None, "base_boxes": 0, "novel": None,
        "novel_boxes": 0}


# ---- region extraction -------------------------------------------------------------------------
def test_extract_regions_pads_as_the_detector_does(toy):
    trunk = CLIPViTTrunk(toy.model.visual, 2).eval()
    mean, std = toy.image_normalization()
    mean = torch.tensor(mean).view(1, 3, 1, 1) * 255
    std = torch.tensor(std).view(1, 3, 1, 1) * 255
    generator = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (3, 64, 64), generator=generator, dtype=torch.uint8),
              torch.randint(0, 256, (3, 40, 56), generator=generator, dtype=torch.uint8)]
    boxes = [torch.tensor([[8., 8., 40., 40.], [30., 2., 62., 20.]]),
             torch.tensor([[4., 4., 20., 36.]])]
    batch = [{"image": im, "instances": {"boxes": b, "classes": torch.arange(len(b))}}
             for im, b in zip(images, boxes)]
    regions = extract_regions(trunk, lambda x: (x - mean) / std, [batch], box_scale=1.5,
                              background_per_image=3, background_max_overlap=0.3, seed=4)
    # the detector's preprocessing: each image normalised, then the batch zero-padded
    padded = torch.zeros(2, 3, 64, 64)
    for b, image in enumerate(images):
        padded[b, :, :image.shape[1], :image.shape[2]] = (image.float() - mean[0]) / std[0]
    scaled = [scale_boxes(boxes[0], 1.5, (64, 64)), scale_boxes(boxes[1], 1.5, (40, 56))]
    with torch.no_grad():
        expected = box_embeddings(trunk, trunk(padded), scaled)
    assert regions.labels.tolist() == [0, 1, -1, -1, -1, 0, -1, -1, -1]
    positives = regions.embeddings[regions.labels >= 0]
    torch.testing.assert_close(positives, torch.cat(expected), rtol=0, atol=1e-5)


# ---- the trainer -------------------------------------------------------------------------------
def synthetic_regions(clip, per_class=10, background=10):
    """Regions near open_clip embeddings of other texts of the classes, plus random background."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        text = clip.model.encode_text(clip.tokenizer([f"a photo of a {n}." for n in NAMES]))
    text = F.normalize(text, dim=-1)
    embeddings = [text[c] + 0.3 * torch.randn(per_class, text.shape[1], generator=generator)
                  for c in range(len(NAMES))]
    embeddings.append(torch.randn(background, text.shape[1], generator=generator))
    labels = torch.tensor(sum(([c] * per_class for c in range(len(NAMES))), []) + [-1] * background)
    return RegionSet(torch.cat(embeddings), labels)


def trainer_for(clip, regions, max_iter, seed=0, **kwargs):
    options = PromptTrainingOptions(max_iter=max_iter, batch_size=8, base_lr=1e-2, seed=seed,
                                    **kwargs)
    prompts = RegionPrompts(clip, 1, 1, init="a {} .")
    return PromptTrainer(prompts, NAMES, regions, options, clip_logit_scale(clip))


def test_trainer_loss_by_hand_pinned_and_decreasing(toy):
    regions = synthetic_regions(toy)
    trainer = trainer_for(toy, regions, 3, seed=7)
    scale = clip_logit_scale(toy)
    assert scale == pytest.approx(math.exp(float(toy.model.logit_scale)))
    # step 0 by hand: "a {} ." as context is open_clip's "a <name> . .", background N(0, 0.02)
    with torch.no_grad():
        classes = F.normalize(toy.model.encode_text(toy.tokenizer(
            [f"a {n} . ." for n in NAMES])), dim=-1)
    background = torch.randn(64, generator=torch.Generator().manual_seed(7)) * 0.02
    classes = torch.cat([classes, F.normalize(background, dim=0)[None]])
    pick = np.random.default_rng([7, 0]).integers(0, len(regions.labels), 8)
    labels = regions.labels[pick].clone()
    labels[labels < 0] = 3
    logits = scale * F.normalize(regions.embeddings[pick], dim=-1) @ classes.T
    by_hand = -logits.log_softmax(dim=1)[torch.arange(8), labels].mean()
    with torch.no_grad():
        assert trainer.loss(0).item() == pytest.approx(by_hand.item(), rel=1e-5)

    losses = trainer.train()
    assert trainer.step == 3
    assert losses == pytest.approx(PINNED_LOSSES, rel=1e-4)

    long = trainer_for(toy, regions, 30)
    losses = long.train()
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])


def test_resumed_training_equals_a_whole_one(toy, tmp_path):
    regions = synthetic_regions(toy)
    whole = trainer_for(toy, regions, 6, checkpoint_period=3)
    saved = []

    def save(trainer):
        path = tmp_path / f"state_{trainer.step}.pt"
        torch.save(trainer.state(), path)
        saved.append(path.name)

    whole_losses = whole.train(save)
    assert saved == ["state_3.pt", "state_6.pt"]

    torch.manual_seed(123)  # another start: the state's vectors replace it
    resumed = PromptTrainer(RegionPrompts(toy, 1, 1), NAMES, regions,
                            PromptTrainingOptions(max_iter=6, batch_size=8, base_lr=1e-2,
                                                  checkpoint_period=3),
                            clip_logit_scale(toy))
    resumed.load_state(torch.load(tmp_path / "state_3.pt", weights_only=True))
    assert resumed.step == 3
    resumed_losses = resumed.train()
    assert resumed_losses == whole_losses[3:]
    assert torch.equal(resumed.prompts.context_before, whole.prompts.context_before)
    assert torch.equal(resumed.prompts.context_after, whole.prompts.context_after)
    assert torch.equal(resumed.background, whole.background)
    assert not torch.equal(whole.prompts.context_before,
                           torch.load(tmp_path / "state_3.pt", weights_only=True)
                           ["prompts"]["context_before"])  # it did train after step 3


def test_trainer_refuses_bad_inputs(toy):
    regions = synthetic_regions(toy)
    with pytest.raises(ValueError, match="region labels reach 2 but there are 2 class names"):
        PromptTrainer(RegionPrompts(toy, 1, 1), NAMES[:2], regions,
                      PromptTrainingOptions(max_iter=1), 1.0)
    with pytest.raises(ValueError, match="no training regions"):
        PromptTrainer(RegionPrompts(toy, 1, 1), NAMES, RegionSet.empty(64),
                      PromptTrainingOptions(max_iter=1), 1.0)
    with pytest.raises(ValueError, match="at least 1"):
        PromptTrainingOptions(max_iter=0)


# ---- the command line --------------------------------------------------------------------------
SETTINGS = ["PROMPT_LEARNING.MAX_ITER", "5", "PROMPT_LEARNING.MAX_IMAGES", "6",
            "PROMPT_LEARNING.BATCH_SIZE", "16", "PROMPT_LEARNING.CHECKPOINT_PERIOD", "2",
            "PROMPT_LEARNING.BACKGROUND_PER_IMAGE", "2"]


@pytest.fixture(scope="module")
def tool():
    return load_tool("learn_region_prompts")


@pytest.fixture(scope="module")
def prompts_config(tiny_world, tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts_cfg") / "prompts.yaml"
    path.write_text("MODEL:\n  CLIP:\n    NAME: toyworld\nINPUT:\n  MIN_SIZE: 64\n  MAX_SIZE: 64\n"
                    "DATASETS:\n  TRAIN: [tiny_train]\n  TEST: [tiny_val]\n")
    return str(path)


def run(tool, config, out, *flags, settings=SETTINGS):
    return tool.main(["--config-file", config, "--out", str(out), "--batch-size", "4", *flags,
                      *settings])


def exits(tool, capsys, *args, **kwargs):
    """The error line of a run that must exit with status 2."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        run(tool, *args, **kwargs)
    assert exited.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    return lines[0]


def by_hand_accuracy(regions, classes, novel):
    """Percent right of the labelled regions, all / base / novel, in NumPy."""
    e = regions["embeddings"].numpy()
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    c = classes.numpy()
    right = (e @ c.T).argmax(1) == regions["labels"].numpy()
    is_novel = novel[regions["labels"].numpy()]
    return {"all": round(100 * right.mean(), 2), "base": round(100 * right[~is_novel].mean(), 2),
            "novel": round(100 * right[is_novel].mean(), 2)}


@pytest.fixture(scope="module")
def first_run(tool, prompts_config, tmp_path_factory):
    out = tmp_path_factory.mktemp("learned") / "prompts.pt"
    report = run(tool, prompts_config, out)
    return out, report


def test_command_line_outputs(tool, toy, first_run):
    out, report = first_run
    assert json.loads((out.parent / "prompts.report.json").read_text()) == report
    val = DatasetCatalog.get("tiny_val")[:6]
    train = DatasetCatalog.get("tiny_train")[:6]
    metadata = DatasetCatalog.metadata("tiny_val")
    novel = np.array([s == "novel" for s in metadata.class_splits])
    val_labels = [a["category_id"] for r in val for a in r["annotations"]]  # contiguous
    assert report["train_boxes"] == sum(len(r["annotations"]) for r in train) > 0
    assert 0 < report["background_boxes"] <= 2 * 6
    assert report["base_classes"] == DatasetCatalog.metadata("tiny_train").thing_classes
    assert report["novel_classes"] == [n for n, s in zip(metadata.thing_classes, novel) if s]
    assert report["context"] == [1, 1] and report["steps"] == 5 and report["descriptions"]
    accuracy = report["region_accuracy"]
    assert set(accuracy) == {"templates", "prompts_before", "prompts_after"}
    for block in accuracy.values():
        assert block["all_boxes"] == len(val_labels) > 0
        assert block["novel_boxes"] == int(novel[val_labels].sum()) > 0
        assert block["base_boxes"] == len(val_labels) - block["novel_boxes"]
        assert all(0 <= block[k] <= 100 for k in ("all", "base", "novel"))

    prompts = RegionPrompts.load(out, toy)
    assert prompts.extra["background"].shape == (64,)
    assert json.loads(prompts.extra["report"]) == report
    assert prompts.descriptions["tomato"] == "a red round fruit"
    parts = out.parent / "prompts.pt.parts"
    assert sorted(p.name for p in parts.iterdir()) == ["state.pt", "train_00000.pt",
                                                       "val_00000.pt"]
    regions = torch.load(parts / "val_00000.pt", weights_only=True)
    assert sorted(regions["labels"].tolist()) == sorted(val_labels)
    with torch.no_grad():
        classes = prompts(metadata.thing_classes)
    got = {k: accuracy["prompts_after"][k] for k in ("all", "base", "novel")}
    assert got == pytest.approx(by_hand_accuracy(regions, classes, novel), abs=0.01)


def test_command_line_refuses_to_overwrite_and_resumes(tool, toy, prompts_config, first_run,
                                                       capsys):
    out, report = first_run
    learned = RegionPrompts.load(out, toy)
    assert "exists: --overwrite replaces it" in exits(tool, capsys, prompts_config, out)
    assert "other settings" in exits(tool, capsys, prompts_config, out, "--resume",
                                     settings=SETTINGS + ["PROMPT_LEARNING.MAX_ITER", "7"])
    resumed = run(tool, prompts_config, out, "--resume")  # finished: nothing more to train
    assert resumed == report
    assert torch.equal(RegionPrompts.load(out, toy).context_before, learned.context_before)
    again = run(tool, prompts_config, out, "--overwrite")  # trains again, to the same vectors
    assert again == report
    assert torch.equal(RegionPrompts.load(out, toy).context_after, learned.context_after)


class Interrupted(Exception):
    pass


def test_interrupted_run_resumes_to_the_whole_run(tool, toy, prompts_config, first_run, tmp_path,
                                                  monkeypatch, capsys):
    out = tmp_path / "prompts.pt"
    real_loss = PromptTrainer.loss

    def dies_at_step_3(self, step):
        if step == 3:
            raise Interrupted
        return real_loss(self, step)

    monkeypatch.setattr(PromptTrainer, "loss", dies_at_step_3)
    with pytest.raises(Interrupted):
        run(tool, prompts_config, out)
    monkeypatch.undo()
    assert not out.exists()
    state = torch.load(tmp_path / "prompts.pt.parts" / "state.pt", weights_only=True)
    assert state["step"] == 2
    assert "holds the state of an earlier run" in exits(tool, capsys, prompts_config, out)
    report = run(tool, prompts_config, out, "--resume")
    assert report == first_run[1]
    whole = RegionPrompts.load(first_run[0], toy)
    resumed = RegionPrompts.load(out, toy)
    assert torch.equal(resumed.context_before, whole.context_before)
    assert torch.equal(resumed.context_after, whole.context_after)
    assert torch.equal(resumed.extra["background"], whole.extra["background"])


def test_command_line_bad_arguments(tool, prompts_config, tmp_path, capsys):
    before = Path(prompts_config).read_text()
    assert "is the config file" in exits(tool, capsys, prompts_config, prompts_config,
                                         "--overwrite")
    assert Path(prompts_config).read_text() == before
    assert "is a directory" in exits(tool, capsys, prompts_config, tmp_path)
    assert "DATASETS.TEST is empty" in exits(tool, capsys, prompts_config, tmp_path / "p.pt",
                                             settings=SETTINGS + ["DATASETS.TEST", "()"])
    assert not (tmp_path / "p.pt").exists() and not (tmp_path / "p.pt.parts").exists()


def test_without_background_regions_the_softmax_has_no_background_column(toy):
    regions = synthetic_regions(toy, background=0)
    trainer = trainer_for(toy, regions, 1)
    assert not trainer.with_background
    rng = np.random.default_rng([0, 0])
    pick = torch.from_numpy(rng.integers(0, len(regions.labels), 8))
    with torch.no_grad():
        classes = trainer.prompts(NAMES)  # C columns only
        logits = clip_logit_scale(toy) * F.normalize(regions.embeddings[pick], dim=-1) @ classes.T
        torch.testing.assert_close(trainer.loss(0), F.cross_entropy(logits, regions.labels[pick]))
    assert trainer_for(toy, synthetic_regions(toy), 1).with_background


def test_resume_without_state_or_with_a_damaged_one_is_refused(tool, prompts_config, first_run,
                                                               tmp_path, capsys):
    out, _ = first_run
    copy = tmp_path / "prompts.pt"
    copy.write_bytes(out.read_bytes())  # a finished output whose run state is gone
    assert "state" in exits(tool, capsys, prompts_config, copy, "--resume")
    state = tmp_path / "prompts.pt.parts" / "state.pt"
    state.parent.mkdir(exist_ok=True)
    state.write_bytes(b"not a torch file")
    assert "damaged" in exits(tool, capsys, prompts_config, copy, "--resume")
    assert copy.read_bytes() == out.read_bytes()  # never overwritten


def test_regions_embedded_in_shards_equal_one_pass_and_a_killed_run_keeps_its_shards(
        tool, prompts_config, first_run, tmp_path, monkeypatch):
    """Shards of 4 images (background boxes seeded by image number across shards) give the
    regions of one pass; a run killed during training keeps every finished shard, and its rerun
    reads them instead of embedding again."""
    out, report = first_run
    whole = torch.load(out.parent / "prompts.pt.parts" / "train_00000.pt", weights_only=True)
    monkeypatch.setattr(tool, "SHARD_IMAGES", 4)

    def interrupt(self, on_checkpoint=None):
        raise Interrupted

    with monkeypatch.context() as patch:
        patch.setattr(tool.PromptTrainer, "train", interrupt)
        with pytest.raises(Interrupted):
            run(tool, prompts_config, tmp_path / "prompts.pt")
    parts = tmp_path / "prompts.pt.parts"
    shards = [torch.load(parts / f"train_{k:05d}.pt", weights_only=True) for k in (0, 1)]
    assert torch.equal(torch.cat([s["labels"] for s in shards]), whole["labels"])
    torch.testing.assert_close(torch.cat([s["embeddings"] for s in shards]),
                               whole["embeddings"], rtol=0, atol=1e-5)

    def no_embedding(*args, **kwargs):
        raise AssertionError("a finished shard was embedded again")

    monkeypatch.setattr(tool, "extract_regions", no_embedding)
    assert run(tool, prompts_config, tmp_path / "prompts.pt") == report


def test_an_existing_report_file_is_never_overwritten(tool, prompts_config, tmp_path, capsys):
    report = tmp_path / "p.report.json"
    report.write_text("mine")
    assert "p.report.json exists" in exits(tool, capsys, prompts_config, tmp_path / "p.pt")
    assert report.read_text() == "mine" and not (tmp_path / "p.pt").exists()
