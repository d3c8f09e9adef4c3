"""Novel-aware fine-tuning: caption pseudo boxes of unlabelled objects attached to human-labelled
images, and what the RPN, the RoI heads and the distillation criterion make of them."""
import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ovdet.config import ConfigError
from test_train_net import train
from ovdet.data.catalog import BoxMode, DatasetError
from ovdet.data.unlabelled import attach_pseudo_boxes
from ovdet.modeling.roi_heads.distillation import TeacherDistillation, kl_divergence
from ovdet.modeling.roi_heads.open_vocab_heads import OpenVocabROIHeads
from ovdet.modeling.unlabelled import unlabelled_matches

HUMAN_BOX = [4.0, 4.0, 20.0, 20.0]
PSEUDO_BOX = [40.0, 40.0, 60.0, 60.0]  # an unlabelled object, far from the human box


def test_unlabelled_matches_by_hand():
    regions = torch.tensor([[40.0, 40, 60, 60],    # on the pseudo box: IoU 1
                            [40.0, 40, 60, 50],    # IoU 0.5 with it: at the threshold
                            [40.0, 40, 60, 49],    # IoU 0.45: below
                            [4.0, 4, 20, 20],      # on the human box
                            [0.0, 0, 24, 24]])     # IoU 0.44 with the human box, 0 with the pseudo
    labelled = torch.tensor([HUMAN_BOX])
    unlabelled = torch.tensor([[0.0, 0, 1, 1], PSEUDO_BOX])
    assert unlabelled_matches(regions, labelled, unlabelled, 0.5).tolist() == [1, 1, -1, -1, -1]
    # a tie between a human and a pseudo box goes to the human box
    assert unlabelled_matches(torch.tensor([PSEUDO_BOX]), torch.tensor([PSEUDO_BOX]),
                              torch.tensor([PSEUDO_BOX]), 0.5).tolist() == [-1]
    assert unlabelled_matches(regions, labelled, torch.zeros(0, 4), 0.5).tolist() == [-1] * 5
    assert unlabelled_matches(regions, torch.zeros(0, 4), unlabelled, 0.5).tolist() == \
        [1, 1, -1, -1, -1]


# ---- data ----------------------------------------------------------------------------------
def _record(image_id, file_name, annotations):
    return {"file_name": file_name, "height": 64, "width": 64, "image_id": image_id,
            "annotations": [{"bbox": list(box), "bbox_mode": BoxMode.XYWH_ABS, "category_id": c,
                             "iscrowd": 0, **extra} for box, c, extra in annotations]}


def test_pseudo_boxes_of_unlabelled_categories_are_attached():
    human = [_record(1, "a/1.png", [((4, 4, 16, 16), 0, {})]),
             _record(2, "a/2.png", []),
             _record(3, "a/3.png", [((0, 0, 8, 8), 1, {})])]
    pseudo = [_record(1, "a/1.png", [((5, 5, 15, 15), 0, {"pseudo_score": 0.9}),   # labelled
                                     ((40, 40, 20, 20), 2, {"pseudo_score": 0.7}),
                                     ((30, 0, 8, 8), 2, {"pseudo_score": 0.4, "iscrowd": 1})]),
              _record(2, "a/2.png", [((1, 2, 3, 4), 1, {})])]  # no score: 1.0
    before = copy.deepcopy(human)
    # human classes (a, b) -> vocabulary (a, b, c) = ids 0, 1; pseudo (a, b, c) -> 0, 1, 2
    out = attach_pseudo_boxes(human, "human", [0, 1], [("pseudo", pseudo, [0, 1, 2])])
    assert human == before  # copies: the catalog's records never change
    assert [a["category_id"] for a in out[0]["annotations"]] == [0]
    assert out[0]["pseudo_annotations"] == [{"bbox": [40, 40, 20, 20],
                                             "bbox_mode": BoxMode.XYWH_ABS, "category_id": 2,
                                             "pseudo_score": 0.7}]
    assert out[1]["pseudo_annotations"][0]["pseudo_score"] == 1.0
    assert out[2]["pseudo_annotations"] == []  # no pseudo record for image 3
    bad = [_record(1, "a/1.png", [((40, 40, 20, 20), 2, {"pseudo_score": 1.5})])]
    with pytest.raises(DatasetError, match="pseudo_score 1.5"):
        attach_pseudo_boxes(human, "human", [0, 1], [("pseudo", bad, [0, 1, 2])])
    with pytest.raises(DatasetError, match="share no image id"):
        attach_pseudo_boxes(human, "human", [0, 1], [("pseudo", [_record(9, "9.png", [])],
                                                      [0, 1, 2])])
    with pytest.raises(DatasetError, match="3.png"):
        attach_pseudo_boxes(human, "human", [0, 1], [("pseudo", [_record(1, "a/3.png", [])],
                                                      [0, 1, 2])])
    # the same file name under another root is another image (e.g. val's 1.png)
    with pytest.raises(DatasetError, match="same image root"):
        attach_pseudo_boxes(human, "human", [0, 1], [("pseudo", [_record(1, "val/1.png", [])],
                                                      [0, 1, 2])])


def test_the_mapper_flips_pseudo_boxes_with_the_image(tmp_path):
    from PIL import Image

    from ovdet.data.mapper import DatasetMapper

    Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8)).save(tmp_path / "1.png")
    record = _record(1, str(tmp_path / "1.png"), [((4, 4, 16, 16), 0, {})])
    record["pseudo_annotations"] = [{"bbox": [40, 10, 20, 30], "bbox_mode": BoxMode.XYWH_ABS,
                                     "category_id": 2, "pseudo_score": 0.5}]
    mapper = DatasetMapper(is_train=True, min_size=64, max_size=64, flip=1.0, with_masks=False)
    instances = mapper(record)["instances"]
    assert instances["boxes"].tolist() == [[44.0, 4.0, 60.0, 20.0]]
    assert instances["pseudo_boxes"].tolist() == [[4.0, 10.0, 24.0, 40.0]]
    assert instances["pseudo_classes"].tolist() == [2]
    assert instances["pseudo_scores"].tolist() == [0.5]
    del record["pseudo_annotations"]
    assert "pseudo_boxes" not in mapper(record)["instances"]


@pytest.fixture(scope="module")
def tiny_pseudo(tiny_world):
    """``tiny_train_pseudo``: the tiny world's train boxes of every class (novel ones too) as
    caption pseudo boxes, scored 0.8."""
    import json

    from ovdet.data import register_coco_instances

    data = json.loads((tiny_world / "annotations/instances_train.json").read_text())
    for annotation in data["annotations"]:
        annotation["pseudo_score"] = 0.8
        annotation.pop("segmentation", None)
    path = tiny_world / "annotations/pseudo_train.json"
    path.write_text(json.dumps(data))
    register_coco_instances("tiny_train_pseudo", str(path), str(tiny_world / "train"))
    return "tiny_train_pseudo"


def test_pseudo_box_classes_join_the_vocabulary_and_stay_novel(tiny_pseudo):
    from ovdet.data.catalog import DatasetCatalog
    from ovdet.engine.trainer import training_base_names, training_records, training_vocabulary

    base = DatasetCatalog.metadata("tiny_train").thing_classes
    every = DatasetCatalog.metadata(tiny_pseudo).thing_classes
    vocabulary = training_vocabulary(["tiny_train"], (), [tiny_pseudo])
    assert vocabulary == base + [n for n in every if n not in base]
    assert training_base_names(["tiny_train"], (), [tiny_pseudo]) == base
    (name, records), = training_records(["tiny_train"], (), [tiny_pseudo])
    novel = {vocabulary.index(n) for n in every if n not in base}
    attached = [a for r in records for a in r["pseudo_annotations"]]
    assert attached and {a["category_id"] for a in attached} <= novel  # base ones have humans
    with pytest.raises(ConfigError, match="human boxes"):
        training_vocabulary([tiny_pseudo], (), [tiny_pseudo])


@pytest.mark.parametrize("options", [
    ["MODEL.ROI_HEADS.UNLABELLED", "ignore"], ["MODEL.RPN.UNLABELLED", "positive"],
    ["MODEL.CRITERIA", "('TeacherDistillation',)"]])
def test_switches_that_need_pseudo_boxes_refuse_to_train_without(options, config_file, tiny_world,
                                                                  tmp_path, capsys):
    with pytest.raises(SystemExit, match="DATASETS.PSEUDO_BOXES is empty"):
        train(config_file, tmp_path, *options)
    assert not (tmp_path / "metrics.json").exists()


def test_a_missing_teacher_is_one_error_line_before_training(tiny_pseudo, config_file, tmp_path):
    with pytest.raises(SystemExit, match="teacher's checkpoint .* not a file: .*absent.pth"):
        train(config_file, tmp_path, "MODEL.CRITERIA", "('TeacherDistillation',)",
              "DATASETS.PSEUDO_BOXES", f"('{tiny_pseudo}',)",
              "MODEL.DISTILLATION.WEIGHTS", str(tmp_path / "absent.pth"))
    assert not (tmp_path / "metrics.json").exists()


# ---- RPN -------------------------------------------------------------------------------------
def _rpn_labels(mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    from ovdet.modeling.proposal.rpn import RPN

    rpn = RPN(in_channels=4, anchor_sizes=(16,), aspect_ratios=(1.0,), unlabelled=mode)
    anchors = torch.tensor([HUMAN_BOX, PSEUDO_BOX, [40.0, 40, 60, 48], [0.0, 40, 16, 56]])
    target = {"boxes": torch.tensor([HUMAN_BOX]), "pseudo_boxes": torch.tensor([PSEUDO_BOX])}
    labels, matched = rpn.assign_targets_to_anchors([anchors], [target])
    return labels[0], matched[0]


def test_rpn_ignores_or_adds_anchors_over_pseudo_boxes():
    # anchor 2 has IoU 0.4 with the pseudo box: background, and not over it at IoU 0.5
    assert _rpn_labels("background")[0].tolist() == [1, 0, 0, 0]
    assert _rpn_labels("ignore")[0].tolist() == [1, -1, 0, 0]
    labels, matched = _rpn_labels("positive")
    assert labels.tolist() == [1, 1, -1, 0]  # 0.4 lies between the RPN's thresholds (0.3, 0.7)
    assert matched[1].tolist() == PSEUDO_BOX


# ---- RoI heads -------------------------------------------------------------------------------
def run_heads(mode: str, soft_weight: float = 1.0, proposals=(PSEUDO_BOX,), loss="loss_cls",
              **options):
    """One 64 x 64 image with a human box of class 0 and a pseudo box of class 2 (score 0.6);
    the features are (1, 4, 64, 64) at stride 1, so RoI align of a box reads only its own pixels.
    Returns the first image's results, the losses and the features' gradient of ``loss``."""
    torch.manual_seed(0)
    heads = OpenVocabROIHeads(in_channels=4, featmap_names=("p2",), embed_dim=8, hidden_dim=16,
                              batch_size_per_image=16, unlabelled=mode, soft_weight=soft_weight,
                              **options)
    heads.train()
    features = {"p2": torch.randn(1, 4, 64, 64, requires_grad=True)}
    target = {"boxes": torch.tensor([HUMAN_BOX]), "classes": torch.tensor([0]),
              "pseudo_boxes": torch.tensor([PSEUDO_BOX]), "pseudo_classes": torch.tensor([2]),
              "pseudo_scores": torch.tensor([0.6])}
    results, losses = heads(features, [torch.tensor(list(proposals))], [(64, 64)],
                            F.normalize(torch.randn(3, 8), dim=-1), targets=[target])
    losses[loss].backward()
    return results[0], losses, features["p2"].grad


def test_a_proposal_over_an_unlabelled_pseudo_box_gets_no_background_gradient_under_ignore():
    results, losses, grad = run_heads("ignore")
    # the human box (appended to the proposals) is the positive; the proposal over the pseudo box
    # stays in the results, as background with weight 0, marked unlabelled, for criteria
    assert results["labels"].tolist() == [0, 3]
    assert results["weights"].tolist() == [1.0, 0.0]
    assert results["unlabelled"].tolist() == [False, True]
    over_pseudo = grad[..., 40:, 40:]  # read by the proposal over the pseudo box alone
    assert torch.equal(over_pseudo, torch.zeros_like(over_pseudo))
    assert grad[..., 4:20, 4:20].abs().sum() > 0
    expected = F.cross_entropy(results["logits"][:1], results["labels"][:1])
    assert torch.allclose(losses["loss_cls"], expected)
    # PB-OVD's fine-tuning ("background"): the same proposal is sampled as background
    results, _, grad = run_heads("background")
    assert sorted(results["labels"].tolist()) == [0, 3] and results["weights"].tolist() == [1, 1]
    assert grad[..., 40:, 40:].abs().sum() > 0


def _by_hand(results) -> torch.Tensor:
    """sum_r w_r * CE_r / #{w_r > 0}, CE from an explicit log-softmax."""
    log_p = results["logits"] - results["logits"].exp().sum(1, keepdim=True).log()
    ce = -log_p[torch.arange(len(log_p)), results["labels"]]
    weights = results["weights"]
    return (weights * ce).sum() / (weights > 0).sum()


def test_soft_positives_are_weighted_by_pseudo_score():
    results, losses, _ = run_heads("soft", soft_weight=0.5)
    pseudo_rows = results["labels"] == 2  # the pseudo box (appended) and the proposal on it
    assert pseudo_rows.sum() == 2 and (results["unlabelled"] == pseudo_rows).all()
    assert torch.allclose(results["weights"][pseudo_rows], torch.tensor([0.3, 0.3]))
    assert (results["weights"][~pseudo_rows] == 1).all()
    assert torch.allclose(losses["loss_cls"], _by_hand(results))
    # doubling the soft weight doubles the pseudo rows' share of the loss and nothing else
    full, losses_full, _ = run_heads("soft", soft_weight=1.0)
    ce = F.cross_entropy(full["logits"], full["labels"], reduction="none")
    human = ce[~pseudo_rows].sum() / len(ce)
    pseudo = ce[pseudo_rows].sum() / len(ce)
    assert torch.allclose(losses["loss_cls"], human + 0.3 * pseudo, atol=1e-6)
    assert torch.allclose(losses_full["loss_cls"], human + 0.6 * pseudo, atol=1e-6)
    # box regression is weighted the same way
    assert losses["loss_box_reg"] < losses_full["loss_box_reg"]


def test_soft_weights_scale_the_federated_sigmoid_loss_too():
    results, losses, _ = run_heads("soft", soft_weight=0.5, loss_type="federated_sigmoid")
    logits, labels, weights = results["logits"], results["labels"], results["weights"]
    # by hand: every class is used (3 <= fed_num_classes); background is "no class is 1"
    bias = logits[:, :3] - logits[:, 3:]
    targets = F.one_hot(labels, 4)[:, :3].float()
    bce = -(targets * F.logsigmoid(bias) + (1 - targets) * F.logsigmoid(-bias))
    assert (weights < 1).any()
    expected = (weights[:, None] * bce).sum() / (weights > 0).sum()
    assert torch.allclose(losses["loss_cls"], expected, atol=1e-6)


def test_soft_positives_can_leave_box_regression_to_human_boxes():
    _, losses, _ = run_heads("soft", soft_box_regression=False, loss="loss_box_reg")
    _, losses_with, grad_with = run_heads("soft", loss="loss_box_reg")
    assert torch.allclose(losses["loss_cls"], losses_with["loss_cls"])  # classification as before
    assert 0 < losses["loss_box_reg"] < losses_with["loss_box_reg"]
    _, _, grad = run_heads("soft", soft_box_regression=False, loss="loss_box_reg")
    over_pseudo = grad[..., 40:, 40:]  # read by the pseudo box and the proposal on it alone
    assert torch.equal(over_pseudo, torch.zeros_like(over_pseudo))
    assert grad_with[..., 40:, 40:].abs().sum() > 0 and grad[..., 4:20, 4:20].abs().sum() > 0


def test_unlabelled_options_are_checked():
    with pytest.raises(ValueError, match="MODEL.ROI_HEADS.UNLABELLED"):
        OpenVocabROIHeads(in_channels=4, featmap_names=("p2",), embed_dim=8, unlabelled="drop")
    with pytest.raises(ValueError, match="SOFT_WEIGHT"):
        OpenVocabROIHeads(in_channels=4, featmap_names=("p2",), embed_dim=8, soft_weight=1.5)


# ---- distillation ----------------------------------------------------------------------------
def _batch():
    torch.manual_seed(1)
    masks = torch.zeros(1, 64, 64, dtype=torch.bool)
    masks[0, 4:20, 4:20] = True
    return [{"image": torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8), "height": 64,
             "width": 64, "instances": {
                 "boxes": torch.tensor([HUMAN_BOX]), "classes": torch.tensor([0]),
                 "masks": masks, "image_labelled": torch.tensor(False),
                 "pseudo_boxes": torch.tensor([PSEUDO_BOX]), "pseudo_classes": torch.tensor([1]),
                 "pseudo_scores": torch.tensor([0.9])}}]


def _distillation_loss(model, teacher, regions="all"):
    model.criteria["TeacherDistillation"] = TeacherDistillation(teacher=teacher, regions=regions)
    model.train()
    torch.manual_seed(2)
    return model(_batch())


def test_distillation_is_zero_when_the_model_equals_its_frozen_copy(model):
    losses = _distillation_loss(model, copy.deepcopy(model))
    assert abs(losses["loss_distill"].item()) < 1e-6


def test_distillation_pulls_the_student_only_toward_a_different_teacher(model):
    teacher = copy.deepcopy(model)
    with torch.no_grad():
        teacher.roi_heads.classifier.background.add_(1.0)
    losses = _distillation_loss(model, teacher)
    assert losses["loss_distill"] > 1e-3
    losses["loss_distill"].backward()
    assert model.roi_heads.classifier.background.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())
    criterion = model.criteria["TeacherDistillation"]
    # the teacher is not saved with the detector, nor trained
    assert not any(k.startswith("criteria.") for k in model.state_dict())
    assert list(criterion.parameters()) == []


def test_kl_divergence_by_hand():
    teacher = torch.tensor([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    logits = torch.tensor([[0.0, 1.0, 2.0], [1.0, 1.0, 1.0]])
    student = logits.softmax(1)
    row0 = 0.5 * np.log(0.5 / student[0, 0].item()) + 0.5 * np.log(0.5 / student[0, 1].item())
    row1 = sum(t * np.log(t / (1 / 3)) for t in (0.2, 0.3, 0.5))
    assert kl_divergence(teacher, logits).item() == pytest.approx((row0 + row1) / 2, rel=1e-5)
    assert kl_divergence(teacher[:0], logits[:0]).item() == 0


def test_the_teacher_is_loaded_from_the_weights_when_first_needed(tiny_cfg, model, tmp_path):
    from ovdet.engine.checkpoint import DetectorCheckpointer
    from ovdet.modeling.registry import build_model

    DetectorCheckpointer(model, str(tmp_path)).save("teacher")
    tiny_cfg.merge_from_list(["MODEL.CRITERIA", "('TeacherDistillation',)",
                              "MODEL.WEIGHTS", str(tmp_path / "teacher.pth")])
    criterion = build_model(tiny_cfg).criteria["TeacherDistillation"]
    state = torch.get_rng_state()
    teacher = criterion.teacher
    assert torch.equal(torch.get_rng_state(), state)  # a resumed run draws as a whole one
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, model.state_dict()[key]), key
    tiny_cfg.merge_from_list(["MODEL.DISTILLATION.WEIGHTS", str(tmp_path / "absent.pth")])
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        build_model(tiny_cfg).criteria["TeacherDistillation"].teacher


def test_distillation_options_are_checked(tiny_cfg):
    from ovdet.modeling.registry import build_model

    tiny_cfg.merge_from_list(["MODEL.CRITERIA", "('TeacherDistillation',)"])
    with pytest.raises(ConfigError, match="MODEL.WEIGHTS"):  # only when the teacher is needed
        build_model(tiny_cfg).criteria["TeacherDistillation"].teacher
    tiny_cfg.merge_from_list(["MODEL.WEIGHTS", "x.pth", "MODEL.DISTILLATION.REGIONS", "some"])
    with pytest.raises(ConfigError, match="REGIONS"):
        build_model(tiny_cfg)
    tiny_cfg.merge_from_list(["MODEL.DISTILLATION.REGIONS", "all",
                              "MODEL.ROI_HEADS.LOSS", "federated_sigmoid"])
    with pytest.raises(ConfigError, match="softmax"):
        build_model(tiny_cfg)


def test_distillation_without_selected_regions_is_zero_with_a_gradient_path(model):
    batch = _batch()
    del batch[0]["instances"]["pseudo_boxes"]  # no unlabelled region at all
    model.criteria["TeacherDistillation"] = TeacherDistillation(teacher=copy.deepcopy(model))
    model.train()
    losses = model(batch)
    assert losses["loss_distill"].item() == 0 and losses["loss_distill"].requires_grad


# ---- the recipe configs ----------------------------------------------------------------------
RECIPES = sorted((Path(__file__).parents[1] / "configs" / "toyworld").glob("pbovd_keep*.yaml"))
TINY_NAMES = {"toyworld_train": "tiny_train", "toyworld_train_pseudo": "tiny_train_pseudo",
              "toyworld_val": "tiny_val"}


@pytest.fixture(scope="module")
def tiny_pretrained(tiny_pseudo, config_file, tmp_path_factory):
    """A tiny detector pretrained on the tiny pseudo boxes (a few iterations)."""
    output = tmp_path_factory.mktemp("pretrain")
    train(config_file, output, "DATASETS.TRAIN", f"('{tiny_pseudo}',)", "MODEL.MASK_ON", "False")
    return output / "model_final.pth"


def test_there_are_recipes():
    assert {p.stem for p in RECIPES} >= {"pbovd_keep", "pbovd_keep_ignore", "pbovd_keep_soft",
                                         "pbovd_keep_distill", "pbovd_keep_mix"}


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_configs_load_and_run(recipe, tiny_pretrained, tmp_path):
    import json

    from ovdet.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(str(recipe))
    assert cfg.DATASETS.PSEUDO_BOXES == ("toyworld_train_pseudo",)
    datasets = []
    for key in ("TRAIN", "TEST", "PSEUDO_BOXES"):
        names = ", ".join(f"'{TINY_NAMES[n]}'" for n in cfg.DATASETS[key])
        datasets += [f"DATASETS.{key}", f"({names},)"]
    train(str(recipe), tmp_path, *datasets, "MODEL.WEIGHTS", str(tiny_pretrained))
    lines = [json.loads(line) for line in (tmp_path / "metrics.json").read_text().splitlines()]
    assert "TeacherDistillation" not in cfg.MODEL.CRITERIA or "loss_distill" in lines[-1]
    assert all(np.isfinite(line["total_loss"]) for line in lines)
    run = get_cfg()
    run.merge_from_file(str(tmp_path / "config.yaml"))
    assert (run.MODEL.ROI_HEADS.UNLABELLED, run.MODEL.RPN.UNLABELLED, run.MODEL.CRITERIA) == \
        (cfg.MODEL.ROI_HEADS.UNLABELLED, cfg.MODEL.RPN.UNLABELLED, cfg.MODEL.CRITERIA)
    metrics = json.loads((tmp_path / "eval_metrics.json").read_text())
    assert "AP50_novel" in metrics["tiny_val"]["bbox"]
