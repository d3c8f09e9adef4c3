"""Self-training's labelling side: OpenVocabRCNN.score_proposals, DetectorLabeller (top-scoring
candidate per labelled category) and tools/self_train_labels.py."""
import json
import os

import numpy as np
import pytest
import torch

from conftest import NAMES, TINY_DETECTOR
from ovdet import OVPredictor
from ovdet.config import get_cfg
from ovdet.engine.checkpoint import DetectorCheckpointer
from ovdet.modeling.registry import build_model
from ovdet.pseudo.runner import parts_dir, report_path
from ovdet.pseudo.self_training import DetectorLabeller, read_tag_records
from ovdet.pseudo.vocabulary import NounVocabulary
from test_detector import inference_batch
from test_train_net import load_tool

# COCO ids that are not 1..N, so that a row index never passes for an id
VOCABULARY = NounVocabulary([{"id": 3, "name": "tomato"}, {"id": 7, "name": "egg"},
                             {"id": 11, "name": "olive"}])
BOXES = torch.tensor([[0.0, 0, 10, 10], [20, 0, 30, 10], [40, 5, 60, 25], [70, 0, 70, 9]])
SCORES = torch.tensor([[0.90, 0.10, 0.20],   # rows: candidates; columns: tomato, egg, olive
                       [0.30, 0.80, 0.95],
                       [0.50, 0.85, 0.10],
                       [0.99, 0.20, 0.10]])  # the best tomato score, on a box without width


class StubDetector:
    """An OVPredictor look-alike whose model scores the candidates given per image: the image's
    pixel value picks its entry of ``outputs``."""

    batch_size = 2

    def __init__(self, outputs):
        self.outputs, self.calls, self.vocabulary = outputs, [], None
        self.model, self.mapper = self, self

    def set_vocabulary(self, names):
        self.vocabulary = list(names)

    def map_image(self, image):
        return {"key": int(image[0, 0, 0])}

    def score_proposals(self, inputs):
        self.calls.append([x["key"] for x in inputs])
        return [self.outputs[x["key"]] for x in inputs]


def image(key):
    return np.full((30, 80, 3), key, np.uint8)


def boxes_of(result):
    return [(b.category_id, b.box, pytest.approx(b.score)) for b in result.boxes]


def test_labeller_picks_the_top_scoring_candidate_per_labelled_category():
    empty = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0, 3)}
    detector = StubDetector({1: {"boxes": BOXES, "scores": SCORES}, 2: empty})
    labeller = DetectorLabeller(detector, VOCABULARY)
    assert detector.vocabulary == ["tomato", "egg", "olive"]
    results = labeller([image(1), image(1), image(2), image(1)],
                       [["Two eggs and a tomato."], ["a sofa"], ["an olive"], ["tomatoes"]])
    # egg first (first mention); the 0.99 tomato candidate has no width: the 0.90 one wins;
    # olive (0.95 on candidate 1) is not labelled, so it gets no box
    assert boxes_of(results[0]) == [(7, (40.0, 5.0, 60.0, 25.0), 0.85),
                                    (3, (0.0, 0.0, 10.0, 10.0), 0.90)]
    assert results[1].boxes == [] and results[1].problems == ["no vocabulary noun in the captions"]
    assert results[2].boxes == [] and results[2].problems == ["no proposal"]
    assert boxes_of(results[3]) == [(3, (0.0, 0.0, 10.0, 10.0), 0.90)]
    assert detector.calls == [[1, 2], [1]]  # batches of 2 of the images with a labelled category


def test_labeller_with_tags_and_per_class_boxes():
    per_class = BOXES[:, None].repeat(1, 3, 1)
    per_class[1, 2] = torch.tensor([1.0, 2, 3, 4])  # candidate 1's own olive box
    detector = StubDetector({1: {"boxes": BOXES, "scores": SCORES},
                             2: {"boxes": per_class, "scores": SCORES}})
    labeller = DetectorLabeller(detector, VOCABULARY, "pos_category_ids", batch_size=8)
    results = labeller([image(1), image(1), image(2)], [[11, 99, 3, 11], [], [11]])
    assert boxes_of(results[0]) == [(11, (20.0, 0.0, 30.0, 10.0), 0.95),
                                    (3, (0.0, 0.0, 10.0, 10.0), 0.90)]
    assert results[0].problems == ["tag ids [99] are no vocabulary category"]
    assert results[1].boxes == [] and results[1].problems == ["no labelled category"]
    assert boxes_of(results[2]) == [(11, (1.0, 2.0, 3.0, 4.0), 0.95)]
    assert detector.calls == [[1, 2]]
    with pytest.raises(ValueError, match="labels must be one of"):
        DetectorLabeller(detector, VOCABULARY, "tags")


@pytest.mark.parametrize("novel_boxes", ["regressed", "proposals"])
def test_score_proposals_agrees_with_inference(tiny_cfg, novel_boxes):
    tiny_cfg.merge_from_list(["MODEL.OPEN_VOCAB.NOVEL_BOXES", novel_boxes])
    torch.manual_seed(0)
    model = build_model(tiny_cfg)
    model.set_training_vocabulary(NAMES)
    model.set_vocabulary(NAMES + ["banana"])  # a novel class: the ensemble's other weight
    model.eval()
    batch = inference_batch()
    batch[0]["height"], batch[0]["width"] = 128, 96  # resized from 96x128
    with torch.no_grad():
        outputs = model(batch)
        proposals = model.propose(batch)
    scored = model.score_proposals(batch)
    compared = 0
    for output, candidates, image_proposals, x in zip(outputs, scored, proposals, batch):
        boxes, scores = candidates["boxes"], candidates["scores"]
        factor = 2 if novel_boxes == "proposals" else 1
        assert boxes.shape == (factor * len(image_proposals["boxes"]), 4)
        assert scores.shape == (len(boxes), 4)
        assert (boxes[:, 2] <= x["width"]).all() and (boxes[:, 3] <= x["height"]).all()
        instances = output["instances"]
        for c in instances["classes"].unique().tolist():
            top = int(torch.nonzero(instances["classes"] == c)[0])  # detections sorted by score
            best = int(scores[:, c].argmax())
            assert instances["scores"][top].item() == pytest.approx(scores[best, c].item())
            assert torch.allclose(instances["boxes"][top], boxes[best], atol=1e-4)
            compared += 1
    assert compared >= 4
    model.train()
    with pytest.raises(RuntimeError, match="model.eval"):
        model.score_proposals(batch)


def test_score_proposals_needs_a_detector(tiny_cfg):
    from conftest import TINY_PANOPTIC

    tiny_cfg.merge_from_list(TINY_PANOPTIC[len(TINY_DETECTOR):] + ["MODEL.DETECTOR_ON", "False"])
    model = build_model(tiny_cfg).eval()
    with pytest.raises(RuntimeError, match="no detector"):
        model.score_proposals(inference_batch())


# ---- the tool, on the tiny toy world -------------------------------------------------------

TOY_DETECTOR = TINY_DETECTOR + ["MODEL.CLIP.NAME", "toyworld"]  # a CLIP with fixed weights


@pytest.fixture(scope="module")
def detector_files(tmp_path_factory):
    """A random-weights tiny detector on the toy CLIP: (config.yaml, model_final.pth)."""
    cfg = get_cfg()
    cfg.merge_from_list(TOY_DETECTOR)
    torch.manual_seed(0)
    model = build_model(cfg)
    model.set_training_vocabulary(["tomato", "orange", "lime"])
    folder = tmp_path_factory.mktemp("detector")
    DetectorCheckpointer(model, str(folder)).save("model_final")
    config = folder / "config.yaml"
    config.write_text(cfg.dump())
    return str(config), str(folder / "model_final.pth")


@pytest.fixture(scope="module")
def tags_file(tiny_world):
    """The val split's categories as image-level tags (Detic's pos_category_ids)."""
    data = json.loads((tiny_world / "annotations/instances_val.json").read_text())
    for entry in data["images"]:
        entry["pos_category_ids"] = sorted({a["category_id"] for a in data["annotations"]
                                            if a["image_id"] == entry["id"]})
    path = tiny_world / "annotations/tags_val.json"
    path.write_text(json.dumps({"images": data["images"], "categories": data["categories"]}))
    return path


def run_tool(detector_files, *arguments):
    config, weights = detector_files
    return load_tool("self_train_labels").main(
        ["--config-file", config, "--weights", weights, "--device", "cpu", *arguments])


def labelled_pairs(out):
    data = json.loads(out.read_text())
    sizes = {im["id"]: (im["width"], im["height"]) for im in data["images"]}
    for a in data["annotations"]:
        x, y, w, h = a["bbox"]
        width, height = sizes[a["image_id"]]
        assert 0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= width and y + h <= height
        assert 0 < a["pseudo_score"] <= 1 and a["iscrowd"] == 0
    return data, sorted((a["image_id"], a["category_id"]) for a in data["annotations"])


def test_tool_with_tags_labels_exactly_the_tagged_categories(detector_files, tiny_world,
                                                             tags_file, tmp_path, capsys):
    out = tmp_path / "round1.json"
    report = run_tool(detector_files, "--tags", str(tags_file), "--image-root",
                      str(tiny_world / "val"), "--out", str(out), "--shard-size", "4")
    records, categories = read_tag_records(tags_file)
    expected = sorted((r["id"], c) for r in records for c in r["pos_category_ids"])
    data, pairs = labelled_pairs(out)
    assert pairs == expected and len(expected) > 6  # one box per tag (toy-world COCO ids)
    assert [c["id"] for c in data["categories"]] == [c["id"] for c in categories]
    assert report["boxes"] == len(expected) and report["problems"] == []
    assert json.loads(report_path(out).read_text()) == report
    assert f"{len(expected)} boxes on 6 of 6 images" in capsys.readouterr().out


def test_tool_with_captions_resumes_and_refuses_another_run(detector_files, tiny_world,
                                                           tmp_path, capsys):
    out = tmp_path / "captions.json"
    arguments = ["--captions", str(tiny_world / "annotations/captions_val.json"),
                 "--image-root", str(tiny_world / "val"),
                 "--vocabulary", str(tiny_world / "annotations/instances_val.json"),
                 "--out", str(out), "--shard-size", "2", "--batch-size", "3"]
    report = run_tool(detector_files, *arguments)
    vocabulary = NounVocabulary.from_file(tiny_world / "annotations/instances_val.json")
    captions = json.loads((tiny_world / "annotations/captions_val.json").read_text())
    expected = sorted({(a["image_id"], c) for a in captions["annotations"]
                       for c in vocabulary.match(a["caption"])})
    assert labelled_pairs(out)[1] == expected and expected
    assert report["images_processed_this_run"] == 6
    reference = out.read_bytes()
    (parts_dir(out) / "shard_00001.json").unlink()  # as if killed in the second shard
    out.unlink()
    resumed = run_tool(detector_files, *arguments)
    assert resumed["images_processed_this_run"] == 2  # shards 0 and 2 were kept
    assert out.read_bytes() == reference
    weights = detector_files[1]
    os.utime(weights, ns=(1, 1))  # "other weights" (another signature): refused
    with pytest.raises(SystemExit) as exit_info:
        run_tool(detector_files, *arguments)
    assert exit_info.value.code == 2 and "different run" in capsys.readouterr().err
    assert run_tool(detector_files, *arguments, "--overwrite")["images_processed_this_run"] == 6


def test_bad_inputs_exit_2_with_a_clear_error(detector_files, tiny_world, tags_file, tmp_path,
                                              capsys):
    root = str(tiny_world / "val")
    captions = str(tiny_world / "annotations/captions_val.json")
    out = str(tmp_path / "out.json")
    cases = [
        (["--captions", str(tmp_path / "none.json"), "--vocabulary", "tomato"],
         "captions file not found"),
        (["--captions", captions], "--captions needs --vocabulary"),
        (["--tags", str(tags_file), "--vocabulary", "egg,olive"],
         "vocabulary category 1 is 'egg' but"),
        (["--tags", captions], "not an image-labelled file"),
        (["--tags", str(tags_file), "--vocabulary", str(tmp_path / "missing.json")],
         "vocabulary file not found"),
        (["--tags", str(tags_file), "--out", str(tags_file)], "would overwrite the input"),
        (["--tags", str(tags_file), "--out", detector_files[1]], "would overwrite the input"),
        (["--tags", str(tags_file), "--weights", str(tmp_path / "none.pth")],
         "weights file not found"),
        (["--tags", str(tags_file), "MODEL.BACKBONE.OUT_CHANNELS", "8"], "does not fit"),
    ]
    for arguments, message in cases:
        if "--out" not in arguments:
            arguments = ["--out", out, *arguments]  # before the KEY VALUE overrides
        with pytest.raises(SystemExit) as exit_info:
            run_tool(detector_files, "--image-root", root, *arguments)
        error = capsys.readouterr().err
        assert exit_info.value.code == 2 and error.startswith("error: ") and message in error, \
            (arguments, error)
    assert not (tmp_path / "out.json").exists()


def test_labeller_on_a_real_detector_matches_its_detections(detector_files):
    """The labeller's box of a class is the predictor's top detection of it, in original
    pixels of a non-square image (the mapper resizes it)."""
    config, weights = detector_files
    cfg = get_cfg()
    cfg.merge_from_file(config)
    predictor = OVPredictor(cfg, weights)
    vocabulary = NounVocabulary([{"id": 4, "name": "lime"}, {"id": 11, "name": "egg"}])
    labeller = DetectorLabeller(predictor, vocabulary, "pos_category_ids")
    picture = np.random.default_rng(0).integers(0, 256, (40, 90, 3), dtype=np.uint8)
    result = labeller([picture], [[11, 4]])[0]
    detections = predictor(picture)[0]
    assert [b.category_id for b in result.boxes] == [11, 4] and not result.problems
    for box in result.boxes:
        k = [4, 11].index(box.category_id)
        top = int(np.nonzero(detections["classes"] == k)[0][0])
        assert box.score == pytest.approx(float(detections["scores"][top]), rel=1e-5)
        assert box.box == pytest.approx(detections["boxes"][top].tolist(), abs=1e-3)
        assert box.box[2] > 64  # original pixels of the 90-px width
