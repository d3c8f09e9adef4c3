#!/usr/bin/env python
"""Benchmarks that print JSON. Methods are run side by side in one process, so ratios between
them are meaningful on a noisy machine.

    python tools/benchmark.py pseudo-boxes [--dataset-root datasets/toyworld] [--split val]
        [--num-images 500] [--methods dense,gradcam,softmax_gradcam,dense-value,...]

``pseudo-boxes``: every method generates pseudo boxes for the split's captions (box-free
candidates, the tool's defaults, the toy world's stuff names as background) and is scored against
the split's ground truth (:mod:`ovdet.evaluation.pseudo_boxes`). Besides the three methods:
Grad-CAM at the states entering the first block (``*-first-block``), and ablations of ``dense``:
``dense-value`` (value-trick patch embeddings instead of window region tokens), ``dense-region``
and ``dense-combined`` (the RMA region scorer alone or combined), ``dense-no-background`` (no
stuff names). Printed per method: precision, recall, pair recall (percent) and images per second.

    python tools/benchmark.py detector [--size 768] [--vocab 10] [--peer owlvit] [--repeats 3]
        [--threads 2] [--config-file configs/coco_ovd/ovrcnn_vitb16_fast.yaml] [KEY VALUE ...]

``detector``: seconds per image of boxes-and-masks inference (eval mode, ``torch.no_grad()``) of
OpenVocabRCNN on a randomly initialised ViT-B/16 CLIP (``configs/Base-OVRCNN.yaml`` with
``MODEL.CLIP.PRETRAINED ""``, ``INPUT.MIN_SIZE = INPUT.MAX_SIZE = --size``, and score threshold 0
so that every image yields ``DETECTIONS_PER_IMAGE`` boxes and masks whatever the random weights
score; ``--config-file`` and ``KEY VALUE`` pairs change the detector), on a square noise image of
``--size`` pixels, timed from the (H, W, 3) array to the pasted masks. The vocabulary is the COCO
OVD names, then generated ones (``category 66``, ...), one prompt per name (``a photo of a {}.``)
for both models; ovdet's is set once before timing (text embeddings computed, or read from ovdet's
disk cache), as at inference; the detection time does not depend on how many templates made the
embeddings. With ``--peer owlvit`` (needs ``pip install -e .[bench]``), a randomly initialised
OWL-ViT B/16 (``transformers``, patch 16, image size ``--size``) runs on the same image and vocabulary,
timed from the array to ``post_process_grounded_object_detection``; it encodes its text queries on
every call, as its pipeline does. After one warm-up each the two run interleaved (A B A B ...) for
``--repeats`` rounds; printed: median and all seconds per image, detections per image, ``ratio =
owlvit / ovdet`` (of the medians; also per round and the median of those, which a machine whose
speed drifts disturbs less), torch threads and the process's peak RSS (MiB; ``ovdet_peak_rss_mib``
is the peak before OWL-ViT was built, the other is the whole process).

    python tools/benchmark.py panoptic [--config-file configs/coco_panoptic/maskclip_vitb16.yaml]
        [--size 640] [--masks 100] [--repeats 3] [--threads 2] [--dataset NAME] [KEY VALUE ...]

``panoptic``: the two mask classifiers of the panoptic branch on the same masks, in one process.
Speed: on a square noise image of ``--size`` pixels and ``--masks`` random elliptic masks (on the
query head's mask grid), seconds of RMA mask tokens (the trunk pass they re-enter is shared with
the rest of the model and timed apart, ``trunk_s``) and of masked crops through the whole CLIP,
interleaved for ``--repeats`` rounds after a warm-up; ``ratio = crop / rma`` (medians) and
``ratio_with_trunk = crop / (rma + trunk)``. Weights are random (``MODEL.CLIP.PRETRAINED ""``)
unless ``MODEL.WEIGHTS`` is given. Accuracy (``--dataset``, needs ``MODEL.WEIGHTS``): PQ, SQ, RQ
(things, stuff, novel) on the dataset with every classifier on the same query-head proposals:
``rma`` (segments from the refined masks when there are RMA blocks), ``rma_head_masks`` (RMA
scores, the query head's masks) and ``crop``, each with its seconds per image.

    python tools/benchmark.py contrastive [--config-file configs/toyworld/contrastzsd.yaml]
        [--output-dir output/bench_contrastive] [--rows plain,rccl,rrcl,both]
        [--check-world DIR] [--scorings default,head] [KEY VALUE ...]

``contrastive``: the ContrastZSD ablation. Each row trains the config's detector on its own
schedule with ``MODEL.CRITERIA`` set to: no criterion (``plain``), ``RegionCategoryContrast``
(``rccl``), ``RegionRegionContrast`` (``rrcl``), or both (``both``; ``both-zsd``, not run by
default: both under ``MODEL.CONTRASTIVE.PROTOCOL zsd``), in ``--output-dir/<row>``
(a finished row's ``model_final.pth`` is reused, an interrupted one resumes), then evaluates it on
``toyworld_val`` and, with ``--check-world DIR`` (a toy world root holding
``annotations/instances_val.json`` and ``val/``, e.g. drawn with seed 3), on that world too, by
``TEST.PROTOCOL zsd`` (boxes only), under each ``--scorings``: ``default`` (the config's) and
``head`` (F-VLM's novel term: the head's region embeddings score novel names, the scoring the
contrastive losses can change). Printed per row, world and scoring (percent): base and novel
AP50 (generalized OVD: the GZSD pass's seen and unseen mAP50), ZSD mAP50 and Recall@100 at IoU
0.4/0.5/0.6, GZSD seen/unseen/HM mAP50 and Recall@100; and the main ones as a text table on
stderr.

    python tools/benchmark.py pseudo-finetune [--output-dir output/demo_pseudo]
        [--rows zero_boxes,pretrain,pbovd_finetune,ignore,soft,distill,mix,keep]
        [--check-world DIR]

``pseudo-finetune``: keeping pseudo-box knowledge through fine-tuning on human base boxes. Rows:
the detector trained on caption pseudo boxes alone (``zero_boxes``, ``ovrcnn_pseudo.yaml``), the
same on half the schedule (``pretrain``, ``pbovd_pretrain.yaml``: PB-OVD's stage 1, evaluated as
it is), the PB-OVD recipe (``pbovd_finetune``: then ``pbovd_finetune.yaml``), and
the novel-aware fine-tunings of the same pretrained detector on the same 750 iterations:
``configs/toyworld/pbovd_keep_<row>.yaml`` for ``ignore``, ``soft``, ``distill`` and ``mix``, and
``pbovd_keep.yaml`` (``keep``, the recipe ovdet recommends). Each row trains in
``--output-dir/<folder>`` (``zero_boxes``, ``pbovd_finetune``, ``pbovd_keep_<row>``,
``pbovd_keep``; the pretraining in ``pbovd_pretrain``) unless its ``model_final.pth`` is there and
newer than the pretrained weights it starts from (an interrupted run resumes), and is evaluated
with its config's scoring on ``toyworld_val`` (the run's own evaluation when newer than its
weights) and, with ``--check-world DIR``, on that world (boxes only). Printed per row and world
(percent): novel and base AP50, and whether the issue's target holds (novel >= 80 with base >=
94); the table also goes to stderr.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ovdet.clip.crops import crop_embeddings
from ovdet.clip.load import load_clip
from ovdet.clip import WeightsNotFoundError
from ovdet.config import ConfigError, get_cfg
from ovdet.data.catalog import DatasetCatalog, DatasetError, UnknownDatasetError
from ovdet.data.mapper import DatasetMapper
from ovdet.data.ovd_splits import COCO_OVD_BASE_IDS, COCO_OVD_NAMES
from ovdet.data.toyworld.categories import STUFF_CATEGORIES
from ovdet.engine.checkpoint import DetectorCheckpointer
from ovdet.engine.evaluation import inference_on_dataset
from ovdet.evaluation.pseudo_boxes import pseudo_box_quality
from ovdet.modeling.registry import build_model
from ovdet.pseudo.captions import group_coco_captions
from ovdet.pseudo.generator import PseudoBoxGenerator, PseudoBoxOptions
from ovdet.pseudo.maps import METHODS
from ovdet.pseudo.runner import generate_pseudo_boxes
from ovdet.pseudo.vocabulary import NounVocabulary


VARIANTS = {**{method: {"method": method} for method in METHODS},
            "gradcam-first-block": {"method": "gradcam", "gradcam_block": 0},
            "softmax_gradcam-first-block": {"method": "softmax_gradcam", "gradcam_block": 0},
            "dense-value": {"method": "dense", "source": "value"},
            "dense-region": {"method": "dense", "scorer": "region"},
            "dense-combined": {"method": "dense", "scorer": "combined"},
            "dense-no-background": {"method": "dense", "background": False}}


def pseudo_boxes(args: argparse.Namespace) -> dict:
    root = Path(args.dataset_root)
    annotations = root / "annotations"
    with open(annotations / f"instances_{args.split}.json") as f:
        ground_truth = json.load(f)
    with open(annotations / f"captions_{args.split}.json") as f:
        records, _ = group_coco_captions(json.load(f))
    records = records[:args.num_images]
    vocabulary = NounVocabulary(ground_truth["categories"])
    clip = load_clip(args.clip)
    background = [c.name for c in STUFF_CATEGORIES]
    results = {"images": len(records), "torch_threads": torch.get_num_threads(), "methods": {}}
    for method in args.methods.split(","):
        if method not in VARIANTS:
            raise SystemExit(f"error: unknown method {method!r}; choose from {list(VARIANTS)}")
        settings = dict(VARIANTS[method])
        names = background if settings.pop("background", True) else []
        generator = PseudoBoxGenerator(clip, vocabulary, PseudoBoxOptions(**settings), names)
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder) / "pseudo.json"
            started = time.perf_counter()
            generate_pseudo_boxes(generator, records, root / args.split, out,
                                  {"method": method}, ground_truth["categories"],
                                  batch_size=args.batch_size, show_progress=False)
            seconds = time.perf_counter() - started
            with open(out) as f:
                quality = pseudo_box_quality(json.load(f), ground_truth,
                                             [r["id"] for r in records])
        results["methods"][method] = {**quality["all"], "novel": quality.get("novel"),
                                      "images_per_second": round(len(records) / seconds, 1)}
    return results


DETECTOR_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "Base-OVRCNN.yaml"
PEERS = ("owlvit",)
QUERY_TEMPLATES = ("a photo of a {}.",)  # both models' one prompt per name
Detector = Callable[[np.ndarray], int]  # (H, W, 3) uint8 image -> number of detections


def vocabulary_names(count: int) -> list[str]:
    """``count`` class names: the COCO OVD names, then ``category 66``, ``category 67``, ..."""
    names = list(COCO_OVD_NAMES.values())[:count]
    return names + [f"category {index}" for index in range(len(names) + 1, count + 1)]


def build_ovdet(args: argparse.Namespace, names: list[str]) -> tuple[Detector, float]:
    """OpenVocabRCNN on a random ViT-B/16 (module doc) with ``names`` as its vocabulary (COCO OVD
    base names count as base). Returns the detector and the seconds setting the vocabulary took
    (text embeddings computed, or read from ovdet's disk cache)."""
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(["MODEL.CLIP.PRETRAINED", "", "INPUT.MIN_SIZE", str(args.size),
                         "INPUT.MAX_SIZE", str(args.size),
                         "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", *args.opts])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    model.set_base_names([COCO_OVD_NAMES[i] for i in COCO_OVD_BASE_IDS])
    started = time.perf_counter()
    model.set_vocabulary(names, QUERY_TEMPLATES)  # computed once (or read from the disk cache)
    text_seconds = time.perf_counter() - started
    mapper = DatasetMapper(cfg, False)

    def detect(image: np.ndarray) -> int:
        with torch.no_grad():
            return len(model([mapper.map_image(image)])[0]["instances"]["scores"])

    return detect, text_seconds


def owlvit_tokenizer():
    """transformers' ``CLIPTokenizer`` built from the CLIP BPE vocabulary that open_clip ships
    (nothing downloaded), 16 tokens per query as OWL-ViT's."""
    from open_clip.tokenizer import SimpleTokenizer
    from transformers import CLIPTokenizer

    bpe = SimpleTokenizer()
    special = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    vocab = {special.get(token, token): index for token, index in bpe.encoder.items()}
    merges = [pair for pair, _ in sorted(bpe.bpe_ranks.items(), key=lambda item: item[1])]
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=16)


def build_owlvit(size: int, names: list[str]) -> Detector:
    """A randomly initialised OWL-ViT B/16 at ``size`` px with its processor: every call
    tokenizes and encodes the queries (``QUERY_TEMPLATES``), then detects (threshold 0.1, the
    zero-shot pipeline's default)."""
    from transformers import (OwlViTConfig, OwlViTForObjectDetection, OwlViTImageProcessor,
                              OwlViTProcessor)

    square = {"height": size, "width": size}
    processor = OwlViTProcessor(image_processor=OwlViTImageProcessor(size=square, crop_size=square),
                                tokenizer=owlvit_tokenizer())
    torch.manual_seed(0)
    model = OwlViTForObjectDetection(OwlViTConfig(
        vision_config={"patch_size": 16, "image_size": size})).eval()
    queries = [template.format(name) for name in names for template in QUERY_TEMPLATES]

    def detect(image: np.ndarray) -> int:
        with torch.no_grad():
            inputs = processor(text=[queries], images=image, return_tensors="pt")
            results = processor.post_process_grounded_object_detection(
                model(**inputs), threshold=0.1, target_sizes=[image.shape[:2]])
        return len(results[0]["scores"])

    return detect


def peak_rss_mib() -> float:
    """The process's peak resident set size so far, MiB (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def timed(detect: Detector, image: np.ndarray) -> tuple[float, int]:
    """(seconds, detections) of one call."""
    started = time.perf_counter()
    count = detect(image)
    return time.perf_counter() - started, count


def check_detector_args(args: argparse.Namespace) -> None:
    """Exit with a one-line error for arguments the detector benchmark cannot run."""
    if args.size <= 0 or args.size % 16:
        sys.exit(f"error: --size must be a positive multiple of 16 (the patch size), got {args.size}")
    for name in ("vocab", "repeats", "threads"):
        if getattr(args, name) < 1:
            sys.exit(f"error: --{name} must be at least 1, got {getattr(args, name)}")
    if args.peer == "owlvit" and importlib.util.find_spec("transformers") is None:
        sys.exit("error: --peer owlvit needs transformers: pip install -e '.[bench]'")


def detector(args: argparse.Namespace) -> dict:
    """Seconds per image of ovdet (and ``args.peer``), interleaved (module doc)."""
    check_detector_args(args)
    torch.set_num_threads(args.threads)
    image = np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
    names = vocabulary_names(args.vocab)
    ovdet, text_seconds = build_ovdet(args, names)
    runners = {"ovdet": ovdet}
    ovdet(image)  # warm-up
    ovdet_peak = peak_rss_mib()
    if args.peer:
        runners[args.peer] = build_owlvit(args.size, names)
        runners[args.peer](image)
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    detections: dict[str, int] = {}
    for _ in range(args.repeats):
        for name, detect in runners.items():
            elapsed, detections[name] = timed(detect, image)
            seconds[name].append(round(elapsed, 3))
    result: dict = {"size": args.size, "vocab": args.vocab, "torch_threads": torch.get_num_threads(),
                    "repeats": args.repeats, "config_file": args.config_file,
                    "overrides": args.opts}
    for name, values in seconds.items():
        result[name] = {"median_s": round(statistics.median(values), 3), "seconds": values,
                        "detections": detections[name]}
    result["ovdet"]["set_vocabulary_once_s"] = round(text_seconds, 1)
    if args.peer:
        result["ratio"] = round(result[args.peer]["median_s"] / result["ovdet"]["median_s"], 3)
        rounds = [peer / own for peer, own in zip(seconds[args.peer], seconds["ovdet"])]
        result["ratio_per_round"] = [round(r, 3) for r in rounds]
        result["ratio_median_of_rounds"] = round(statistics.median(rounds), 3)
    result["ovdet_peak_rss_mib"] = ovdet_peak
    result["process_peak_rss_mib"] = peak_rss_mib()
    return result


PANOPTIC_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "coco_panoptic" / \
    "maskclip_vitb16.yaml"


def random_masks(count: int, grid: tuple[int, int], seed: int = 0) -> torch.Tensor:
    """(count, h, w) mask logits (+4 inside, -4 outside) of random ellipses, radii 5-40% of the
    grid's sides."""
    rng = np.random.default_rng(seed)
    h, w = grid
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    centres = rng.uniform(0, 1, (count, 2)) * (h, w)
    radii = rng.uniform(0.05, 0.4, (count, 2)) * (h, w)
    inside = (((ys[None] - centres[:, 0, None, None]) / radii[:, 0, None, None]) ** 2
              + ((xs[None] - centres[:, 1, None, None]) / radii[:, 1, None, None]) ** 2) <= 1
    return torch.from_numpy(np.where(inside, 4.0, -4.0).astype(np.float32))


def build_panoptic(args: argparse.Namespace):
    """The panoptic model of ``args.config_file`` and overrides (random CLIP unless
    MODEL.WEIGHTS), eval mode, and its config."""
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(["MODEL.CLIP.PRETRAINED", "", "INPUT.MIN_SIZE", str(args.size),
                         "INPUT.MAX_SIZE", str(args.size), *args.opts])
    if not cfg.MODEL.PANOPTIC_ON:
        raise ConfigError(f"{args.config_file} has no panoptic branch (MODEL.PANOPTIC_ON)")
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    if cfg.MODEL.WEIGHTS:
        DetectorCheckpointer(model, complete=True).load(cfg.MODEL.WEIGHTS)
    return model, cfg


def panoptic_speed(args: argparse.Namespace, model, cfg) -> dict:
    """Seconds of RMA and of crops on the same random masks (module doc)."""
    head = model.panoptic_head
    image = np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
    images = model.preprocess([DatasetMapper(cfg, False).map_image(image)])
    with torch.no_grad():
        trunk_output, _ = model.backbone(images.tensors)
    stride = head.query_head.mask_stride
    grid = (images.tensors.shape[-2] // stride, images.tensors.shape[-1] // stride)
    masks = random_masks(args.masks, grid).to(model.device)

    def synchronized(run: Callable[[], object]) -> Callable[[], None]:
        def call() -> None:
            run()
            if model.device.type == "cuda":
                torch.cuda.synchronize()
        return call

    runners = {name: synchronized(run) for name, run in {
        "rma": lambda: head.rma(model.trunk, trunk_output, [masks]),
        "crop": lambda: crop_embeddings(model.trunk, images.tensors, [masks > 0],
                                        size=head.crop_size),
        "trunk": lambda: model.backbone(images.tensors)}.items()}
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    with torch.no_grad():
        for run in runners.values():
            run()  # warm-up
        for _ in range(args.repeats):
            for name, run in runners.items():
                started = time.perf_counter()
                run()
                seconds[name].append(round(time.perf_counter() - started, 4))
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    return {"size": args.size, "masks": args.masks, "mask_grid": list(grid),
            "clip": cfg.MODEL.CLIP.NAME, "keep_last_blocks": cfg.MODEL.CLIP.KEEP_LAST_BLOCKS,
            "rma_blocks": list(cfg.MODEL.PANOPTIC.RMA_BLOCKS),
            "torch_threads": torch.get_num_threads(), "repeats": args.repeats,
            **{f"{name}_s": round(m, 4) for name, m in medians.items()},
            "seconds": seconds, "ratio": round(medians["crop"] / medians["rma"], 2),
            "ratio_with_trunk": round(medians["crop"] / (medians["rma"] + medians["trunk"]), 2)}


def panoptic_accuracy(args: argparse.Namespace, model, cfg) -> dict:
    """PQ of every classifier on the same proposals of ``args.dataset`` (module doc)."""
    if not cfg.MODEL.WEIGHTS:
        raise ConfigError("--dataset measures a trained model: add MODEL.WEIGHTS path/to/model.pth")
    head = model.panoptic_head
    variants = {"rma": ("rma", True), "crop": ("crop", True)}
    if len(head.rma.layers):
        variants["rma_head_masks"] = ("rma", False)
    results = {}
    with tempfile.TemporaryDirectory() as output:
        cfg = cfg.clone()
        cfg.defrost()
        cfg.OUTPUT_DIR = output
        images = len(DatasetCatalog.get(args.dataset))
        if images == 0:
            raise ConfigError(f"dataset {args.dataset} has no images")
        for name, (classifier, refined) in variants.items():
            head.classifier, head.use_refined_masks = classifier, refined
            started = time.perf_counter()
            metrics = inference_on_dataset(cfg, model, args.dataset)["panoptic"]
            results[name] = {**{k: round(v, 2) for k, v in metrics.items()},
                             "seconds_per_image": round((time.perf_counter() - started) / images, 4)}
    return {"dataset": args.dataset, "images": images, **results}


def panoptic(args: argparse.Namespace) -> dict:
    if args.size <= 0 or args.masks < 1 or args.repeats < 1 or args.threads < 1:
        sys.exit("error: --size, --masks, --repeats and --threads must be positive")
    torch.set_num_threads(args.threads)
    model, cfg = build_panoptic(args)
    result = {"config_file": args.config_file, "overrides": args.opts,
              "speed": panoptic_speed(args, model, cfg)}
    if args.dataset:
        result["accuracy"] = panoptic_accuracy(args, model, cfg)
    return result


CONTRASTIVE_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "toyworld" / "contrastzsd.yaml"
TRAIN_NET = Path(__file__).resolve().parent / "train_net.py"
RCCL, RRCL = "'RegionCategoryContrast',", "'RegionRegionContrast',"
# row -> config overrides; "both-zsd" is "both" under the zero-shot protocol (unseen names in
# RCCL's class-similarity distribution), not among the default rows
ABLATION_ROWS = {"plain": ("MODEL.CRITERIA", "()"), "rccl": ("MODEL.CRITERIA", f"({RCCL})"),
                 "rrcl": ("MODEL.CRITERIA", f"({RRCL})"),
                 "both": ("MODEL.CRITERIA", f"({RCCL}{RRCL})"),
                 "both-zsd": ("MODEL.CRITERIA", f"({RCCL}{RRCL})",
                              "MODEL.CONTRASTIVE.PROTOCOL", "zsd")}
DEFAULT_ROWS = ("plain", "rccl", "rrcl", "both")
# how detections are scored at evaluation: "default" is the config's (toy: novel classes by RPN
# objectness x CLIP, the head's classifier unused for them); "head" is F-VLM's novel term (the
# head's region embeddings against the novel names, x CLIP), where the contrastive losses act
SCORINGS = {"default": (), "head": ("MODEL.OPEN_VOCAB.NOVEL_PRIOR", "head",
                                    "MODEL.OPEN_VOCAB.BETA_NOVEL", "0.65",
                                    "MODEL.OPEN_VOCAB.NOVEL_BOXES", "regressed")}
TABLE_COLUMNS = (("novel_AP50", "novel AP50"), ("base_AP50", "base AP50"),
                 ("zsd_mAP50", "ZSD mAP50"), ("zsd_recall100@0.5", "ZSD R@100"),
                 ("gzsd_hm_mAP50", "GZSD HM"), ("gzsd_hm_recall100", "GZSD HM R@100"))


def train_net(args: list[str]) -> None:
    """Run tools/train_net.py in a child process (its own logging and output folder)."""
    completed = subprocess.run([sys.executable, str(TRAIN_NET), *args])
    if completed.returncode:
        raise SystemExit(f"error: tools/train_net.py {' '.join(args)} failed "
                         f"(exit code {completed.returncode})")


def evaluated(run: Path, name: str, scoring: str, dataset: list[str]) -> dict[str, float]:
    """One row's numbers (percent) on dataset ``name`` under ``scoring``: its final weights
    evaluated by ``TEST.PROTOCOL zsd`` (boxes only), unless an evaluation newer than the weights
    is on disk. ``novel_AP50`` / ``base_AP50`` (the generalized open-vocabulary metrics) are the
    GZSD pass's unseen / seen mAP50: the same detections (every class on every image), the same
    COCO AP at IoU 0.5 on the novel / base categories."""
    folder = run / "eval" / f"{name}_{scoring}"
    metrics_file, weights = folder / "eval_metrics.json", run / "model_final.pth"
    if not metrics_file.exists() or metrics_file.stat().st_mtime < weights.stat().st_mtime:
        train_net(["--config-file", str(run / "config.yaml"), "--eval-only", *dataset,
                   "MODEL.WEIGHTS", str(weights), "DATASETS.TEST", f"('{name}',)",
                   "TEST.PROTOCOL", "zsd", "MODEL.MASK_ON", "False", *SCORINGS[scoring],
                   "OUTPUT_DIR", str(folder)])
    with open(metrics_file) as f:
        metrics = json.load(f)[name]
    cells = {"novel_AP50": metrics["gzsd"]["unseen_mAP50"],
             "base_AP50": metrics["gzsd"]["seen_mAP50"]}
    cells.update({f"zsd_{k}": v for k, v in metrics["zsd"].items()})
    cells.update({f"gzsd_{k}": v for k, v in metrics["gzsd"].items()})
    # eval_metrics.json writes NaN (no ground truth behind a value) as null
    return {k: float("nan") if v is None else round(v, 2) for k, v in cells.items()}


def contrastive(args: argparse.Namespace) -> dict:
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ABLATION_ROWS]
    if unknown or not rows:
        raise SystemExit(f"error: --rows takes names from {list(ABLATION_ROWS)}, got {args.rows!r}")
    scorings = [r.strip() for r in args.scorings.split(",") if r.strip()]
    if not scorings or any(s not in SCORINGS for s in scorings):
        raise SystemExit(f"error: --scorings takes names from {list(SCORINGS)}, got "
                         f"{args.scorings!r}")
    if not Path(args.config_file).is_file():
        raise SystemExit(f"error: --config-file {args.config_file} not found")
    worlds = check_world_dataset(args.check_world)
    results: dict = {"config": str(args.config_file), "rows": {}}
    for row in rows:
        run = Path(args.output_dir) / row
        if not (run / "model_final.pth").exists():
            resume = ["--resume"] if (run / "last_checkpoint").exists() else []
            train_net(["--config-file", str(args.config_file), *resume, *ABLATION_ROWS[row],
                       "OUTPUT_DIR", str(run), *args.opts])
        results["rows"][row] = {f"{name} {scoring}": evaluated(run, name, scoring, dataset)
                                for scoring in scorings for name, dataset in worlds.items()}
    print_table(results["rows"])
    return results


TOY_CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "toyworld"
PRETRAIN = ("pbovd_pretrain.yaml", "pbovd_pretrain")  # PB-OVD's stage 1, 750 iterations
# row -> (config, run folder, starts from the pseudo-box pretrained weights)
FINETUNE_ROWS = {
    "zero_boxes": ("ovrcnn_pseudo.yaml", "zero_boxes", False),
    "pretrain": PRETRAIN + (False,),
    "pbovd_finetune": ("pbovd_finetune.yaml", "pbovd_finetune", True),
    **{row: (f"pbovd_keep_{row}.yaml", f"pbovd_keep_{row}", True)
       for row in ("ignore", "soft", "distill", "mix")},
    "keep": ("pbovd_keep.yaml", "pbovd_keep", True),
}
TARGET = {"novel_AP50": 80.0, "base_AP50": 94.0}  # both at once, on val


def newer(path: Path, than: Path) -> bool:
    """Whether ``path`` exists and was written after ``than`` (which exists)."""
    return path.exists() and path.stat().st_mtime >= than.stat().st_mtime


def trained(config: Path, run: Path, start: Path | None, opts: list[str]) -> Path:
    """``run/model_final.pth``, trained from ``config`` (from the weights ``start``) unless it is
    there and newer than ``start``; an interrupted run (``last_checkpoint``) resumes."""
    final = run / "model_final.pth"
    if final.exists() and (start is None or newer(final, start)):
        return final
    last = run / "last_checkpoint"
    resume = ["--resume"] if not final.exists() and (
        newer(last, start) if start is not None else last.exists()) else []
    weights = ["MODEL.WEIGHTS", str(start)] if start is not None else []
    train_net(["--config-file", str(config), *resume, *weights, "OUTPUT_DIR", str(run), *opts])
    return final


def box_ap50(run: Path, name: str, dataset: list[str]) -> dict[str, float]:
    """Novel and base box AP50 (percent) of ``run``'s final weights on dataset ``name``: the
    run's own evaluation when it holds ``name`` and is newer than the weights, else an
    ``--eval-only`` pass (boxes only) into ``run/eval/<name>``."""
    weights = run / "model_final.pth"
    for metrics_file in (run / "eval_metrics.json", run / "eval" / name / "eval_metrics.json"):
        if newer(metrics_file, weights):
            metrics = json.loads(metrics_file.read_text())
            if name in metrics:
                break
    else:
        metrics_file = run / "eval" / name / "eval_metrics.json"
        train_net(["--config-file", str(run / "config.yaml"), "--eval-only", *dataset,
                   "MODEL.WEIGHTS", str(weights), "DATASETS.TEST", f"('{name}',)",
                   "MODEL.MASK_ON", "False", "OUTPUT_DIR", str(metrics_file.parent)])
        metrics = json.loads(metrics_file.read_text())
    boxes = metrics[name]["bbox"]
    cells = {"novel_AP50": boxes["AP50_novel"], "base_AP50": boxes["AP50_base"]}
    return {k: float("nan") if v is None else round(v, 2) for k, v in cells.items()}


def check_world_dataset(root: str | None) -> dict[str, list[str]]:
    """``{"toyworld_val": [], "toyworld_val_check": [--dataset args]}`` (the second with a
    ``--check-world`` root only), or SystemExit when that root lacks the val split."""
    worlds: dict[str, list[str]] = {"toyworld_val": []}
    if root:
        json_file, images = Path(root) / "annotations" / "instances_val.json", Path(root) / "val"
        if not json_file.is_file() or not images.is_dir():
            raise SystemExit(f"error: --check-world {root} needs annotations/instances_val.json "
                             "and val/ (python -m ovdet.data.toyworld --out DIR --split val "
                             "--seed 3)")
        worlds["toyworld_val_check"] = ["--dataset", f"toyworld_val_check={json_file}:{images}"]
    return worlds


def pseudo_finetune(args: argparse.Namespace) -> dict:
    """The ``pseudo-finetune`` table (module doc): trains what is missing or stale, evaluates
    every row on every world, prints the text table on stderr and returns the JSON."""
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in FINETUNE_ROWS]
    if unknown or not rows:
        raise SystemExit(f"error: --rows takes names from {list(FINETUNE_ROWS)}, got {args.rows!r}")
    worlds = check_world_dataset(args.check_world)
    output = Path(args.output_dir)
    pretrained = None
    results: dict = {"target": TARGET, "rows": {}}
    for row in rows:
        config, folder, from_pretrained = FINETUNE_ROWS[row]
        if from_pretrained and pretrained is None:
            pretrained = trained(TOY_CONFIGS / PRETRAIN[0], output / PRETRAIN[1], None, args.opts)
        run = output / folder
        trained(TOY_CONFIGS / config, run, pretrained if from_pretrained else None, args.opts)
        cells = {name: box_ap50(run, name, dataset) for name, dataset in worlds.items()}
        val = cells["toyworld_val"]
        cells["meets_target"] = all(val[key] >= bound for key, bound in TARGET.items())
        results["rows"][row] = {"config": f"configs/toyworld/{config}", "run": str(run), **cells}
    print_finetune_table(results["rows"], list(worlds))
    return results


def print_finetune_table(rows: dict[str, dict], worlds: list[str]) -> None:
    """The strategies as a text table on stderr: novel / base AP50 per world, target met."""
    header = ["row", *(f"{world} {kind}" for world in worlds for kind in ("novel", "base")),
              "target"]
    print_aligned([header] + [[row, *(f"{cells[world][key]:.1f}" for world in worlds
                                      for key in ("novel_AP50", "base_AP50")),
                               "met" if cells["meets_target"] else "-"]
                              for row, cells in rows.items()])


def print_aligned(lines: list[list[str]]) -> None:
    """Rows of cells on stderr, each column padded to its widest cell."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for line in lines:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)), file=sys.stderr)


def print_table(rows: dict[str, dict[str, dict[str, float]]]) -> None:
    """The ablation as a text table on stderr: one line per row and world."""
    header = ["row", "world, scoring", *(title for _, title in TABLE_COLUMNS)]
    print_aligned([header] + [[row, world, *(f"{cells[key]:.1f}" for key, _ in TABLE_COLUMNS)]
                              for row, worlds in rows.items() for world, cells in worlds.items()])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    pseudo = commands.add_parser("pseudo-boxes", help="pseudo-box precision/recall/speed")
    pseudo.add_argument("--dataset-root", default="datasets/toyworld")
    pseudo.add_argument("--split", default="val")
    pseudo.add_argument("--num-images", type=int, default=500)
    pseudo.add_argument("--methods", default=",".join(VARIANTS))
    pseudo.add_argument("--batch-size", type=int, default=32)
    pseudo.add_argument("--clip", default="toyworld")
    bench = commands.add_parser("detector", help="seconds per image of detection inference")
    bench.add_argument("--size", type=int, default=768)
    bench.add_argument("--vocab", type=int, default=10)
    bench.add_argument("--peer", choices=PEERS)
    bench.add_argument("--repeats", type=int, default=3)
    bench.add_argument("--threads", type=int, default=2)
    bench.add_argument("--config-file", default=str(DETECTOR_CONFIG))
    bench.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    pan = commands.add_parser("panoptic", help="RMA against crops: seconds and PQ")
    pan.add_argument("--config-file", default=str(PANOPTIC_CONFIG))
    pan.add_argument("--size", type=int, default=640)
    pan.add_argument("--masks", type=int, default=100)
    pan.add_argument("--repeats", type=int, default=3)
    pan.add_argument("--threads", type=int, default=2)
    pan.add_argument("--dataset", help="also PQ of each classifier on this registered dataset")
    pan.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    ablation = commands.add_parser("contrastive", help="ContrastZSD ablation: OVD, ZSD, GZSD")
    ablation.add_argument("--config-file", default=str(CONTRASTIVE_CONFIG))
    ablation.add_argument("--output-dir", default="output/bench_contrastive")
    ablation.add_argument("--rows", default=",".join(DEFAULT_ROWS),
                          help=f"comma-separated, from {', '.join(ABLATION_ROWS)}")
    ablation.add_argument("--check-world", help="a second toy world root (val split) to check on")
    ablation.add_argument("--scorings", default=",".join(SCORINGS),
                          help=f"comma-separated, from {', '.join(SCORINGS)}")
    ablation.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    keep = commands.add_parser("pseudo-finetune",
                               help="fine-tuning strategies that keep pseudo-box knowledge")
    keep.add_argument("--output-dir", default="output/demo_pseudo")
    keep.add_argument("--rows", default=",".join(FINETUNE_ROWS),
                      help=f"comma-separated, from {', '.join(FINETUNE_ROWS)}")
    keep.add_argument("--check-world", help="a second toy world root (val split) to check on")
    keep.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    args = parser.parse_args(argv)
    if args.command == "pseudo-finetune":
        print(json.dumps(pseudo_finetune(args), indent=2))
        return
    if args.command == "contrastive":
        print(json.dumps(contrastive(args), indent=2))
        return
    if args.command == "panoptic":
        try:
            print(json.dumps(panoptic(args), indent=2))
        except (ConfigError, WeightsNotFoundError, FileNotFoundError, UnknownDatasetError,
                DatasetError) as error:
            sys.exit(f"error: {error}")
        return
    if args.command == "detector":
        try:
            print(json.dumps(detector(args), indent=2))
        except (ConfigError, WeightsNotFoundError, FileNotFoundError) as error:
            sys.exit(f"error: {error}")
        return
    try:
        print(json.dumps(pseudo_boxes(args), indent=2))
    except FileNotFoundError as error:
        sys.exit(f"error: {error} (make the toy world first: make toyworld)")


if __name__ == "__main__":
    main()
