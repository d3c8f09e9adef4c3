"""OpenVocabRCNN on a tiny random CLIP: shapes, losses, empty images, vocabularies, RMA."""
import pytest
import torch

from conftest import NAMES
from ovdet.clip import CLIPViTTrunk
from ovdet.clip.rma import box_embeddings, rasterize_boxes, region_embeddings
from ovdet.modeling.contracts import ScoringInputs
from ovdet.modeling.registry import build_model
from ovdet.modeling.scoring import CLIPEnsembleScorer


def synthetic_batch(num_boxes=(2, 1), size=64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    batch = []
    for n in num_boxes:
        image = torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=generator)
        xy = torch.randint(0, size // 2, (n, 2), generator=generator).float()
        wh = torch.randint(8, size // 2, (n, 2), generator=generator).float()
        boxes = torch.cat([xy, xy + wh], dim=1)
        masks = torch.zeros(n, size, size, dtype=torch.bool)
        for k, (x1, y1, x2, y2) in enumerate(boxes.long().tolist()):
            masks[k, y1:y2, x1:x2] = True
        batch.append({"image": image, "height": size, "width": size, "image_id": len(batch),
                      "instances": {"boxes": boxes, "classes": torch.arange(n) % len(NAMES),
                                    "masks": masks}})
    return batch


def inference_batch():
    """The synthetic batch without targets, as at inference."""
    batch = synthetic_batch()
    for x in batch:
        x.pop("instances")
    return batch


def test_training_losses_pinned(model):
    model.train()
    torch.manual_seed(1)
    losses = model(synthetic_batch())
    pinned = {"loss_objectness": 0.6931, "loss_rpn_box_reg": 0.0313, "loss_cls": 0.3853,
              "loss_box_reg": 0.0814, "loss_mask": 0.5407}
    assert set(losses) == set(pinned)
    for name, value in pinned.items():
        assert losses[name].item() == pytest.approx(value, abs=2e-3), (name, losses[name].item())
    sum(losses.values()).backward()
    assert model.roi_heads.classifier.projection.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.backbone.trunk.parameters())  # frozen trunk


def test_image_without_annotations_trains_with_zero_box_loss(model):
    model.train()
    batch = synthetic_batch(num_boxes=(0,))
    losses = model(batch)
    assert losses["loss_box_reg"].item() == 0.0 and losses["loss_rpn_box_reg"].item() == 0.0
    assert losses["loss_mask"].item() == 0.0
    assert torch.isfinite(sum(losses.values()))
    sum(losses.values()).backward()


def test_inference_outputs_in_original_coordinates(model):
    model.eval()
    batch = inference_batch()
    batch[0]["height"], batch[0]["width"] = 128, 96  # the image was resized from 96x128
    with torch.no_grad():
        outputs = model(batch)
    assert len(outputs) == 2
    for output, x in zip(outputs, batch):
        inst = output["instances"]
        n = len(inst["scores"])
        assert 0 < n <= model.detections_per_image
        assert inst["boxes"].shape == (n, 4) and inst["boxes"].dtype == torch.float32
        assert inst["classes"].dtype == torch.int64 and inst["classes"].max() < len(NAMES)
        assert inst["masks"].shape == (n, x["height"], x["width"]) and inst["masks"].dtype == torch.bool
        assert (inst["boxes"][:, 2] <= x["width"]).all() and (inst["boxes"][:, 3] <= x["height"]).all()
        assert (inst["scores"][:-1] >= inst["scores"][1:]).all()
    assert outputs[0]["instances"]["boxes"][:, 2].max() > 64  # scaled back to the 96-px width


def test_vocabulary_swap_without_rebuilding(model):
    model.eval()
    batch = inference_batch()
    heads = model.roi_heads
    five = ["tomato", "egg", "olive", "banana", "grape"]
    model.set_vocabulary(five)
    assert model.roi_heads is heads and model.class_embeddings.shape[0] == 5
    assert model.novel_mask.tolist() == [False, False, False, True, True]
    with torch.no_grad():
        classes = torch.cat([o["instances"]["classes"] for o in model(batch)])
    assert classes.max() >= 3  # novel names are predicted too
    with pytest.raises(ValueError, match=r"must be \(2, 32\)"):
        model.set_vocabulary(["a", "b"], embeddings=torch.randn(2, 7))


def test_no_vocabulary_is_a_clear_error(tiny_cfg):
    model = build_model(tiny_cfg)
    with pytest.raises(RuntimeError, match="set_vocabulary"):
        model(synthetic_batch())


def scoring_inputs(novel_mask, **fields):
    """ScoringInputs for scorer unit tests: the given fields, placeholders elsewhere."""
    defaults = {"trunk": None, "trunk_output": None, "proposals": [], "objectness": [],
                "boxes": [], "probabilities": [], "class_embeddings": torch.zeros(len(novel_mask), 4),
                "logit_scale": torch.tensor(1.0)}
    return ScoringInputs(novel_mask=torch.tensor(novel_mask), **{**defaults, **fields})


def test_ensemble_is_weighted_geometric_mean(monkeypatch):
    scorer = CLIPEnsembleScorer()  # column 0 base, column 1 novel
    alpha, beta = scorer.ensemble_weights
    head = [torch.tensor([[0.6, 0.2]])]
    clip = torch.tensor([[0.3, 0.7]])
    monkeypatch.setattr(scorer, "clip_probabilities", lambda inputs, boxes: [clip])
    combined = scorer.ensemble(scoring_inputs([False, True]), [torch.zeros(1, 4)], head)[0]
    expected = torch.tensor([[0.6 ** (1 - alpha) * 0.3 ** alpha, 0.2 ** (1 - beta) * 0.7 ** beta]])
    torch.testing.assert_close(combined, expected)


def test_rma_whole_image_all_blocks_is_clip_embedding(tiny_clip):
    trunk = CLIPViTTrunk(tiny_clip.model.visual, keep_last=trunk_depth(tiny_clip))
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        output = trunk(images)
        whole = [torch.tensor([[0.0, 0.0, 32.0, 32.0]])] * 2
        region = torch.cat(box_embeddings(trunk, output, whole))
        expected = tiny_clip.model.encode_image(images)
    torch.testing.assert_close(region, expected, rtol=0, atol=1e-4)


def test_rma_regions_see_only_their_patches(tiny_clip):
    """A region token reads the kept states of CLS and of its own patches only: disturbing the
    kept state of a patch outside the region leaves its embedding unchanged, inside does not."""
    trunk = CLIPViTTrunk(tiny_clip.model.visual, keep_last=1)
    with torch.no_grad():
        output = trunk(torch.randn(1, 3, 32, 32))
        region = torch.zeros(1, 16, dtype=torch.bool)
        region[0, [0, 1, 4, 5]] = True  # the top-left 2x2 patches of the 4x4 grid
        before = region_embeddings(trunk, output, [region])[0]
        noise = torch.randn(output.kept[0].shape[-1])
        output.kept[0][:, 1 + 15] += noise  # a patch outside the region
        outside = region_embeddings(trunk, output, [region])[0]
        output.kept[0][:, 1 + 0] += noise  # a patch inside
        inside = region_embeddings(trunk, output, [region])[0]
    torch.testing.assert_close(before, outside, rtol=0, atol=1e-6)
    assert (before - inside).abs().max() > 1e-3


def test_rasterize_boxes_by_hand():
    boxes = torch.tensor([[0.0, 0.0, 16.0, 8.0], [17.0, 17.0, 18.0, 18.0]])
    masks = rasterize_boxes(boxes, (3, 3), patch_size=8)
    # patch centres at 4, 12, 20: box 0 holds (row 0, cols 0 and 1); box 1 holds no centre, so
    # the patch containing its centre (17.5, 17.5) -> (row 2, col 2)
    assert masks.tolist() == [[True, True, False, False, False, False, False, False, False],
                              [False, False, False, False, False, False, False, False, True]]


def trunk_depth(clip):
    return len(clip.model.visual.transformer.resblocks)


def test_federated_classes_by_hand():
    from ovdet.modeling.roi_heads.open_vocab_heads import federated_classes

    labels = torch.tensor([2, 2, 5, 10])  # 10 = background of a 10-class vocabulary
    torch.manual_seed(0)
    chosen = federated_classes(labels, num_classes=10, num_sampled=4)
    assert chosen[:2].tolist() == [2, 5] and len(set(chosen.tolist())) == 4
    weights = torch.zeros(10)
    weights[7] = 1.0  # only class 7 can be sampled
    assert federated_classes(labels, 10, 3, weights).tolist() == [2, 5, 7]
    assert federated_classes(labels, 10, 20).tolist() == list(range(10))


def test_federated_sigmoid_loss_trains(tiny_cfg):
    tiny_cfg.merge_from_list(["MODEL.ROI_HEADS.LOSS", "federated_sigmoid",
                              "MODEL.ROI_HEADS.FED_NUM_CLASSES", "2"])
    torch.manual_seed(0)
    model = build_model(tiny_cfg)
    model.set_training_vocabulary(NAMES)
    losses = model(synthetic_batch())
    assert torch.isfinite(losses["loss_cls"]) and losses["loss_cls"].item() > 0
    model.eval()
    batch = inference_batch()
    with torch.no_grad():
        scores = model(batch)[0]["instances"]["scores"]
    assert ((scores >= 0) & (scores <= 1)).all()


def test_box_fit_by_hand():
    from ovdet.clip.box_fit import box_fit

    activation = torch.tensor([[1.0, 1.0, 0.0, 0.0],   # class 0 lives on patches 0 and 1
                               [0.0, 0.0, 0.5, 0.5]])
    masks = torch.tensor([[True, True, False, False],   # exactly class 0's patches
                          [True, False, False, False],  # half of them
                          [True, True, True, True]])    # everything
    fit = box_fit(activation, masks, exponent=0.5)
    raw0 = torch.tensor([2 / 2**0.5, 1 / 1, 2 / 4**0.5])
    raw1 = torch.tensor([0.0, 0.0, 1 / 4**0.5])
    torch.testing.assert_close(fit[:, 0], raw0 / raw0.max())
    torch.testing.assert_close(fit[:, 1], raw1 / raw1.max())
    assert fit[:, 0].argmax() == 0  # the box that covers the activation, and no more, wins


def test_objectness_prior_vetoes_novel_on_base_objects(tiny_cfg, monkeypatch):
    tiny_cfg.merge_from_list(["MODEL.OPEN_VOCAB.NOVEL_PRIOR", "objectness"])
    torch.manual_seed(0)
    model = build_model(tiny_cfg)
    model.set_training_vocabulary(["tomato", "egg"])
    model.set_vocabulary(["tomato", "egg", "banana"])  # banana is novel
    head = [torch.tensor([[0.7, 0.2, 0.05], [0.01, 0.01, 0.0]])]
    fits = [torch.tensor([[1.0, 1.0, 0.25], [1.0, 1.0, 1.0]])]
    monkeypatch.setattr("ovdet.modeling.scoring.box_fits", lambda *a, **k: fits)
    prior = model.scorer.with_objectness_prior(scoring_inputs([False, False, True]),
                                               [torch.zeros(2, 4)], head,
                                               [torch.tensor([0.64, 0.81])])[0]
    monkeypatch.undo()
    expected_banana = torch.tensor([(0.64 * 0.25) ** 0.5 * (1 - 0.9), (0.81 * 1.0) ** 0.5 * 0.98])
    torch.testing.assert_close(prior[:, 2], expected_banana)
    torch.testing.assert_close(prior[:, :2], head[0][:, :2])  # base columns untouched
    model.eval()
    batch = inference_batch()
    with torch.no_grad():
        outputs = model(batch)
    assert all(torch.isfinite(o["instances"]["scores"]).all() for o in outputs)


def test_novel_classes_scored_on_proposals(tiny_cfg):
    tiny_cfg.merge_from_list(["MODEL.OPEN_VOCAB.NOVEL_BOXES", "proposals",
                              "MODEL.OPEN_VOCAB.NOVEL_PRIOR", "objectness"])
    torch.manual_seed(0)
    model = build_model(tiny_cfg)
    model.set_training_vocabulary(["tomato", "egg"])
    model.set_vocabulary(["tomato", "egg", "banana"])
    regressed = [torch.tensor([[0.0, 0.0, 10.0, 10.0]])]
    proposals = [torch.tensor([[1.0, 1.0, 12.0, 12.0]])]
    probabilities = [torch.tensor([[0.5, 0.3, 0.1]])]
    boxes, probs, objectness, allowed = model.scorer.novel_on_proposals(
        scoring_inputs([False, False, True], proposals=proposals), regressed, probabilities,
        [torch.tensor([0.9])])
    assert torch.equal(boxes[0], torch.cat([regressed[0], proposals[0]]))
    assert allowed[0].tolist() == [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]  # base | novel columns
    assert objectness[0].tolist() == pytest.approx([0.9, 0.9]) and probs[0].shape == (2, 3)
    model.eval()
    batch = inference_batch()
    with torch.no_grad():
        outputs = model(batch)
        images = model.preprocess(batch)
        proposals, _ = model.proposal_generator.propose_with_scores(
            images, model.backbone(images.tensors)[1])
    novel_boxes = [o["instances"]["boxes"][o["instances"]["classes"] == 2] for o in outputs]
    assert sum(len(b) for b in novel_boxes) > 0
    for boxes, image_proposals in zip(novel_boxes, proposals):  # inputs are not resized
        for box in boxes:  # every novel detection sits on a proposal, not a regressed box
            assert torch.isclose(image_proposals, box, atol=1e-4).all(dim=1).any()


def test_select_keeps_only_the_best_candidates_before_nms(model):
    boxes = torch.tensor([[0.0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [60, 0, 70, 10]])
    scores = torch.tensor([[0.6, 0.0, 0.0], [0.9, 0.0, 0.0], [0.7, 0.0, 0.0], [0.8, 0.01, 0.0]])
    model.score_thresh = 0.0
    assert model.select(boxes, scores)["scores"].tolist() == pytest.approx([0.9, 0.8, 0.7, 0.6, 0.01])
    model.topk_candidates = 3
    kept = model.select(boxes, scores)
    assert kept["scores"].tolist() == pytest.approx([0.9, 0.8, 0.7])
    assert kept["boxes"][:, 0].tolist() == [20, 60, 40]
