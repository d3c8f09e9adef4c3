"""Sharded, resumable pseudo-box generation, its output files and its command line."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from ovdet.data import DatasetCatalog, register_coco_instances
from ovdet.data.toyworld.categories import STUFF_CATEGORIES, instances_categories
from ovdet.pseudo.generator import PseudoBoxGenerator
from ovdet.pseudo.runner import generate_pseudo_boxes, parts_dir, report_path
from ovdet.pseudo.vocabulary import NounVocabulary
from test_pseudo_maps import two_object_image

ROOT = Path(__file__).resolve().parents[1]
CAPTIONS = ["a tomato and an ice cube", "an ice cube", "", "a sofa", "tomatoes", "Ice cubes."]


@pytest.fixture(scope="module")
def captioned_images(tmp_path_factory):
    """Six 128-px images (one missing on disk) and their caption records."""
    root = tmp_path_factory.mktemp("captioned")
    image = two_object_image()
    records = []
    for k, caption in enumerate(CAPTIONS, start=1):
        name = f"{k:06d}.png"
        if k != 6:  # image 6 is missing: an unreadable image
            Image.fromarray(np.roll(image, 3 * k, axis=1)).save(root / name)
        records.append({"id": k, "file_name": name, "height": 128, "width": 128,
                        "captions": [caption]})
    return root, records


@pytest.fixture(scope="module")
def generator(toy_clip):
    vocabulary = NounVocabulary(instances_categories())
    return PseudoBoxGenerator(toy_clip, vocabulary, background=[c.name for c in STUFF_CATEGORIES])


class Interrupted(Exception):
    pass


class DiesAfter:
    """Wraps a generator; raises (as a kill would stop the run) on call number ``calls + 1``."""

    def __init__(self, generator, calls):
        self.generator, self.calls = generator, calls

    def __call__(self, images, captions):
        if self.calls == 0:
            raise Interrupted
        self.calls -= 1
        return self.generator(images, captions)


def run(generator, records, root, out, **kwargs):
    return generate_pseudo_boxes(generator, records, root, out, {"test": 1},
                                 instances_categories(), shard_size=2, batch_size=1,
                                 show_progress=False, **kwargs)


def test_output_report_and_loading(captioned_images, generator, tmp_path):
    root, records = captioned_images
    out = tmp_path / "pseudo.json"
    report = run(generator, records, root, out)
    data = json.loads(out.read_text())
    assert [im["id"] for im in data["images"]] == [1, 2, 5]
    assert [(a["image_id"], a["category_id"]) for a in data["annotations"]] == \
        [(1, 1), (1, 6), (2, 6), (5, 1)]
    assert [a["id"] for a in data["annotations"]] == [1, 2, 3, 4]
    assert all(0 < a["pseudo_score"] <= 1 and a["iscrowd"] == 0 for a in data["annotations"])
    problems = {p["image_id"]: p["problem"] for p in report["problems"]}
    assert problems[3] == "empty caption"
    assert problems[4] == "no vocabulary noun in the captions"
    assert problems[6].startswith("unreadable image: no such file")
    assert report["images"] == 6 and report["boxes"] == 4 and report["images_with_boxes"] == 3
    assert json.loads(report_path(out).read_text()) == report
    coco = COCO(str(out))  # pycocotools reads it
    assert len(coco.getAnnIds()) == 4 and coco.loadCats(6)[0]["split"] == "novel"
    register_coco_instances("pseudo_test", str(out), str(root))
    dicts = DatasetCatalog.get("pseudo_test")
    assert [len(d["annotations"]) for d in dicts] == [2, 1, 1]


def test_killed_run_resumes_to_identical_output(captioned_images, generator, tmp_path):
    root, records = captioned_images
    reference = tmp_path / "reference.json"
    run(generator, records, root, reference)
    out = tmp_path / "resumed.json"
    with pytest.raises(Interrupted):  # dies in the second shard: one shard finished
        run(DiesAfter(generator, 3), records, root, out)
    assert sorted(p.name for p in parts_dir(out).iterdir()) == ["run.json", "shard_00000.json"]
    assert not out.exists()
    calls = DiesAfter(generator, 100)
    report = run(calls, records, root, out)
    assert calls.calls == 100 - 3  # shard 0 (images 1, 2) was skipped; image 6 is unreadable
    assert report["images_processed_this_run"] == 4
    assert out.read_bytes() == reference.read_bytes()


def test_corrupt_shard_is_recomputed(captioned_images, generator, tmp_path):
    root, records = captioned_images
    out = tmp_path / "pseudo.json"
    run(generator, records, root, out)
    reference = out.read_bytes()
    (parts_dir(out) / "shard_00001.json").write_text('{"images": [')  # cut off mid-write
    (parts_dir(out) / "shard_00002.json").write_text('{"images": []}')  # not a shard
    calls = DiesAfter(generator, 100)
    report = run(calls, records, root, out)
    assert calls.calls == 97 and report["images_processed_this_run"] == 4
    assert out.read_bytes() == reference


def test_bad_destinations_are_clear_errors(captioned_images, generator, tmp_path):
    root, records = captioned_images
    with pytest.raises(ValueError, match="is a directory"):
        run(generator, records, root, tmp_path)
    with pytest.raises(ValueError, match="image root"):
        run(generator, records, tmp_path / "nowhere", tmp_path / "pseudo.json")


def test_shards_of_another_run_are_refused(captioned_images, generator, tmp_path):
    root, records = captioned_images
    out = tmp_path / "pseudo.json"
    run(generator, records[:2], root, out)
    with pytest.raises(ValueError, match="different run"):
        run(generator, records, root, out)
    run(generator, records, root, out, overwrite=True)
    assert len(json.loads(out.read_text())["images"]) == 3


def test_command_line(captioned_images, tmp_path):
    root, records = captioned_images
    captions = tmp_path / "captions.json"
    captions.write_text(json.dumps({"images": records}))
    out = tmp_path / "pseudo.json"
    command = [sys.executable, str(ROOT / "tools/generate_pseudo_boxes.py"),
               "--captions", str(captions), "--image-root", str(root),
               "--vocabulary", "tomato,ice cube,egg", "--background", "sand",
               "--shard-size", "4", "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "4 boxes on 3 of 6 images" in done.stdout
    data = json.loads(out.read_text())
    assert data["categories"] == [{"id": 1, "name": "tomato"}, {"id": 2, "name": "ice cube"},
                                  {"id": 3, "name": "egg"}]
    bad = subprocess.run(command[:-2] + ["--out", str(out), "--method", "dense",
                                         "--thresholds", "0,2"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("error: thresholds")
    words = subprocess.run(command + ["--thresholds", "a,b"], capture_output=True, text=True,
                           cwd=tmp_path)
    assert words.returncode == 2 and "--thresholds takes comma-separated numbers" in words.stderr
    clash = subprocess.run(command + ["--background", "sand,egg"], capture_output=True,
                           text=True, cwd=tmp_path)
    assert clash.returncode == 2 and "background names repeat vocabulary names" in clash.stderr
    missing = subprocess.run(command[:2] + ["--captions", str(tmp_path / "none.json")]
                             + command[4:], capture_output=True, text=True, cwd=tmp_path)
    assert missing.returncode == 2 and "captions file not found" in missing.stderr


def test_benchmark_prints_quality_per_method(tiny_world):
    done = subprocess.run([sys.executable, str(ROOT / "tools/benchmark.py"), "pseudo-boxes",
                           "--dataset-root", str(tiny_world), "--split", "val",
                           "--methods", "dense,dense-value"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert results["images"] == 6 and list(results["methods"]) == ["dense", "dense-value"]
    for quality in results["methods"].values():
        assert 0 <= quality["precision"] <= 100 and quality["images_per_second"] > 0
        assert quality["gt_boxes"] == len(json.loads(
            (tiny_world / "annotations/instances_val.json").read_text())["annotations"])
