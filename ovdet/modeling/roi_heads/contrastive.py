"""Semantics-guided contrastive losses on region embeddings (ContrastZSD, Yan et al. 2022).

Two criteria (``CRITERION_REGISTRY``, switched on by naming them in ``MODEL.CRITERIA`` and
weighted by ``MODEL.LOSS_WEIGHTS.loss_rccl`` / ``loss_rrcl``) read the RoI heads' training
results: the sampled proposals' labels (``y_i`` in [0, C], C = background) and their unit-norm
region embeddings ``z_i`` (R, D), the same embeddings the cosine classifier scores. Only the
foreground regions (``y_i < C``) enter either loss.

**Region-category contrast** (:class:`RegionCategoryContrast`, ``loss_rccl``). With the class
semantic embeddings ``s_1..s_K`` (unit norm; the classifier's own, from templates or learned
prompts) the class-similarity distribution of class ``c`` is::

    q_c(j) = exp(cos(s_c, s_j) / tau_s) / sum_k exp(cos(s_c, s_k) / tau_s)

(one-hot at ``c`` as ``tau_s`` -> 0), and the loss is InfoNCE against that soft target::

    p_i(j)  = exp(z_i . s_j / tau) / sum_k exp(z_i . s_k / tau)
    L_rccl  = -1/N sum_i sum_j q_{y_i}(j) log p_i(j)        (N foreground regions)

The K classes are the training vocabulary (the open-vocabulary protocol, the default: unseen
names never enter) or, under the zero-shot protocol (``MODEL.CONTRASTIVE.PROTOCOL zsd``, the
paper's setting), the training vocabulary followed by the unseen names, which then enter both the
soft target and the denominator (the regions are never labelled with them).

**Region-region contrast** (:class:`RegionRegionContrast`, ``loss_rrcl``): the supervised
contrastive loss (Khosla et al. 2020, "L_out") among foreground regions. For an anchor ``i`` of
the batch, ``A(i)`` is every other region of the batch and of the memory queue and ``P(i)`` those
of ``A(i)`` with label ``y_i``::

    L_i     = -1/|P(i)| sum_{p in P(i)} log( exp(z_i . z_p / tau) / sum_{a in A(i)} exp(z_i . z_a / tau) )
    L_rrcl  = mean of L_i over the anchors with |P(i)| > 0

The queue (``MODEL.CONTRASTIVE.QUEUE_LENGTH`` regions, 0 = none) holds detached embeddings and
labels of recent batches, first in first out, so that small batches still see positives and
negatives; it is saved with the detector (buffers), so a resumed run continues with it. Labels
index the training vocabulary; the queue empties when that vocabulary's size changes.

Both losses are 0 (with a gradient path, no NaN) for a batch without foreground regions.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ...clip.load import clip_embed_dim
from ...config import CfgNode, ConfigError, configurable
from ...utils.names import normalize_class_name
from ..registry import CRITERION_REGISTRY
from ..vocabulary import check_class_names

PROTOCOLS = ("ovd", "zsd")


def class_similarity_targets(class_embeddings: torch.Tensor, labels: torch.Tensor,
                             temperature: float) -> torch.Tensor:
    """(K, D) unit-norm class embeddings, (N,) labels in [0, K) -> (N, K) soft targets
    ``q_{y}(j) = softmax_j(cos(s_y, s_j) / temperature)`` (module doc); ``temperature`` 0 gives
    the one-hot targets."""
    if temperature < 0:
        raise ValueError(f"the similarity temperature must be >= 0, got {temperature}")
    num_classes = class_embeddings.shape[0]
    if temperature == 0:
        return F.one_hot(labels, num_classes).to(class_embeddings.dtype)
    similarity = class_embeddings[labels] @ class_embeddings.T
    return (similarity / temperature).softmax(dim=-1)


def region_category_contrast(embeddings: torch.Tensor, labels: torch.Tensor,
                             class_embeddings: torch.Tensor, temperature: float,
                             similarity_temperature: float) -> torch.Tensor:
    """``L_rccl`` (module doc) of (N, D) unit-norm foreground region embeddings with (N,) labels
    in [0, K) against (K, D) unit-norm class embeddings; 0 when N = 0."""
    if not len(labels):
        return embeddings.sum() * 0.0
    targets = class_similarity_targets(class_embeddings.detach(), labels, similarity_temperature)
    log_p = (embeddings @ class_embeddings.T / temperature).log_softmax(dim=-1)
    return -(targets * log_p).sum(dim=-1).mean()


def region_region_contrast(embeddings: torch.Tensor, labels: torch.Tensor, temperature: float,
                           bank: torch.Tensor | None = None,
                           bank_labels: torch.Tensor | None = None) -> torch.Tensor:
    """``L_rrcl`` (module doc): (N, D) unit-norm anchor embeddings with (N,) labels, contrasted
    with each other and with an optional (M, D) ``bank`` of (M,) ``bank_labels`` (no gradient
    flows into the bank). 0 when no anchor has a positive."""
    others, other_labels = embeddings, labels
    if bank is not None and len(bank):
        others = torch.cat([embeddings, bank.detach()])
        other_labels = torch.cat([labels, bank_labels])
    logits = embeddings @ others.T / temperature
    not_self = ~torch.eye(*logits.shape, dtype=torch.bool, device=logits.device)
    positive = (labels[:, None] == other_labels[None, :]) & not_self
    has_positive = positive.any(dim=1)
    if not has_positive.any():
        return embeddings.sum() * 0.0
    log_p = logits - torch.logsumexp(logits.masked_fill(~not_self, float("-inf")), dim=1,
                                     keepdim=True)
    per_anchor = -(log_p * positive).sum(dim=1) / positive.sum(dim=1).clamp(min=1)
    return per_anchor[has_positive].mean()


def foreground(roi_results: list[dict[str, torch.Tensor]], num_classes: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """The RoI training results' foreground regions: ((N, D) embeddings, (N,) labels < C)."""
    embeddings = torch.cat([r["region_embeddings"] for r in roi_results])
    labels = torch.cat([r["labels"] for r in roi_results])
    keep = labels < num_classes
    return embeddings[keep], labels[keep]


class RegionEmbeddingQueue(nn.Module):
    """First-in-first-out memory of ``length`` (D,) region embeddings and their labels (buffers,
    saved with the model). ``contents()`` -> ((M, D), (M,)) of the filled slots."""

    def __init__(self, length: int, embed_dim: int) -> None:
        super().__init__()
        if length < 0:
            raise ValueError(f"the queue length must be >= 0, got {length}")
        self.register_buffer("embeddings", torch.zeros(length, embed_dim))
        self.register_buffer("labels", torch.full((length,), -1, dtype=torch.int64))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.int64))
        self.register_buffer("num_classes", torch.zeros((), dtype=torch.int64))

    def __len__(self) -> int:
        return int((self.labels >= 0).sum())

    def contents(self) -> tuple[torch.Tensor, torch.Tensor]:
        filled = self.labels >= 0
        return self.embeddings[filled], self.labels[filled]

    @torch.no_grad()
    def push(self, embeddings: torch.Tensor, labels: torch.Tensor, num_classes: int) -> None:
        """Add (N, D) embeddings with (N,) labels of a ``num_classes`` vocabulary, overwriting
        the oldest; a vocabulary of another size first empties the queue."""
        length = len(self.labels)
        if length == 0:
            return
        if embeddings.shape[1] != self.embeddings.shape[1]:
            raise ValueError(f"region embeddings are {embeddings.shape[1]}-d but the queue holds "
                             f"{self.embeddings.shape[1]}-d ones")
        if int(self.num_classes) != num_classes:
            self.labels.fill_(-1)
            self.pointer.zero_()
            self.num_classes.fill_(num_classes)
        embeddings, labels = embeddings[-length:], labels[-length:]
        slots = (self.pointer + torch.arange(len(labels), device=labels.device)) % length
        self.embeddings[slots] = embeddings.detach().to(self.embeddings.dtype)
        self.labels[slots] = labels
        self.pointer.copy_((self.pointer + len(labels)) % length)


@CRITERION_REGISTRY.register()
class RegionCategoryContrast(nn.Module):
    """``loss_rccl``: region embeddings against the class semantic embeddings with soft,
    similarity-guided targets (module doc).

    Called as ``criterion(roi_results, class_embeddings (C, D), targets, extra_embeddings=None)``;
    ``extra_names``: the unseen names whose embeddings (from the vocabulary's source) the
    meta-architecture passes as ``extra_embeddings`` (U, D) under the zero-shot protocol (empty
    under the open-vocabulary one).

    Args:
        temperature: tau of the InfoNCE logits.
        similarity_temperature: tau_s of the class-similarity distribution (0: one-hot).
        extra_names: unseen names that enter the distribution (zero-shot protocol only).
    """

    @configurable
    def __init__(self, *, temperature: float = 0.1, similarity_temperature: float = 0.05,
                 extra_names: tuple[str, ...] = ()) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"MODEL.CONTRASTIVE.RCCL_TEMPERATURE must be > 0, got {temperature}")
        if similarity_temperature < 0:
            raise ValueError("MODEL.CONTRASTIVE.SIMILARITY_TEMPERATURE must be >= 0, got "
                             f"{similarity_temperature}")
        self.temperature = temperature
        self.similarity_temperature = similarity_temperature
        self.extra_names = tuple(extra_names)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        contrastive = cfg.MODEL.CONTRASTIVE
        return {"temperature": contrastive.RCCL_TEMPERATURE,
                "similarity_temperature": contrastive.SIMILARITY_TEMPERATURE,
                "extra_names": unseen_names(cfg)}

    def forward(self, roi_results: list[dict[str, torch.Tensor]], class_embeddings: torch.Tensor,
                targets: list[dict], extra_embeddings: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
        embeddings, labels = foreground(roi_results, class_embeddings.shape[0])
        semantic = class_embeddings if extra_embeddings is None else torch.cat(
            [class_embeddings, extra_embeddings])
        return {"loss_rccl": region_category_contrast(
            embeddings, labels, semantic, self.temperature, self.similarity_temperature)}


@CRITERION_REGISTRY.register()
class RegionRegionContrast(nn.Module):
    """``loss_rrcl``: supervised contrast among the batch's foreground region embeddings and a
    memory queue of recent ones (module doc).

    Args:
        temperature: tau of the similarities.
        queue_length: regions kept from earlier batches (0: the batch alone).
        embed_dim: D, the width of the region embeddings (CLIP's joint space).
    """

    @configurable
    def __init__(self, *, temperature: float = 0.1, queue_length: int = 1024,
                 embed_dim: int = 512) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"MODEL.CONTRASTIVE.RRCL_TEMPERATURE must be > 0, got {temperature}")
        if queue_length < 0:
            raise ValueError(f"MODEL.CONTRASTIVE.QUEUE_LENGTH must be >= 0, got {queue_length}")
        self.temperature = temperature
        self.queue = RegionEmbeddingQueue(queue_length, embed_dim)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        return {"temperature": cfg.MODEL.CONTRASTIVE.RRCL_TEMPERATURE,
                "queue_length": cfg.MODEL.CONTRASTIVE.QUEUE_LENGTH,
                "embed_dim": clip_embed_dim(cfg.MODEL.CLIP.NAME)}

    def forward(self, roi_results: list[dict[str, torch.Tensor]], class_embeddings: torch.Tensor,
                targets: list[dict]) -> dict[str, torch.Tensor]:
        num_classes = class_embeddings.shape[0]
        embeddings, labels = foreground(roi_results, num_classes)
        bank, bank_labels = self.queue.contents()
        if int(self.queue.num_classes) != num_classes:  # another vocabulary's: not used
            bank, bank_labels = bank[:0], bank_labels[:0]
        loss = region_region_contrast(embeddings, labels, self.temperature, bank, bank_labels)
        self.queue.push(*gathered(embeddings.detach(), labels), num_classes)
        return {"loss_rrcl": loss}


def gathered(embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every rank's (N_r, D) embeddings and (N_r,) labels, concatenated in rank order, when
    training is distributed (so that every rank's queue holds the same regions, as DDP's buffer
    broadcast expects); the inputs themselves otherwise."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return embeddings, labels
    world = dist.get_world_size()
    count = torch.tensor([len(labels)], device=labels.device)
    counts = [torch.zeros_like(count) for _ in range(world)]
    dist.all_gather(counts, count)
    largest = int(max(c.item() for c in counts))
    padded_embeddings = embeddings.new_zeros(largest, embeddings.shape[1])
    padded_embeddings[:len(labels)] = embeddings
    padded_labels = labels.new_full((largest,), -1)
    padded_labels[:len(labels)] = labels
    all_embeddings = [torch.empty_like(padded_embeddings) for _ in range(world)]
    all_labels = [torch.empty_like(padded_labels) for _ in range(world)]
    dist.all_gather(all_embeddings, padded_embeddings)
    dist.all_gather(all_labels, padded_labels)
    sizes = [int(c.item()) for c in counts]
    return (torch.cat([e[:n] for e, n in zip(all_embeddings, sizes)]),
            torch.cat([y[:n] for y, n in zip(all_labels, sizes)]))


def unseen_names(cfg: CfgNode) -> tuple[str, ...]:
    """The names that enter the class-similarity distribution besides the training vocabulary:
    none under the open-vocabulary protocol; under the zero-shot one
    ``MODEL.CONTRASTIVE.UNSEEN_NAMES``, or when that is empty the novel classes of the datasets of
    ``DATASETS.TEST``."""
    contrastive = cfg.MODEL.CONTRASTIVE
    if contrastive.PROTOCOL not in PROTOCOLS:
        raise ConfigError(f"MODEL.CONTRASTIVE.PROTOCOL must be one of {PROTOCOLS}, got "
                          f"{contrastive.PROTOCOL!r}")
    if contrastive.PROTOCOL == "ovd":
        if contrastive.UNSEEN_NAMES:
            raise ConfigError("MODEL.CONTRASTIVE.UNSEEN_NAMES is read under the zero-shot "
                              "protocol only: set MODEL.CONTRASTIVE.PROTOCOL zsd (unseen names "
                              "never enter training under the open-vocabulary protocol)")
        return ()
    if contrastive.UNSEEN_NAMES:
        try:
            return tuple(check_class_names(list(contrastive.UNSEEN_NAMES),
                                           "MODEL.CONTRASTIVE.UNSEEN_NAMES"))
        except ValueError as error:
            raise ConfigError(str(error)) from None
    from ...data.catalog import DatasetCatalog

    names: dict[str, str] = {}  # normal form -> the first spelling
    for dataset in cfg.DATASETS.TEST:
        for name in DatasetCatalog.metadata(dataset).novel_classes:
            names.setdefault(normalize_class_name(name), name)
    if not names:
        raise ConfigError("MODEL.CONTRASTIVE.PROTOCOL zsd needs unseen names: set "
                          "MODEL.CONTRASTIVE.UNSEEN_NAMES, or DATASETS.TEST to datasets with "
                          "novel classes")
    return tuple(names.values())
