"""The detector's seams: registration without side effects, each registry's contract (a fake
component registered by name is built from the config and runs through the meta-architecture),
the vocabulary module, loss weights, ``configurable`` overrides, the federated loss's frequency
weights, and the scorer's equivalence with the detector before the refactor."""
import subprocess
import sys
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from conftest import NAMES, REFERENCE, reference_model
from test_detector import inference_batch, synthetic_batch

from ovdet.config import ConfigError
from ovdet.engine.checkpoint import DetectorCheckpointer
from ovdet.modeling import contracts
from ovdet.modeling.registry import (BACKBONE_REGISTRY, CRITERION_REGISTRY,
                                     EMBEDDING_SOURCE_REGISTRY, PROPOSAL_GENERATOR_REGISTRY,
                                     ROI_HEADS_REGISTRY, ROI_MASK_HEAD_REGISTRY, SCORER_REGISTRY,
                                     build_model)
from ovdet.modeling.scoring import CLIPEnsembleScorer
from ovdet.modeling.vocabulary import TemplateEmbeddings, normalize_class_name, prompt_name


def test_get_cfg_imports_no_model_code_and_importing_modeling_registers_everything():
    """In a fresh process: get_cfg() loads neither torch nor a component module; then importing
    ovdet.modeling is enough for every registry to hold ovdet's components."""
    code = """
import sys
from ovdet.config import get_cfg
get_cfg()
print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'open_clip')
             or (m.startswith('ovdet.modeling.') and not m.endswith(('.config', '.registry'))
                 and m.count('.') > 2)))
import ovdet.modeling as m
print([r.names() for r in (m.META_ARCH_REGISTRY, m.BACKBONE_REGISTRY,
       m.PROPOSAL_GENERATOR_REGISTRY, m.ROI_HEADS_REGISTRY, m.ROI_MASK_HEAD_REGISTRY,
       m.EMBEDDING_SOURCE_REGISTRY, m.SCORER_REGISTRY, m.PANOPTIC_HEAD_REGISTRY)])
"""
    loaded, names = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                   check=True).stdout.split("\n")[:2]
    assert loaded == "[]"
    assert names == str([["OpenVocabRCNN"], ["CLIPViTSimpleFPN"], ["RPN"], ["OpenVocabROIHeads"],
                         ["MaskRCNNConvUpsampleHead"], ["RegionPromptEmbeddings", "TemplateEmbeddings"],
                         ["CLIPEnsembleScorer", "MaskEnsembleScorer"],
                         ["MaskCLIPPanopticHead"]])


def test_built_components_keep_their_contracts(tiny_cfg):
    model = build_model(tiny_cfg)
    assert isinstance(model.backbone, contracts.Backbone)
    assert isinstance(model.proposal_generator, contracts.ProposalGenerator)
    assert isinstance(model.roi_heads, contracts.ROIHeads)
    assert isinstance(model.roi_heads.mask_head, contracts.MaskHead)
    assert isinstance(model.vocabulary.source, contracts.EmbeddingSource)
    assert isinstance(model.scorer, contracts.Scorer)
    assert list(model.backbone.output_shape()) == ["p2", "p3", "p4", "p5"]
    assert [s.stride for s in model.backbone.output_shape().values()] == [4, 8, 16, 32]


# ---- fake components, registered by name --------------------------------------------------
@BACKBONE_REGISTRY.register()
class SingleMapBackbone(nn.Module):
    """The trunk's patch grid as one map named "res" (stride = patch size), 1x1-projected."""

    size_divisibility = 8

    def __init__(self, cfg, clip):
        super().__init__()
        from ovdet.clip import CLIPViTTrunk

        self.trunk = CLIPViTTrunk(clip.model.visual, cfg.MODEL.CLIP.KEEP_LAST_BLOCKS)
        self.trunk.requires_grad_(False)
        self.projection = nn.Conv2d(self.trunk.width, cfg.MODEL.BACKBONE.OUT_CHANNELS, 1)

    def output_shape(self):
        return {"res": contracts.ShapeSpec(self.projection.out_channels, self.trunk.patch_size)}

    def forward(self, images):
        with torch.no_grad():
            output = self.trunk(images)
        return output, OrderedDict(res=self.projection(output.patch_grid()))


@PROPOSAL_GENERATOR_REGISTRY.register()
class GridProposals(nn.Module):
    """Every 16x16 and 32x32 window on an 8-px grid, objectness 0.5, and no parameters."""

    def __init__(self, cfg, input_shape):
        super().__init__()
        self.input_shape = input_shape

    def propose_with_scores(self, images, features):
        height, width = images.tensors.shape[-2:]
        boxes = [torch.tensor([x, y, x + s, y + s], dtype=torch.float32)
                 for s in (16, 32) for y in range(0, height - s + 1, 8)
                 for x in range(0, width - s + 1, 8)]
        grid = torch.stack(boxes)
        return [grid.clone() for _ in images.image_sizes], [torch.full((len(grid),), 0.5)
                                                           for _ in images.image_sizes]

    def forward(self, images, features, targets=None):
        return self.propose_with_scores(images, features)[0], {}


@ROI_MASK_HEAD_REGISTRY.register()
class OneConvMaskHead(nn.Module):
    def __init__(self, cfg, in_channels):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 1, 3, padding=1)

    def forward(self, features):
        return F.interpolate(self.conv(features), scale_factor=2)


@SCORER_REGISTRY.register()
class SquaredHeadScorer:
    """The head's probabilities, squared (a scoring that is easy to check)."""

    def __init__(self, cfg):
        pass

    def __call__(self, inputs):
        return inputs.boxes, [p ** 2 for p in inputs.probabilities]


@CRITERION_REGISTRY.register()
class RegionSpreadLoss(nn.Module):
    """Mean cosine similarity between the sampled regions' embeddings (a region-region term)."""

    def __init__(self, cfg):
        super().__init__()

    def forward(self, roi_results, class_embeddings, targets):
        embeddings = torch.cat([r["region_embeddings"] for r in roi_results])
        assert embeddings.shape[1] == class_embeddings.shape[1]
        assert len(embeddings) == sum(len(r["labels"]) for r in roi_results)
        return {"loss_region_spread": (embeddings @ embeddings.T).mean()}


@EMBEDDING_SOURCE_REGISTRY.register()
class ShiftedTemplates(nn.Module):
    """Template embeddings plus one learnable vector: a stand-in for learned prompts."""

    cacheable = False

    def __init__(self, cfg, clip):
        super().__init__()
        self.templates = TemplateEmbeddings(cfg, clip)
        self.shift = nn.Parameter(torch.zeros(clip.model.text_projection.shape[1]))

    def forward(self, names):
        return F.normalize(self.templates(names) + self.shift, dim=-1)


@ROI_HEADS_REGISTRY.register()
class MeanPoolHeads(nn.Module):
    """A minimal third-party RoI head written to the registry's docstring alone: mean-pooled
    RoI features, a linear map into CLIP's space, cosine logits; no masks."""

    mask_on = False

    def __init__(self, cfg, input_shape, embed_dim):
        super().__init__()
        from torchvision.ops import MultiScaleRoIAlign

        channels = next(iter(input_shape.values())).channels
        self.pooler = MultiScaleRoIAlign(list(input_shape), 4, 2)
        self.embed = nn.Linear(channels, embed_dim)
        self.seen_counts = []

    def forward(self, features, proposals, image_sizes, class_embeddings, targets=None,
                class_image_counts=None):
        self.seen_counts.append(class_image_counts)
        pooled = self.pooler(features, proposals, image_sizes).mean(dim=(2, 3))
        embeddings = F.normalize(self.embed(pooled), dim=-1)
        logits = 10 * embeddings @ torch.cat([class_embeddings,
                                              class_embeddings.new_zeros(1, class_embeddings.shape[1])]).T
        counts = [len(p) for p in proposals]
        if self.training:
            labels = torch.full((len(logits),), len(class_embeddings))
            results = [{"boxes": b, "labels": lab, "region_embeddings": e, "logits": g}
                       for b, lab, e, g in zip(proposals, labels.split(counts),
                                               embeddings.split(counts), logits.split(counts))]
            return results, {"loss_cls": F.cross_entropy(logits, labels)}
        probabilities = logits.softmax(-1)[:, :-1]
        return [{"boxes": b, "probabilities": q, "region_embeddings": e} for b, q, e in
                zip(proposals, probabilities.split(counts), embeddings.split(counts))], {}

    def predict_masks(self, features, boxes, image_sizes):
        raise AssertionError("mask_on is False")


def test_a_third_party_roi_head_runs_through_the_detector(tiny_cfg):
    tiny_cfg.merge_from_list(["MODEL.ROI_HEADS.NAME", "MeanPoolHeads", "MODEL.MASK_ON", "False"])
    torch.manual_seed(0)
    model = build_model(tiny_cfg)
    model.set_training_vocabulary(NAMES, image_counts=[3, 1, 2])
    losses = model(synthetic_batch())
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_cls"}
    assert model.roi_heads.seen_counts[-1].tolist() == [3, 1, 2]
    model.eval()
    with torch.no_grad():
        outputs = model(inference_batch())
    assert "masks" not in outputs[0]["instances"] and len(outputs[0]["instances"]["scores"]) > 0


def test_fake_backbone_proposals_mask_head_and_scorer_run_through_the_detector(tiny_cfg):
    tiny_cfg.merge_from_list(["MODEL.BACKBONE.NAME", "SingleMapBackbone",
                              "MODEL.RPN.ANCHOR_SIZES", "(16,)",
                              "MODEL.PROPOSAL_GENERATOR.NAME", "GridProposals",
                              "MODEL.ROI_MASK_HEAD.NAME", "OneConvMaskHead",
                              "MODEL.OPEN_VOCAB.SCORER", "SquaredHeadScorer"])
    torch.manual_seed(0)
    model = build_model(tiny_cfg)
    assert model.roi_heads.box_pooler.featmap_names == ["res"]  # from output_shape()
    model.set_training_vocabulary(NAMES)
    losses = model(synthetic_batch())
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_mask"}
    sum(losses.values()).backward()
    assert model.roi_heads.mask_head.conv.weight.grad.abs().sum() > 0
    model.eval()
    batch = inference_batch()
    with torch.no_grad():
        outputs = model(batch)
        detections = model.inference(batch, do_postprocess=False)
        images = model.preprocess(batch)
        _, features = model.backbone(images.tensors)
        proposals, _ = model.proposal_generator.propose_with_scores(images, features)
        head, _ = model.roi_heads(features, proposals, images.image_sizes,
                                  model.vocabulary())
    best = head[0]["probabilities"].max() ** 2
    assert outputs[0]["instances"]["scores"][0] == pytest.approx(best.item(), rel=1e-5)
    assert detections[0]["masks"].shape[1:] == (28, 28)  # 14-px RoIs, upsampled 2x
    assert outputs[0]["instances"]["masks"].shape[1:] == (64, 64)


def test_criterion_loss_is_added_and_weighted(tiny_cfg):
    tiny_cfg.merge_from_list(["MODEL.CRITERIA", "('RegionSpreadLoss',)",
                              "MODEL.LOSS_WEIGHTS.loss_region_spread", "2.5"])
    model = reference_model(tiny_cfg)
    model.set_training_vocabulary(NAMES)
    torch.manual_seed(1)
    weighted = model(synthetic_batch())["loss_region_spread"]
    model.loss_weights["loss_region_spread"] = 1.0
    torch.manual_seed(1)
    plain = model(synthetic_batch())["loss_region_spread"]
    assert weighted.item() == pytest.approx(2.5 * plain.item(), rel=1e-5)


def test_roi_heads_return_results_and_losses_in_both_modes(model):
    batch = synthetic_batch()
    images = model.preprocess(batch)
    _, features = model.backbone(images.tensors)
    proposals = [torch.tensor([[0.0, 0.0, 32.0, 32.0], [8.0, 8.0, 40.0, 60.0]])] * 2
    targets = [x["instances"] for x in batch]
    model.train()
    results, losses = model.roi_heads(features, proposals, images.image_sizes,
                                      model.vocabulary(), targets)
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_mask"}
    for r in results:
        assert r["region_embeddings"].shape == (len(r["boxes"]), 32)
        assert r["logits"].shape == (len(r["boxes"]), len(NAMES) + 1)
        torch.testing.assert_close(r["region_embeddings"].norm(dim=1), torch.ones(len(r["boxes"])))
    model.eval()
    results, losses = model.roi_heads(features, proposals, images.image_sizes, model.vocabulary())
    assert losses == {} and results[0]["probabilities"].shape == (2, len(NAMES))
    assert results[0]["region_embeddings"].shape == (2, 32)


# ---- loss weights -------------------------------------------------------------------------
def test_loss_weight_zero_removes_that_loss_and_its_gradient(tiny_cfg):
    tiny_cfg.merge_from_list(["MODEL.LOSS_WEIGHTS.loss_mask", "0",
                              "MODEL.LOSS_WEIGHTS.loss_cls", "3"])
    model = reference_model(tiny_cfg)
    model.set_training_vocabulary(NAMES)
    model.train()
    torch.manual_seed(1)
    losses = model(synthetic_batch())
    assert "loss_mask" not in losses
    assert losses["loss_cls"].item() == pytest.approx(3 * 0.3853, abs=6e-3)  # test_detector's pin
    sum(losses.values()).backward()
    assert all(p.grad is None for p in model.roi_heads.mask_head.parameters())
    assert model.roi_heads.classifier.projection.weight.grad.abs().sum() > 0


def test_loss_weights_that_name_no_loss_or_are_not_numbers_are_errors(tiny_cfg):
    tiny_cfg.merge_from_list(["MODEL.LOSS_WEIGHTS.loss_clss", "0.5"])
    model = reference_model(tiny_cfg)
    model.set_training_vocabulary(NAMES)
    with pytest.raises(ConfigError, match=r"loss_clss.*losses: \['loss_box_reg', 'loss_cls'"):
        model(synthetic_batch())
    with pytest.raises(ConfigError, match="Type mismatch.*loss_cls"):
        tiny_cfg.merge_from_list(["MODEL.LOSS_WEIGHTS.loss_cls", "'heavy'"])
    tiny_cfg.merge_from_list(["MODEL.LOSS_WEIGHTS.loss_extra", "'heavy'"])
    with pytest.raises(ConfigError, match="loss_extra must be a number"):
        build_model(tiny_cfg)


# ---- vocabulary ---------------------------------------------------------------------------
def test_names_are_compared_after_normalisation(model):  # trained on tomato, egg, olive
    assert normalize_class_name("  Ice_Cube ") == "ice cube"
    assert normalize_class_name("bat_(animal)") == "bat (animal)"
    # COCO panoptic's merged stuff names are read as their first word; other hyphens stay
    assert [prompt_name(n) for n in ("wall-other-merged", "door-stuff", "floor-wood", "t-shirt")] \
        == ["wall", "door", "floor-wood", "t-shirt"]
    model.set_vocabulary(["Tomato", " EGG", "banana", "olive"])
    assert model.novel_mask.tolist() == [False, False, True, False]
    lower = model.vocabulary.embeddings.clone()
    model.set_vocabulary(["tomato", "egg", "banana", "olive"])
    torch.testing.assert_close(model.vocabulary.embeddings, lower)
    assert list(model.vocabulary) == ["tomato", "egg", "banana", "olive"]


@pytest.mark.parametrize("names, message", [
    ("tomato", r"single string 'tomato'; write \['tomato'\]"),
    (["Tomato", "tomato"], r"one class twice .*'Tomato' and 'tomato'"),
    (["bat_(animal)", "Bat (animal)"], "one class twice"),
    ([], "empty"),
    (["tomato", ""], "non-empty strings"),
    (["tomato", 3], "non-empty strings"),
    ({"tomato", "egg"}, "ordered list of class names"),
])
def test_bad_vocabularies_are_clear_errors(model, names, message):
    with pytest.raises(ValueError, match=message):
        model.set_vocabulary(names)
    assert list(model.vocabulary) == NAMES  # unchanged


def test_a_source_with_the_wrong_width_is_a_clear_error(model, monkeypatch):
    monkeypatch.setattr(model.vocabulary.source, "forward",
                        lambda names: torch.ones(len(names), 7))
    with pytest.raises(ValueError, match=r"returned \(2, 7\) embeddings for 2 names; the "
                                         r"detector needs \(2, 32\)"):
        model.set_vocabulary(["kiwi", "fig"])
    assert list(model.vocabulary) == NAMES


def test_learnable_embedding_source_trains_and_survives_a_checkpoint(tiny_cfg, tmp_path):
    tiny_cfg.merge_from_list(["MODEL.OPEN_VOCAB.EMBEDDING_SOURCE", "ShiftedTemplates"])
    torch.manual_seed(0)
    model = build_model(tiny_cfg)
    model.set_training_vocabulary(NAMES)
    before = model.vocabulary.embeddings.clone()
    optimizer = torch.optim.SGD([model.vocabulary.source.shift], lr=1.0)
    for _ in range(2):
        optimizer.zero_grad()
        sum(model(synthetic_batch()).values()).backward()
        assert model.vocabulary.source.shift.grad.abs().sum() > 0
        optimizer.step()
    shift = model.vocabulary.source.shift.detach().clone()
    assert shift.abs().sum() > 0
    model.eval()
    trained = model.vocabulary().clone()  # re-computed once after training
    assert (trained - before).abs().max() > 1e-4
    DetectorCheckpointer(model, str(tmp_path)).save("model_final")
    torch.manual_seed(0)  # the same (frozen, not checkpointed) text tower; a zero shift
    restored = build_model(tiny_cfg)
    assert restored.vocabulary.source.shift.abs().sum() == 0
    DetectorCheckpointer(restored).load(str(tmp_path / "model_final.pth"))
    restored.eval()
    restored.set_vocabulary(NAMES)
    torch.testing.assert_close(restored.vocabulary.source.shift, shift)
    torch.testing.assert_close(restored.vocabulary(), trained)
    assert restored.novel_mask.tolist() == [False] * 3  # base names came with the checkpoint


# ---- configurable ------------------------------------------------------------------------
def test_explicit_keywords_override_the_config(tiny_cfg):
    from ovdet.modeling.proposal.rpn import RPN
    from ovdet.modeling.roi_heads.open_vocab_heads import OpenVocabROIHeads

    shape = {"p2": contracts.ShapeSpec(16, 4), "p3": contracts.ShapeSpec(16, 8)}
    tiny_cfg.merge_from_list(["MODEL.RPN.ANCHOR_SIZES", "(8, 16)"])
    heads = OpenVocabROIHeads(tiny_cfg, shape, 32, hidden_dim=8, loss_type="federated_sigmoid")
    assert heads.box_head.fc7.out_features == 8 and heads.loss_type == "federated_sigmoid"
    assert heads.box_pooler.featmap_names == ["p2", "p3"]
    rpn = RPN(tiny_cfg, shape, nms_thresh=0.3)
    assert rpn.nms_thresh == 0.3 and rpn._post_nms_top_n["testing"] == 30  # rest from the cfg


# ---- federated loss ------------------------------------------------------------------------
def test_federated_sampling_follows_square_root_image_counts():
    from ovdet.modeling.roi_heads.open_vocab_heads import OpenVocabROIHeads, federated_classes

    heads = OpenVocabROIHeads(in_channels=4, featmap_names=("p2",), embed_dim=8,
                              loss_type="federated_sigmoid", fed_num_classes=2)
    weights = heads.federated_weights(torch.tensor([4.0, 9.0, 16.0, 1.0]))
    torch.testing.assert_close(weights, torch.tensor([2.0, 3.0, 4.0, 1.0]))
    labels = torch.tensor([0, 0, 4])  # class 0 present, 4 = background
    torch.manual_seed(0)
    draws = torch.stack([federated_classes(labels, 4, 2, weights)[1] for _ in range(4000)])
    frequencies = torch.bincount(draws, minlength=4).float() / len(draws)
    # one class joins class 0, drawn from {1, 2, 3} with probability 3/8, 4/8, 1/8
    torch.testing.assert_close(frequencies, torch.tensor([0.0, 3 / 8, 4 / 8, 1 / 8]), atol=0.025,
                               rtol=0)


def test_training_image_counts_reach_the_federated_loss(tiny_cfg, monkeypatch):
    tiny_cfg.merge_from_list(["MODEL.ROI_HEADS.LOSS", "federated_sigmoid",
                              "MODEL.ROI_HEADS.FED_NUM_CLASSES", "2"])
    model = reference_model(tiny_cfg)
    model.set_training_vocabulary(NAMES, image_counts=[25, 4, 0])
    original, seen = model.roi_heads.federated_weights, []

    def spy(counts):
        seen.append(original(counts))
        return seen[-1]

    monkeypatch.setattr(model.roi_heads, "federated_weights", spy)
    model(synthetic_batch())
    torch.testing.assert_close(seen[0], torch.tensor([5.0, 2.0, 0.0]))
    with pytest.raises(ValueError, match="3 non-negative"):
        model.set_training_vocabulary(NAMES, image_counts=[1, 2])


# ---- scoring ------------------------------------------------------------------------------
SCORERS = {"fvlm": {}, "no_ensemble": {"use_clip_ensemble": False},
           "objectness_regressed": {"novel_prior": "objectness"},
           "objectness_proposals": {"novel_prior": "objectness", "novel_boxes": "proposals"}}


@pytest.mark.parametrize("mode", SCORERS)
def test_scorer_gives_the_detections_of_the_detector_before_the_refactor(tiny_cfg, mode):
    """``scorer_reference.pt`` holds the detections the tiny detector (its weights are in the
    same file) gave before scoring left the meta-architecture; see tests/data/README.md."""
    reference = torch.load(REFERENCE, weights_only=True)["outputs"][mode]
    model = reference_model(tiny_cfg)
    model.set_training_vocabulary(NAMES)
    model.scorer = CLIPEnsembleScorer(**SCORERS[mode])
    model.set_vocabulary(["tomato", "egg", "banana", "olive"])
    model.eval()
    with torch.no_grad():
        outputs = model(inference_batch())
    for output, expected in zip(outputs, reference):
        instances = output["instances"]
        torch.testing.assert_close(instances["scores"], expected["scores"], atol=1e-5, rtol=0)
        torch.testing.assert_close(instances["boxes"], expected["boxes"], atol=1e-4, rtol=0)
        assert torch.equal(instances["classes"], expected["classes"])
        assert torch.equal(instances["masks"].sum((1, 2)), expected["mask_sum"])


def test_class_image_counts_by_hand():
    from ovdet.data.class_counts import class_image_counts

    records = [{"annotations": [{"category_id": 0}, {"category_id": 0}, {"category_id": 2}]},
               {"annotations": [{"category_id": 2}]}, {"annotations": []}, {}]
    assert class_image_counts(records, 3) == [1, 0, 2]  # images, not boxes
    with pytest.raises(ValueError, match="category_id 3, outside the 3 classes"):
        class_image_counts([{"file_name": "x.png", "annotations": [{"category_id": 3}]}], 3)


def test_training_counts_classes_and_keeps_them_across_evaluation(tiny_world, tiny_cfg, tmp_path,
                                                                   monkeypatch):
    from ovdet.data import DatasetCatalog
    from ovdet.data.class_counts import class_image_counts
    from ovdet.engine.trainer import Trainer

    tiny_cfg.merge_from_list(["MODEL.ROI_HEADS.LOSS", "federated_sigmoid", "SOLVER.MAX_ITER", "1",
                              "DATASETS.TRAIN", "('tiny_train',)", "OUTPUT_DIR", str(tmp_path)])
    torch.manual_seed(0)
    model = build_model(tiny_cfg)
    names = DatasetCatalog.metadata("tiny_train").thing_classes
    model.set_training_vocabulary(names)
    seen = []
    monkeypatch.setattr(model.roi_heads, "federated_weights", lambda counts: seen.append(counts))
    Trainer(tiny_cfg, model, 3).train()
    expected = class_image_counts(DatasetCatalog.get("tiny_train"), len(names))
    assert seen[0].tolist() == expected and sum(expected) > 0
    model.set_vocabulary([*names, "banana"])  # as evaluation does, and back
    assert model.vocabulary.image_counts is None
    model.set_vocabulary(names)
    assert model.vocabulary.image_counts.tolist() == expected


def test_seeded_initialisation_is_the_one_before_the_refactor(tiny_cfg):
    """Built at seed 0, the detector has exactly the weights the code before the seams refactor
    gave it (tests/data/README.md), old checkpoint key names loading into the new modules."""
    from ovdet.modeling.roi_heads.open_vocab_heads import _rename_legacy_mask_keys

    reference = dict(torch.load(REFERENCE, weights_only=True)["state_dict"])
    _rename_legacy_mask_keys(reference, "roi_heads.")
    torch.manual_seed(0)
    state = build_model(tiny_cfg).state_dict()
    assert set(state) == set(reference)
    for key, value in state.items():
        assert torch.equal(value, reference[key]), key
