"""The panoptic branch's parts: matching, losses, scoring, assembly and the query head."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ovdet.modeling.contracts import ShapeSpec
from ovdet.modeling.panoptic.assembly import assemble_panoptic
from ovdet.modeling.panoptic.criterion import PanopticCriterion, mask_point_losses
from ovdet.modeling.panoptic.matcher import hungarian_match, pairwise_mask_costs, point_sample
from ovdet.modeling.panoptic.query_head import QueryMaskHead
from ovdet.modeling.panoptic.scoring import MaskEnsembleScorer, MaskScoringInputs


def test_point_sample_reads_pixel_centres():
    maps = torch.arange(16.0).reshape(1, 4, 4)
    points = torch.tensor([[0.125, 0.125], [0.875, 0.125], [0.375, 0.625]])  # (x, y)
    assert point_sample(maps, points).tolist() == [[0.0, 3.0, 9.0]]


def test_hungarian_matching_on_a_constructed_case():
    # three queries, two segments over 4 points; query 2 has segment 0's mask and class, query 0
    # segment 1's mask but a wrong class, query 1 nothing: the best total cost pairs 2-0 and 0-1
    targets = torch.tensor([[1, 1, 0, 0], [0, 0, 1, 1]], dtype=torch.float32)
    logits = torch.tensor([[-9, -9, 9, 9], [-9, -9, -9, -9], [9, 9, -9, -9.0]])
    probabilities = torch.tensor([[0.5, 0.1, 0.4], [0.1, 0.1, 0.8], [0.8, 0.1, 0.1]])
    queries, segments = hungarian_match(probabilities, logits, torch.tensor([0, 1]), targets,
                                        torch.ones(4))
    assert queries.tolist() == [0, 2] and segments.tolist() == [1, 0]
    # the class cost alone can flip a tie of masks: two identical masks, distinct classes
    same = torch.tensor([[9, 9, -9, -9.0], [9, 9, -9, -9.0]])
    queries, segments = hungarian_match(torch.tensor([[0.1, 0.8, 0.1], [0.8, 0.1, 0.1]]), same,
                                        torch.tensor([0, 1]), targets[[0, 0]], torch.ones(4))
    assert dict(zip(queries.tolist(), segments.tolist())) == {0: 1, 1: 0}


def test_matching_without_segments_is_empty():
    queries, segments = hungarian_match(torch.rand(3, 2), torch.rand(3, 5),
                                        torch.zeros(0, dtype=torch.int64), torch.zeros(0, 5),
                                        torch.ones(5))
    assert queries.numel() == 0 and segments.numel() == 0


def test_pairwise_costs_equal_the_per_pair_losses_and_ignore_void_points():
    torch.manual_seed(0)
    logits, targets = torch.randn(3, 6), (torch.rand(2, 6) > 0.5).float()
    weights = torch.tensor([1, 1, 0, 1, 0, 1.0])
    bce, dice = pairwise_mask_costs(logits, targets, weights)
    for q in range(3):
        for s in range(2):
            pair_bce, pair_dice = mask_point_losses(logits[q:q + 1], targets[s:s + 1],
                                                    weights[None])
            assert bce[q, s].item() == pytest.approx(pair_bce.item(), abs=1e-6)
            assert dice[q, s].item() == pytest.approx(pair_dice.item(), abs=1e-6)
    by_hand = F.binary_cross_entropy_with_logits(logits[0, [0, 1, 3, 5]], targets[1, [0, 1, 3, 5]])
    assert bce[0, 1].item() == pytest.approx(by_hand.item(), abs=1e-6)


def segment_targets():
    """One 8x8 image: segment 0 (class 1) the left half, void the right column block."""
    masks = torch.zeros(1, 8, 8, dtype=torch.bool)
    masks[0, :, :4] = True
    void = torch.zeros(8, 8, dtype=torch.bool)
    void[:, 6:] = True
    return [{"masks": masks, "classes": torch.tensor([1]), "void": void}]


def test_losses_ignore_predictions_on_void_pixels():
    torch.manual_seed(0)
    criterion = PanopticCriterion(num_points=256, oversample=1.0, importance=0.0)
    logits, objectness = torch.randn(1, 3, 2), torch.randn(1, 3)
    masks = torch.randn(1, 3, 8, 8)
    changed = masks.clone()
    changed[..., 6:] = torch.randn(1, 3, 8, 2) * 10  # only void pixels differ
    torch.manual_seed(1)
    first, _ = criterion({"logits": logits, "objectness": objectness, "masks": masks, "aux": []},
                         segment_targets())
    torch.manual_seed(1)
    second, _ = criterion({"logits": logits, "objectness": objectness, "masks": changed,
                           "aux": []}, segment_targets())
    # mask losses read no void point; bilinear reads at the void border mix the neighbour column
    assert second["loss_panoptic_mask"].item() == pytest.approx(
        first["loss_panoptic_mask"].item(), rel=0.05)
    assert second["loss_panoptic_dice"].item() == pytest.approx(
        first["loss_panoptic_dice"].item(), rel=0.05)


def test_unmatched_query_mostly_on_void_is_not_taught_no_object():
    criterion = PanopticCriterion(num_points=512, void_weight=0.1)
    masks = torch.full((1, 3, 8, 8), -10.0)
    masks[0, 0, :, :4] = 10  # query 0: the segment
    masks[0, 1, :, 6:] = 10  # query 1: all on void (a novel thing, perhaps)
    masks[0, 2, :, 4:6] = 10  # query 2: on labelled background
    objectness = torch.zeros(1, 3)
    prediction = {"logits": torch.zeros(1, 3, 2), "objectness": objectness, "masks": masks}
    matches = [(torch.tensor([0]), torch.tensor([0]))]
    loss = criterion.objectness_loss(prediction, segment_targets(), matches)
    # weights: query 0 -> 1 (a segment), query 1 -> 0, query 2 -> 0.1 (no object); objectness
    # logits 0: every binary cross-entropy is log 2
    assert loss.item() == pytest.approx(math.log(2), abs=1e-5)
    objectness[0, 1] = 5.0  # query 1 confident it is an object: not penalised
    assert criterion.objectness_loss(prediction, segment_targets(), matches).item() == \
        pytest.approx(math.log(2), abs=1e-5)
    objectness[0, 2] = 5.0  # query 2 is: its loss counts with weight 0.1
    expected = (math.log(2) + 0.1 * F.softplus(torch.tensor(5.0)).item()) / 1.1
    assert criterion.objectness_loss(prediction, segment_targets(), matches).item() == \
        pytest.approx(expected, abs=1e-5)
    # the class loss reads the matched queries only: -log softmax of class 1 of query 0
    prediction["logits"][0, 0] = torch.tensor([2.0, 0.0])
    prediction["logits"][0, 2] = torch.tensor([9.0, -9.0])  # unmatched: ignored
    assert criterion.classification_loss(prediction, segment_targets(), matches, 1).item() == \
        pytest.approx(F.softplus(torch.tensor(2.0)).item(), abs=1e-5)


def test_criterion_sums_deep_supervision_and_survives_images_without_segments():
    criterion = PanopticCriterion(num_points=256)
    values = torch.full((1, 3, 8, 8), -10.0)
    values[0, 0, :, :4] = 10  # unambiguous: query 0 is the segment, 1 on void, 2 background
    values[0, 1, :, 6:] = 10
    values[0, 2, :, 4:6] = 10
    masks = values.requires_grad_()
    logits = torch.randn(1, 3, 2, generator=torch.Generator().manual_seed(0), requires_grad=True)
    objectness = torch.zeros(1, 3, requires_grad=True)
    final = {"logits": logits, "objectness": objectness, "masks": masks}
    once, matches = criterion({**final, "aux": []}, segment_targets())
    twice, _ = criterion({**final, "aux": [final]}, segment_targets())
    assert [m.tolist() for m in matches[0]] == [[0], [0]]
    for name in ("loss_panoptic_ce", "loss_panoptic_objectness"):
        assert twice[name].item() == pytest.approx(2 * once[name].item())
    empty = [{"masks": torch.zeros(0, 8, 8, dtype=torch.bool),
              "classes": torch.zeros(0, dtype=torch.int64), "void": torch.zeros(8, 8, dtype=torch.bool)}]
    losses, matches = criterion({**final, "aux": []}, empty)
    assert all(torch.isfinite(v) for v in losses.values()) and matches[0][0].numel() == 0
    sum(losses.values()).backward()
    assert masks.grad is not None and objectness.grad is not None


def test_assembly_on_an_overlap_case():
    # 6x6 image, classes 0 (thing) and 1 (stuff); score x probability decides each pixel
    masks = torch.zeros(4, 6, 6)
    masks[0, :3, :4] = 0.9  # thing A, top rows, columns 0-3: 0.9 x 0.9 = 0.81
    masks[1, :3, 2:] = 0.8  # thing B, columns 2-5: 0.99 x 0.8 = 0.792, loses columns 2-3 to A
    masks[2] = 0.7  # stuff everywhere: 0.6 x 0.7 = 0.42, wins nowhere
    masks[3, 3:] = 0.9  # the same stuff class, bottom rows: 0.54
    scores = torch.tensor([[0.9, 0.0], [0.99, 0.0], [0.0, 0.6], [0.0, 0.6]])
    is_thing = torch.tensor([True, False])
    ids, segments = assemble_panoptic(scores, masks, is_thing, overlap_threshold=0.5)
    # B is assigned 6 of its 12 mask pixels (0.5): kept; stuff query 2 gets no pixel: dropped
    assert [(s["id"], s["category_id"], s["isthing"]) for s in segments] == \
        [(1, 0, True), (2, 0, True), (3, 1, False)]
    expected = torch.zeros(6, 6, dtype=torch.int32)
    expected[:3, :4], expected[:3, 4:], expected[3:] = 1, 2, 3
    assert torch.equal(ids, expected)
    ids, segments = assemble_panoptic(scores, masks, is_thing, overlap_threshold=0.8)
    # B is mostly hidden now: dropped, and its pixels are void (no one else claims them)
    assert [s["category_id"] for s in segments] == [0, 1]
    expected[:3, 4:], expected[3:] = 0, 2
    assert torch.equal(ids, expected)


def test_assembly_thresholds_merge_and_void():
    masks = torch.zeros(3, 4, 4)
    masks[0, :2] = 0.9  # stuff class 1, top
    masks[1, 2:] = 0.9  # stuff class 1, bottom: the same segment
    masks[2, :, :] = 0.3  # a thing everywhere but below the mask threshold
    scores = torch.tensor([[0.0, 0.7], [0.0, 0.6], [0.95, 0.0]])
    ids, segments = assemble_panoptic(scores, masks, torch.tensor([True, False]))
    assert segments == [{"id": 1, "category_id": 1, "isthing": False, "score": pytest.approx(0.7)}]
    assert (ids == 1).all()
    # a score under the object threshold keeps nothing: all void
    ids, segments = assemble_panoptic(scores * 0.5, masks, torch.tensor([True, False]))
    assert segments == [] and (ids == 0).all() and ids.dtype == torch.int32
    ids, segments = assemble_panoptic(torch.zeros(0, 2), torch.zeros(0, 4, 4),
                                      torch.tensor([True, False]))
    assert segments == [] and ids.shape == (4, 4)


def test_assembly_drops_a_mostly_hidden_segment():
    masks = torch.zeros(2, 4, 4)
    masks[0] = 0.9  # a big thing, whole image, score 0.8
    masks[1, :2, :2] = 1.0  # a small one on top with a higher score: takes 4 pixels
    scores = torch.tensor([[0.8, 0.0], [0.0, 0.99]])
    ids, segments = assemble_panoptic(scores, masks, torch.tensor([True, True]),
                                      overlap_threshold=0.8)
    # the big one keeps 12 of 16 pixels (0.75 < 0.8): dropped; the small one stays
    assert [s["category_id"] for s in segments] == [1]
    assert int((ids == 1).sum()) == 4 and int((ids == 0).sum()) == 12
    ids, segments = assemble_panoptic(scores, masks, torch.tensor([True, True]),
                                      overlap_threshold=0.7)
    assert [s["category_id"] for s in segments] == [0, 1]  # in query order


def test_mask_ensemble_scorer_by_hand():
    logits = torch.log(torch.tensor([[0.6, 0.4]]))  # 2 classes
    objectness = torch.tensor([math.log(0.8 / 0.2)])  # sigmoid: 0.8
    clip = torch.tensor([[0.2, 0.8]])
    seen = torch.tensor([True, False])
    inputs = MaskScoringInputs(logits=logits, objectness=objectness, clip_probabilities=clip,
                               seen=seen)
    scores = MaskEnsembleScorer(ensemble_weights=(0.4, 0.8))(inputs)
    a = 0.6 ** 0.6 * 0.2 ** 0.4
    b = 0.4 ** 0.2 * 0.8 ** 0.8
    expected = torch.tensor([[a, b]]) / (a + b) * 0.8
    assert torch.allclose(scores, expected, atol=1e-6)
    head_only = MaskEnsembleScorer(use_clip=False)(inputs)
    assert torch.allclose(head_only, torch.tensor([[0.48, 0.32]]), atol=1e-6)
    with pytest.raises(ValueError, match="ensemble weights"):
        MaskEnsembleScorer(ensemble_weights=(1.5, 0.1))


def test_query_head_shapes_and_masked_attention():
    torch.manual_seed(0)
    shape = {"p1": ShapeSpec(16, 2), "p2": ShapeSpec(16, 4), "p3": ShapeSpec(16, 8)}
    head = QueryMaskHead(shape, embed_dim=12, num_queries=5, hidden_dim=32, num_heads=4,
                         dim_feedforward=64, num_layers=2)
    features = {"p1": torch.randn(2, 16, 16, 16), "p2": torch.randn(2, 16, 8, 8),
                "p3": torch.randn(2, 16, 4, 4)}
    text = F.normalize(torch.randn(7, 12), dim=-1)
    images = torch.randn(2, 3, 32, 32)
    out = head(features, text, images)
    assert out["logits"].shape == (2, 5, 7) and out["masks"].shape == (2, 5, 16, 16)
    assert out["objectness"].shape == (2, 5)
    assert len(out["aux"]) == 2 and head.mask_stride == 2
    # a query whose mask is off everywhere may look everywhere (no all-masked attention row)
    blocked = head.attention_block(torch.full((1, 5, 16, 16), -5.0), (4, 4))
    assert blocked.shape == (4 * 1, 5, 16) and not blocked.any()
    on = torch.full((1, 5, 16, 16), -5.0)
    on[0, 0, :8, :8] = 5.0
    blocked = head.attention_block(on, (4, 4))
    assert blocked[0, 0].view(4, 4)[:2, :2].logical_not().all() and blocked[0, 0].sum() == 12
    with pytest.raises(ValueError, match="pass the images"):
        head(features, text)
    # the image stem starts as a no-op (zero-initialised projection)
    plain = QueryMaskHead(shape, 12, num_queries=5, hidden_dim=32, num_heads=4,
                          dim_feedforward=64, num_layers=2, image_stem=False)
    plain.load_state_dict({k: v for k, v in head.state_dict().items()
                           if not k.startswith("image_stem")})
    assert torch.allclose(plain(features, text)["masks"], out["masks"], atol=1e-5)
    with pytest.raises(ValueError, match="multiple of num_heads"):
        QueryMaskHead(shape, 12, hidden_dim=30, num_heads=4)


def test_panoptic_segmentation_maps_the_mask_grid_to_the_original_image():
    from ovdet.modeling.panoptic.branch import panoptic_segmentation

    # a 4x4 mask grid at stride 2 covers an 8x8 padded input; the image is the top 6x8 of it,
    # shown at 12x16; the one (stuff) mask is the grid's top-left 3x2 cells: the image's left
    # half, all its rows (without the crop to 6 rows, its bottom rows would be void)
    logits = torch.full((1, 4, 4), -10.0)
    logits[0, :3, :2] = 10.0
    ids, segments = panoptic_segmentation({"scores": torch.tensor([[0.9]]), "mask_logits": logits},
                                          (6, 8), (12, 16), torch.tensor([False]), mask_stride=2)
    assert ids.shape == (12, 16) and [s["id"] for s in segments] == [1]
    # away from the bilinear border column: the left half is the segment in every row
    assert (ids[:, :7] == 1).all() and (ids[:, 9:] == 0).all()
