"""Training on image-labelled data (PromptDet-style self-training): batch mixing ratios, the union
vocabulary and its base names, the image-labelled flag from records to the RoI heads, and the
heads' positive-only losses."""
import importlib.util
from pathlib import Path

import pytest
import torch

from ovdet.config import ConfigError, get_cfg
from ovdet.data import DatasetCatalog, register_coco_instances
from ovdet.data.catalog import Metadata
from ovdet.data.class_counts import class_image_counts
from ovdet.data.loader import (IterationBatches, MixedIterationBatches, build_train_loader,
                               check_dataset_ratios, split_batch)
from ovdet.data.mapper import DatasetMapper
from ovdet.engine.trainer import (Trainer, training_base_names, training_records,
                                  training_vocabulary)
from ovdet.modeling.registry import build_model
from ovdet.modeling.roi_heads.mask_head import MaskRCNNConvUpsampleHead
from ovdet.modeling.roi_heads.open_vocab_heads import OpenVocabROIHeads

IMAGE_LABELS = "sst_train_image_labels"  # the tiny world's training images, all 12 classes


@pytest.fixture(scope="module")
def image_labels(tiny_world):
    """The tiny world's training json with every category, registered as an image-labelled set
    would be (keep "all"); ``tiny_train`` keeps the 8 base classes of the same images."""
    register_coco_instances(IMAGE_LABELS, str(tiny_world / "annotations/instances_train.json"),
                            str(tiny_world / "train"))
    return IMAGE_LABELS


def fake_records(first_id: int, count: int) -> list[dict]:
    return [{"image_id": first_id + k} for k in range(count)]


def fake_mapper(record: dict) -> tuple[int, float]:
    """The record's id and a draw of the seeded augmentation generator."""
    return record["image_id"], torch.rand(1).item()


# ---- batch mixing ---------------------------------------------------------------------------
@pytest.mark.parametrize("batch_size, ratios, expected", [
    (2, (1, 1), [1, 1]),
    (4, (1, 1), [2, 2]),
    (4, (3, 1), [3, 1]),
    (5, (1, 1), [3, 2]),  # a tie of remainders goes to the earlier dataset
    (8, (1, 1, 2), [2, 2, 4]),
    (10, (9, 1), [9, 1]),
    (4, (10, 1, 1), [2, 1, 1]),  # every dataset gives at least one image
    (3, (100, 1, 1), [1, 1, 1]),
    (16, (0.5, 0.25, 0.25), [8, 4, 4]),
    (7, (2, 3), [3, 4]),
])
def test_batch_split_by_ratios(batch_size, ratios, expected):
    assert split_batch(batch_size, ratios) == expected


def test_each_batch_holds_its_share_of_each_dataset():
    small, large = fake_records(0, 5), fake_records(100, 40)
    batches = MixedIterationBatches([("small", small), ("large", large)], (1, 3), fake_mapper,
                                    batch_size=4, seed=2)
    for iteration in range(12):
        ids = [i for i, _ in batches[iteration]]
        assert [i < 100 for i in ids] == [True, False, False, False]
    # each dataset goes through its own epochs: 5 iterations show every small record once
    for epoch in range(2):
        seen = [batches[i][0][0] for i in range(5 * epoch, 5 * epoch + 5)]
        assert sorted(seen) == list(range(5))
    large_epoch = [i for it in range(13) for i, _ in batches[it][1:]]
    # 40 // 3 = 13 iterations per epoch: 39 distinct records of the large dataset
    assert len(set(large_epoch)) == 39 and set(large_epoch) < set(range(100, 140))


def test_no_ratios_keeps_the_batches_of_the_concatenation():
    """DATALOADER.DATASET_RATIOS = (): the batches of the code before ratios existed (pinned)."""
    datasets = [("a", fake_records(0, 5)), ("b", fake_records(100, 4))]
    batches = list(build_train_loader(datasets, fake_mapper, 3, 5, 0, 6, 0))
    assert [[i for i, _ in batch] for batch in batches] == [
        [1, 4, 2], [3, 0, 102], [100, 101, 103], [100, 101, 2], [4, 0, 103], [102, 3, 1]]
    concatenated = IterationBatches(fake_records(0, 5) + fake_records(100, 4), fake_mapper, 3, 5)
    assert batches == [concatenated[i] for i in range(6)]


def test_mixed_batch_depends_on_seed_and_iteration_only():
    datasets = [("a", fake_records(0, 7)), ("b", fake_records(100, 3))]
    whole = list(build_train_loader(datasets, fake_mapper, 3, 9, 0, 10, 0, ratios=(2, 1)))
    resumed = list(build_train_loader(datasets, fake_mapper, 3, 9, 6, 10, 0, ratios=(2, 1)))
    assert resumed == whole[6:]  # ids and augmentation draws
    other_seed = list(build_train_loader(datasets, fake_mapper, 3, 8, 0, 10, 0, ratios=(2, 1)))
    assert other_seed != whole


@pytest.mark.parametrize("ratios, message", [
    ((1,), "one ratio per dataset of DATASETS.TRAIN (2), got 1"),
    ((1, 2, 3), "one ratio per dataset of DATASETS.TRAIN (2), got 3"),
    ((1, 0), "positive numbers, got 0"),
    ((1, -2), "positive numbers, got -2"),
    ((1, "a"), "positive numbers, got 'a'"),
    ((1, True), "positive numbers, got True"),
    ((1, float("nan")), "positive numbers, got nan"),
    ("1, 1", "list of numbers"),
])
def test_bad_ratios_are_config_errors(ratios, message):
    with pytest.raises(ConfigError, match="DATALOADER.DATASET_RATIOS") as error:
        check_dataset_ratios(ratios, 2)
    assert message in str(error.value)


def test_a_batch_too_small_for_the_mix_is_a_config_error():
    with pytest.raises(ConfigError, match="DATALOADER.DATASET_RATIOS mixes 3 datasets.*has 2"):
        MixedIterationBatches([(n, fake_records(0, 4)) for n in "abc"], (1, 1, 1), fake_mapper,
                              batch_size=2, seed=0)


# ---- vocabulary and records -----------------------------------------------------------------
def test_union_vocabulary_remapped_records_and_box_labelled_base_names(tiny_world, image_labels):
    names, marked = ["tiny_train", image_labels], [image_labels]
    base = DatasetCatalog.metadata("tiny_train").thing_classes
    every = DatasetCatalog.metadata(image_labels).thing_classes
    assert len(base) == 8 and len(every) == 12
    vocabulary = training_vocabulary(names, marked)
    assert vocabulary == base + [c for c in every if c not in base]
    assert training_base_names(names, marked) == base  # novel classes stay novel
    datasets = training_records(names, marked)
    assert [name for name, _ in datasets] == names
    for (name, records), original in zip(datasets, map(DatasetCatalog.get, names)):
        classes = DatasetCatalog.metadata(name).thing_classes
        assert all(r.get("image_labelled", False) == (name == image_labels) for r in records)
        remapped = [vocabulary[a["category_id"]] for r in records for a in r["annotations"]]
        assert remapped == [classes[a["category_id"]] for r in original for a in r["annotations"]]
    counts = class_image_counts([r for _, d in datasets for r in d], len(vocabulary))
    assert sum(counts[8:]) > 0  # the novel classes are seen, through image labels


def test_remapping_copies_the_catalogs_records_and_compares_normalised_names():
    cached = [{"file_name": "x.png", "height": 4, "width": 4, "image_id": 1,
               "annotations": [{"bbox": [0, 0, 2, 2], "bbox_mode": 1, "category_id": 0}]}]
    DatasetCatalog.register("sst_boxes", lambda: [{"file_name": "y.png", "annotations": []}],
                            lambda: Metadata(name="sst_boxes", thing_classes=["Tomato", "egg"]))
    DatasetCatalog.register("sst_cached", lambda: cached,
                            lambda: Metadata(name="sst_cached", thing_classes=["zebra", "tomato"]))
    names = ["sst_boxes", "sst_cached"]
    assert training_vocabulary(names, ["sst_cached"]) == ["Tomato", "egg", "zebra"]
    (_, boxes), (_, labelled) = training_records(names, ["sst_cached"])
    assert labelled[0]["annotations"][0]["category_id"] == 2 and labelled[0]["image_labelled"]
    assert cached[0]["annotations"][0]["category_id"] == 0 and "image_labelled" not in cached[0]
    assert "image_labelled" not in boxes[0]


def test_disagreeing_classes_without_image_labels_are_still_refused(tiny_world, image_labels):
    with pytest.raises(ConfigError, match="training datasets disagree on their classes: "
                                          f"tiny_train has .*, {image_labels} has"):
        training_vocabulary(["tiny_train", image_labels])


@pytest.mark.parametrize("marked, message", [
    (["tiny_val"], r"IMAGE_LABELLED names \['tiny_val'\], which are not in DATASETS.TRAIN"),
    ([IMAGE_LABELS, "tiny_train"], "at least one box-labelled dataset"),
])
def test_bad_image_labelled_names_are_config_errors(tiny_world, image_labels, marked, message):
    with pytest.raises(ConfigError, match=message):
        training_vocabulary(["tiny_train", image_labels], marked)


def load_train_net():
    path = Path(__file__).parents[1] / "tools" / "train_net.py"
    spec = importlib.util.spec_from_file_location("tool_train_net_sst", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_net_checks_ratios_and_returns_base_names(tiny_world, image_labels, tiny_cfg):
    tiny_cfg.merge_from_list(["DATASETS.TRAIN", f"('tiny_train', '{image_labels}')",
                              "DATASETS.IMAGE_LABELLED", f"('{image_labels}',)",
                              "DATASETS.TEST", "()", "DATALOADER.DATASET_RATIOS", "(1, 1)"])
    tool = load_train_net()
    vocabulary, base, stuff = tool.check_datasets(tiny_cfg, eval_only=False)
    assert len(vocabulary) == 12 and base == vocabulary[:8] and stuff == []
    tiny_cfg.merge_from_list(["DATALOADER.DATASET_RATIOS", "(1, 1, 1)"])
    with pytest.raises(ConfigError, match=r"DATALOADER.DATASET_RATIOS \(1, 1, 1\) needs one ratio"):
        tool.check_datasets(tiny_cfg, eval_only=False)


def test_training_mixes_flags_and_counts_remapped_classes(tiny_world, image_labels, tiny_cfg,
                                                          tmp_path, monkeypatch):
    names = ["tiny_train", image_labels]
    tiny_cfg.merge_from_list(["DATASETS.TRAIN", str(tuple(names)), "DATASETS.IMAGE_LABELLED",
                              f"('{image_labels}',)", "DATALOADER.DATASET_RATIOS", "(1, 1)",
                              "SOLVER.MAX_ITER", "2", "SOLVER.CHECKPOINT_PERIOD", "100",
                              "OUTPUT_DIR", str(tmp_path)])
    torch.manual_seed(0)
    model = build_model(tiny_cfg)
    model.set_training_vocabulary(training_vocabulary(names, [image_labels]))
    model.set_base_names(training_base_names(names, [image_labels]))
    flags, heads_forward = [], model.roi_heads.forward

    def spy(*args, targets=None, **kwargs):
        flags.append([bool(t["image_labelled"]) for t in targets])
        return heads_forward(*args, targets=targets, **kwargs)

    monkeypatch.setattr(model.roi_heads, "forward", spy)
    Trainer(tiny_cfg, model, 3).train()
    assert flags == [[False, True], [False, True]]  # one image of each dataset per batch
    records = [r for _, d in training_records(names, [image_labels]) for r in d]
    assert model.vocabulary.image_counts.tolist() == class_image_counts(records, 12)
    assert model.novel_mask.tolist() == [False] * 8 + [True] * 4


def test_training_refuses_a_model_not_on_the_union(tiny_world, image_labels, tiny_cfg, tmp_path):
    tiny_cfg.merge_from_list(["DATASETS.TRAIN", f"('tiny_train', '{image_labels}')",
                              "DATASETS.IMAGE_LABELLED", f"('{image_labels}',)",
                              "OUTPUT_DIR", str(tmp_path)])
    model = build_model(tiny_cfg)
    model.set_training_vocabulary(DatasetCatalog.metadata("tiny_train").thing_classes)
    with pytest.raises(ConfigError, match="must be trained on the union"):
        Trainer(tiny_cfg, model, 3).train()


# ---- mapper ---------------------------------------------------------------------------------
def test_mapper_emits_the_image_labelled_flag(tiny_world):
    cfg = get_cfg()
    cfg.merge_from_list(["INPUT.MIN_SIZE", "32", "INPUT.MAX_SIZE", "48"])
    mapper = DatasetMapper(cfg, True)
    record = next(r for r in DatasetCatalog.get("tiny_train") if r["annotations"])
    box_labelled = mapper(record)["instances"]
    assert box_labelled["image_labelled"].shape == () and not box_labelled["image_labelled"]
    assert box_labelled["masks"].any()
    instances = mapper({**record, "image_labelled": True})["instances"]
    assert instances["image_labelled"].dtype == torch.bool and instances["image_labelled"]
    count = len(instances["boxes"])
    assert count > 0 and instances["masks"].shape == (count, 32, 32)
    assert not instances["masks"].any()  # no mask target for pseudo boxes


# ---- positive-only RoI losses ---------------------------------------------------------------
PSEUDO_BOX = [4.0, 4.0, 20.0, 20.0]
UNLABELLED = [40.0, 40.0, 60.0, 60.0]  # an object no image label named: far from the pseudo box


def run_heads(image_labelled: bool):
    """One 64 x 64 image, a pseudo box of class 1 and one proposal on an unlabelled region; the
    features are (1, 4, 64, 64) at stride 1, so RoI align of a box reads only its own pixels."""
    torch.manual_seed(0)
    heads = OpenVocabROIHeads(
        in_channels=4, featmap_names=("p2",), embed_dim=8, hidden_dim=16,
        batch_size_per_image=16, mask_head=MaskRCNNConvUpsampleHead(in_channels=4, conv_dim=4,
                                                                    num_conv=1))
    heads.train()
    features = {"p2": torch.randn(1, 4, 64, 64, requires_grad=True)}
    masks = torch.zeros(1, 64, 64, dtype=torch.bool)
    masks[0, 4:20, 4:20] = True
    target = {"boxes": torch.tensor([PSEUDO_BOX]), "classes": torch.tensor([1]), "masks": masks,
              "image_labelled": torch.tensor(image_labelled)}
    results, losses = heads(features, [torch.tensor([UNLABELLED])], [(64, 64)],
                            torch.nn.functional.normalize(torch.randn(3, 8), dim=-1),
                            targets=[target])
    sum(losses.values()).backward()
    return results[0], losses, features["p2"].grad


def test_positive_only_losses_give_no_gradient_towards_background():
    results, losses, grad = run_heads(image_labelled=True)
    assert results["labels"].tolist() == [1]  # the pseudo box only: no background sample (3)
    assert results["boxes"].tolist() == [PSEUDO_BOX]
    unlabelled_region = grad[..., 30:, 30:]  # read by the unlabelled proposal alone
    assert torch.equal(unlabelled_region, torch.zeros_like(unlabelled_region))
    assert grad[..., 4:20, 4:20].abs().sum() > 0 and losses["loss_cls"] > 0
    assert losses["loss_mask"] == 0  # a pseudo box has no mask target
    # the same image, box-labelled: the unlabelled proposal is sampled as background
    results, losses, grad = run_heads(image_labelled=False)
    assert sorted(results["labels"].tolist()) == [1, 3]
    assert grad[..., 30:, 30:].abs().sum() > 0 and losses["loss_mask"] > 0


def test_a_batch_of_image_labelled_images_without_boxes_has_finite_zero_losses():
    torch.manual_seed(0)
    heads = OpenVocabROIHeads(in_channels=4, featmap_names=("p2",), embed_dim=8, hidden_dim=16)
    heads.train()
    target = {"boxes": torch.zeros(0, 4), "classes": torch.zeros(0, dtype=torch.int64),
              "image_labelled": torch.tensor(True)}
    results, losses = heads({"p2": torch.randn(1, 4, 64, 64)}, [torch.tensor([UNLABELLED])],
                            [(64, 64)], torch.randn(3, 8), targets=[target])
    assert len(results[0]["labels"]) == 0
    assert all(torch.isfinite(v) and v == 0 for v in losses.values())
