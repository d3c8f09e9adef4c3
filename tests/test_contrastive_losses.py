"""The contrastive criteria (RCCL, RRCL, the memory queue) on hand-built embeddings."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ovdet.config import ConfigError, get_cfg
from ovdet.modeling.registry import CRITERION_REGISTRY, build_from_registry
from ovdet.modeling.roi_heads.contrastive import (RegionCategoryContrast, RegionEmbeddingQueue,
                                                  RegionRegionContrast, class_similarity_targets,
                                                  region_category_contrast,
                                                  region_region_contrast, unseen_names)

# three classes on the unit circle of the first two axes, and a fourth axis
CLASSES = torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 1.0]])


def roi_results(embeddings: torch.Tensor, labels: list[int], split: int = 1) -> list[dict]:
    """RoI training results of ``split`` images holding these regions in turn."""
    labels = torch.tensor(labels)
    chunks = zip(embeddings.chunk(split), labels.chunk(split))
    return [{"region_embeddings": e, "labels": y} for e, y in chunks]


def test_soft_targets_are_the_softmax_of_class_similarities():
    targets = class_similarity_targets(CLASSES, torch.tensor([0, 2]), temperature=0.5)
    # class 0: cosines (1, 0.6, 0) / 0.5 -> softmax of (2, 1.2, 0)
    e = [math.exp(2), math.exp(1.2), 1.0]
    assert torch.allclose(targets[0], torch.tensor([x / sum(e) for x in e]), atol=1e-6)
    # class 2: cosines (0, 0, 1) / 0.5 -> softmax of (0, 0, 2)
    e = [1.0, 1.0, math.exp(2)]
    assert torch.allclose(targets[1], torch.tensor([x / sum(e) for x in e]), atol=1e-6)


@pytest.mark.parametrize("temperature", [5.0, 0.3, 0.05])
def test_soft_targets_sum_to_one(temperature):
    classes = F.normalize(torch.randn(7, 5, generator=torch.Generator().manual_seed(0)), dim=-1)
    targets = class_similarity_targets(classes, torch.arange(7), temperature)
    assert torch.allclose(targets.sum(dim=1), torch.ones(7), atol=1e-6)
    assert (targets >= 0).all()


def test_soft_targets_become_one_hot_as_the_temperature_goes_to_zero():
    labels = torch.tensor([0, 1, 2, 1])
    one_hot = F.one_hot(labels, 3).float()
    gaps = [(class_similarity_targets(CLASSES, labels, t) - one_hot).abs().max()
            for t in (1.0, 0.1, 0.01)]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 1e-6
    assert torch.equal(class_similarity_targets(CLASSES, labels, 0.0), one_hot)
    with pytest.raises(ValueError, match=">= 0"):
        class_similarity_targets(CLASSES, labels, -0.1)


def test_rccl_value_on_hand_built_embeddings():
    regions = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    labels = torch.tensor([0, 2])
    loss = region_category_contrast(regions, labels, CLASSES, temperature=1.0,
                                    similarity_temperature=0.0)
    # one-hot targets: -log softmax of the cosines, region 0 over (1, 0.6, 0), region 1 over
    # (0, 0, 1): both -log(e / (e + ...))
    first = -math.log(math.e / (math.e + math.exp(0.6) + 1))
    second = -math.log(math.e / (math.e + 2))
    assert loss.item() == pytest.approx((first + second) / 2, abs=1e-6)
    # soft targets: cross-entropy of the soft target against the same softmax
    soft = region_category_contrast(regions, labels, CLASSES, 1.0, similarity_temperature=0.5)
    q = class_similarity_targets(CLASSES, labels, 0.5)
    log_p = (regions @ CLASSES.T).log_softmax(dim=-1)
    assert soft.item() == pytest.approx(-(q * log_p).sum(dim=1).mean().item(), abs=1e-6)


def test_rccl_is_lowest_for_regions_on_their_class():
    labels = torch.tensor([0, 1, 2])
    on_class = region_category_contrast(CLASSES.clone(), labels, CLASSES, 0.1, 0.1)
    shuffled = region_category_contrast(CLASSES[[2, 0, 1]], labels, CLASSES, 0.1, 0.1)
    assert on_class < shuffled


def test_rrcl_value_on_hand_built_embeddings():
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    labels = torch.tensor([0, 1, 0])
    loss = region_region_contrast(z, labels, temperature=1.0)
    # anchors 0 and 2 each have one positive (the other, cosine 1) and one negative (cosine 0);
    # anchor 1 has no positive and is left out
    expected = -math.log(math.e / (math.e + 1))
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_rrcl_is_lower_for_clustered_than_for_scattered_embeddings():
    generator = torch.Generator().manual_seed(1)
    labels = torch.arange(4).repeat_interleave(8)
    centres = F.normalize(torch.randn(4, 16, generator=generator), dim=-1)
    clustered = F.normalize(centres[labels] + 0.05 * torch.randn(32, 16, generator=generator), dim=-1)
    scattered = F.normalize(torch.randn(32, 16, generator=generator), dim=-1)
    assert region_region_contrast(clustered, labels, 0.1) < \
        region_region_contrast(scattered, labels, 0.1) - 1.0


def test_rrcl_bank_adds_positives_and_takes_no_gradient():
    z = torch.tensor([[1.0, 0.0]], requires_grad=True)
    bank = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    alone = region_region_contrast(z, torch.tensor([0]), 1.0)
    assert alone.item() == 0.0  # a single region has no positive
    loss = region_region_contrast(z, torch.tensor([0]), 1.0, bank, torch.tensor([0, 1]))
    assert loss.item() == pytest.approx(-math.log(math.e / (math.e + 1)), abs=1e-6)
    loss.backward()
    assert z.grad is not None and bank.grad is None


def test_no_foreground_gives_zero_loss_and_no_nan():
    embeddings = F.normalize(torch.randn(4, 3), dim=-1).requires_grad_()
    background = roi_results(embeddings, [3, 3, 3, 3], split=2)
    rccl = RegionCategoryContrast(temperature=0.1, similarity_temperature=0.1)
    rrcl = RegionRegionContrast(temperature=0.1, queue_length=8, embed_dim=3)
    losses = {**rccl(background, CLASSES, []), **rrcl(background, CLASSES, [])}
    assert set(losses) == {"loss_rccl", "loss_rrcl"}
    total = sum(losses.values())
    assert total.item() == 0.0 and not torch.isnan(total)
    total.backward()
    assert torch.equal(embeddings.grad, torch.zeros_like(embeddings))
    assert len(rrcl.queue) == 0
    empty = roi_results(torch.zeros(0, 3), [])
    assert rccl(empty, CLASSES, [])["loss_rccl"].item() == 0.0


def test_criteria_read_foreground_only_and_add_unseen_names():
    regions = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    results = roi_results(regions, [0, 1, 2])  # C = 2 training classes: the third is background
    seen = CLASSES[:2]
    rccl = RegionCategoryContrast(temperature=1.0, similarity_temperature=0.0)
    loss = rccl(results, seen, [])["loss_rccl"]
    assert loss.item() == pytest.approx(
        region_category_contrast(regions[:2], torch.tensor([0, 1]), seen, 1.0, 0.0).item())
    # the zero-shot protocol: the unseen embedding joins the denominator and the soft target
    with_unseen = rccl(results, seen, [], extra_embeddings=CLASSES[2:])["loss_rccl"]
    assert with_unseen.item() == pytest.approx(
        region_category_contrast(regions[:2], torch.tensor([0, 1]), CLASSES, 1.0, 0.0).item())


def test_queue_is_first_in_first_out_and_survives_a_state_dict_round_trip():
    queue = RegionEmbeddingQueue(3, embed_dim=4)
    assert len(queue) == 0
    queue.push(torch.eye(4)[:2], torch.tensor([0, 1]), num_classes=5)
    queue.push(torch.eye(4)[2:], torch.tensor([2, 3]), num_classes=5)  # overwrites the oldest
    embeddings, labels = queue.contents()
    assert sorted(labels.tolist()) == [1, 2, 3]
    assert torch.equal(embeddings[labels.argsort()], torch.eye(4)[1:])
    copy = RegionEmbeddingQueue(3, embed_dim=4)
    copy.load_state_dict(queue.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(copy.contents(), queue.contents()))
    copy.push(torch.eye(4)[:1], torch.tensor([0]), num_classes=4)  # another vocabulary: emptied
    assert copy.contents()[1].tolist() == [0]
    with pytest.raises(ValueError, match="4-d ones"):
        copy.push(torch.ones(1, 2), torch.tensor([0]), num_classes=4)
    with pytest.raises(ValueError, match=">= 0"):
        RegionEmbeddingQueue(-1, 4)


def test_rrcl_uses_the_queue_of_earlier_batches():
    rrcl = RegionRegionContrast(temperature=1.0, queue_length=4, embed_dim=2)
    first = roi_results(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), [0, 1])
    # neither region has a positive in the batch, and the queue is empty
    assert rrcl(first, CLASSES, [])["loss_rrcl"].item() == 0.0
    second = roi_results(torch.tensor([[1.0, 0.0]]), [0])
    # the queue now holds a positive (cosine 1) and a negative (cosine 0) of this region
    assert rrcl(second, CLASSES, [])["loss_rrcl"].item() == pytest.approx(
        -math.log(math.e / (math.e + 1)), abs=1e-6)
    assert len(rrcl.queue) == 3
    # a vocabulary of another size: the queue's labels mean other classes and are not read
    other = roi_results(torch.tensor([[1.0, 0.0]]), [0])
    assert rrcl(other, CLASSES[:2], [])["loss_rrcl"].item() == 0.0
    assert len(rrcl.queue) == 1


def test_config_builds_the_criteria_and_checks_the_protocol():
    cfg = get_cfg()
    cfg.MODEL.CONTRASTIVE.RCCL_TEMPERATURE = 0.2
    cfg.MODEL.CONTRASTIVE.QUEUE_LENGTH = 16
    rccl = build_from_registry(CRITERION_REGISTRY, "RegionCategoryContrast", cfg)
    rrcl = build_from_registry(CRITERION_REGISTRY, "RegionRegionContrast", cfg)
    assert rccl.temperature == 0.2 and rccl.extra_names == ()
    assert rrcl.queue.embeddings.shape == (16, 64)  # the toy CLIP's joint space
    cfg.MODEL.CONTRASTIVE.UNSEEN_NAMES = ("egg",)
    with pytest.raises(ConfigError, match="PROTOCOL zsd"):
        unseen_names(cfg)
    cfg.MODEL.CONTRASTIVE.PROTOCOL = "zsd"
    assert build_from_registry(CRITERION_REGISTRY, "RegionCategoryContrast", cfg).extra_names \
        == ("egg",)
    cfg.MODEL.CONTRASTIVE.UNSEEN_NAMES = ("Ice_Cube", "ice cube")
    with pytest.raises(ConfigError, match="names one class twice"):
        unseen_names(cfg)
    cfg.MODEL.CONTRASTIVE.PROTOCOL = "transductive"
    with pytest.raises(ConfigError, match="PROTOCOL must be one of"):
        unseen_names(cfg)
    cfg.MODEL.CONTRASTIVE.PROTOCOL = "zsd"
    cfg.MODEL.CONTRASTIVE.UNSEEN_NAMES = ()
    with pytest.raises(ConfigError, match="needs unseen names"):
        unseen_names(cfg)
    cfg.MODEL.CONTRASTIVE.RRCL_TEMPERATURE = 0.0
    with pytest.raises(ConfigError, match="RRCL_TEMPERATURE"):
        build_from_registry(CRITERION_REGISTRY, "RegionRegionContrast", cfg)
