import copy
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ovdet.data.ovd_splits import (COCO_OVD_BASE_IDS, COCO_OVD_NAMES, COCO_OVD_NOVEL_IDS,
                                   make_coco_ovd, make_lvis_ovd)

REPO = Path(__file__).resolve().parents[1]

# COCO 2017's 80 categories: (id, name, supercategory)
COCO_CATEGORIES = [
    (1, "person", "person"), (2, "bicycle", "vehicle"), (3, "car", "vehicle"),
    (4, "motorcycle", "vehicle"), (5, "airplane", "vehicle"), (6, "bus", "vehicle"),
    (7, "train", "vehicle"), (8, "truck", "vehicle"), (9, "boat", "vehicle"),
    (10, "traffic light", "outdoor"), (11, "fire hydrant", "outdoor"), (13, "stop sign", "outdoor"),
    (14, "parking meter", "outdoor"), (15, "bench", "outdoor"), (16, "bird", "animal"),
    (17, "cat", "animal"), (18, "dog", "animal"), (19, "horse", "animal"), (20, "sheep", "animal"),
    (21, "cow", "animal"), (22, "elephant", "animal"), (23, "bear", "animal"),
    (24, "zebra", "animal"), (25, "giraffe", "animal"), (27, "backpack", "accessory"),
    (28, "umbrella", "accessory"), (31, "handbag", "accessory"), (32, "tie", "accessory"),
    (33, "suitcase", "accessory"), (34, "frisbee", "sports"), (35, "skis", "sports"),
    (36, "snowboard", "sports"), (37, "sports ball", "sports"), (38, "kite", "sports"),
    (39, "baseball bat", "sports"), (40, "baseball glove", "sports"), (41, "skateboard", "sports"),
    (42, "surfboard", "sports"), (43, "tennis racket", "sports"), (44, "bottle", "kitchen"),
    (46, "wine glass", "kitchen"), (47, "cup", "kitchen"), (48, "fork", "kitchen"),
    (49, "knife", "kitchen"), (50, "spoon", "kitchen"), (51, "bowl", "kitchen"),
    (52, "banana", "food"), (53, "apple", "food"), (54, "sandwich", "food"),
    (55, "orange", "food"), (56, "broccoli", "food"), (57, "carrot", "food"),
    (58, "hot dog", "food"), (59, "pizza", "food"), (60, "donut", "food"), (61, "cake", "food"),
    (62, "chair", "furniture"), (63, "couch", "furniture"), (64, "potted plant", "furniture"),
    (65, "bed", "furniture"), (67, "dining table", "furniture"), (70, "toilet", "furniture"),
    (72, "tv", "electronic"), (73, "laptop", "electronic"), (74, "mouse", "electronic"),
    (75, "remote", "electronic"), (76, "keyboard", "electronic"),
    (77, "cell phone", "electronic"), (78, "microwave", "appliance"), (79, "oven", "appliance"),
    (80, "toaster", "appliance"), (81, "sink", "appliance"), (82, "refrigerator", "appliance"),
    (84, "book", "indoor"), (85, "clock", "indoor"), (86, "vase", "indoor"),
    (87, "scissors", "indoor"), (88, "teddy bear", "indoor"), (89, "hair drier", "indoor"),
    (90, "toothbrush", "indoor"),
]
# the 15 categories outside the 48/17 split
LEFT_OUT = {10, 11, 13, 14, 37, 39, 40, 43, 46, 58, 64, 67, 77, 88, 89}
BASE_NAMES = {"person", "bicycle", "car", "motorcycle", "train", "truck", "boat", "bench", "bird",
              "horse", "sheep", "bear", "zebra", "giraffe", "backpack", "handbag", "suitcase",
              "frisbee", "skis", "kite", "surfboard", "bottle", "fork", "spoon", "bowl", "banana",
              "apple", "sandwich", "orange", "broccoli", "carrot", "pizza", "donut", "chair", "bed",
              "toilet", "tv", "laptop", "mouse", "remote", "microwave", "oven", "toaster",
              "refrigerator", "book", "clock", "vase", "toothbrush"}
NOVEL_NAMES = {"airplane", "bus", "cat", "dog", "cow", "elephant", "umbrella", "tie", "snowboard",
               "skateboard", "cup", "knife", "cake", "couch", "keyboard", "sink", "scissors"}

# (image id, category id): 4 base (person, tv, bear, car), 2 novel (cat, bus), 3 left out
# (potted plant, stop sign, dining table); image 632 holds only a novel object
COCO_OBJECTS = [(139, 1), (139, 17), (139, 72), (139, 64), (285, 23), (632, 6), (724, 13),
                (724, 67), (724, 3)]


def coco_instances():
    images = [{"id": i, "file_name": f"{i:012d}.jpg", "height": 480, "width": 640, "license": 1,
               "coco_url": f"http://images.cocodataset.org/val2017/{i:012d}.jpg",
               "date_captured": "2013-11-14 17:02:52", "flickr_url": ""}
              for i in (139, 285, 632, 724)]
    annotations = [{"id": 1000 + k, "image_id": img, "category_id": cat, "iscrowd": 0,
                    "bbox": [10.0, 20.0, 30.0, 40.0], "area": 1200.0,
                    "segmentation": [[10, 20, 40, 20, 40, 60, 10, 60]]}
                   for k, (img, cat) in enumerate(COCO_OBJECTS)]
    categories = [{"supercategory": s, "id": i, "name": n} for i, n, s in COCO_CATEGORIES]
    return {"info": {"year": 2017}, "licenses": [{"id": 1, "name": "CC BY"}], "images": images,
            "annotations": annotations, "categories": categories}


def test_coco_split_constants():
    assert len(COCO_CATEGORIES) == 80
    names = {i: n for i, n, _ in COCO_CATEGORIES}
    assert len(COCO_OVD_BASE_IDS) == 48 and len(COCO_OVD_NOVEL_IDS) == 17
    assert not set(COCO_OVD_BASE_IDS) & set(COCO_OVD_NOVEL_IDS)
    assert set(names) - set(COCO_OVD_BASE_IDS) - set(COCO_OVD_NOVEL_IDS) == LEFT_OUT
    assert {names[i] for i in COCO_OVD_BASE_IDS} == BASE_NAMES
    assert {names[i] for i in COCO_OVD_NOVEL_IDS} == NOVEL_NAMES
    assert COCO_OVD_NAMES == {i: names[i] for i in (*COCO_OVD_BASE_IDS, *COCO_OVD_NOVEL_IDS)}


def test_make_coco_ovd_base_and_all():
    instances = coco_instances()
    before = copy.deepcopy(instances)
    base = make_coco_ovd(instances, "base")
    assert instances == before  # the input is not modified
    assert [img["id"] for img in base["images"]] == [139, 285, 632, 724]
    assert {c["name"] for c in base["categories"]} == BASE_NAMES
    assert {c["split"] for c in base["categories"]} == {"base"}
    assert sorted(a["category_id"] for a in base["annotations"]) == [1, 3, 23, 72]
    assert base["info"] == {"year": 2017} and base["licenses"] == instances["licenses"]
    everything = make_coco_ovd(instances, "all")
    assert len(everything["categories"]) == 65
    split = {c["name"]: c["split"] for c in everything["categories"]}
    assert {n for n, s in split.items() if s == "novel"} == NOVEL_NAMES
    assert {n for n, s in split.items() if s == "base"} == BASE_NAMES
    assert sorted(a["category_id"] for a in everything["annotations"]) == [1, 3, 6, 17, 23, 72]
    assert len(everything["images"]) == 4


@pytest.mark.parametrize("change, message", [
    (lambda d: [d], "expected a COCO instances json"),
    (lambda d: {"images": d["images"], "annotations": []}, r"no list \['categories'\]"),
    (lambda d: {**d, "categories": [c for c in d["categories"] if c["id"] != 5]}, r"ids \[5\]"),
    (lambda d: {**d, "categories": [{"id": k + 1, "name": c["name"]}  # contiguous 1..80 ids
                                    for k, c in enumerate(d["categories"])]},
     r"ids \[81, 82, 84, 85, 86, 87, 90\] of the 48/17 split are missing"),
    (lambda d: {**d, "categories": [{**c, "name": "aeroplane"} if c["id"] == 5 else c
                                    for c in d["categories"]]}, "5 is 'aeroplane', not 'airplane'"),
    (lambda d: {**d, "annotations": [{"id": 1, "image_id": 139}]}, r"annotations\[0\] has no"),
])
def test_make_coco_ovd_rejects_other_files(change, message):
    with pytest.raises(ValueError, match=message):
        make_coco_ovd(change(coco_instances()), "base")
    with pytest.raises(ValueError, match="keep must be one of"):
        make_coco_ovd(coco_instances(), "novel")


# LVIS v1 schema and real LVIS v1 categories: (id, name, frequency); 13 and 14 are rare
LVIS_CATEGORIES = [(1, "aerosol_can", "c"), (2, "air_conditioner", "f"), (3, "airplane", "f"),
                   (12, "apple", "f"), (13, "applesauce", "r"), (14, "apricot", "r")]
LVIS_IMAGES = [  # (id, coco split, neg_category_ids, not_exhaustive_category_ids)
    (397133, "val2017", [13, 2], [14]), (37777, "val2017", [12], []),
    (9, "train2017", [14, 13], [13, 3])]
LVIS_OBJECTS = [(397133, 3), (397133, 12), (397133, 14), (37777, 13), (37777, 1), (9, 3),
                (9, 2)]


def lvis_dataset():
    categories = [{"id": i, "name": n, "synset": f"{n}.n.01", "synonyms": [n], "def": f"a {n}",
                   "frequency": f, "image_count": {"r": 3, "c": 40, "f": 500}[f],
                   "instance_count": {"r": 5, "c": 90, "f": 2000}[f]}
                  for i, n, f in LVIS_CATEGORIES]
    images = [{"id": i, "height": 427, "width": 640, "license": 4, "date_captured": "",
               "flickr_url": "", "coco_url": f"http://images.cocodataset.org/{s}/{i:012d}.jpg",
               "neg_category_ids": neg, "not_exhaustive_category_ids": nel}
              for i, s, neg, nel in LVIS_IMAGES]
    annotations = [{"id": k + 1, "image_id": img, "category_id": cat, "area": 1200.0,
                    "bbox": [10.0, 20.0, 30.0, 40.0],
                    "segmentation": [[10, 20, 40, 20, 40, 60, 10, 60]]}
                   for k, (img, cat) in enumerate(LVIS_OBJECTS)]
    return {"info": {"version": "1.0"}, "licenses": [], "images": images,
            "annotations": annotations, "categories": categories}


def test_make_lvis_ovd_base_and_all():
    lvis = lvis_dataset()
    before = copy.deepcopy(lvis)
    base = make_lvis_ovd(lvis, "base")
    assert lvis == before
    assert [c["id"] for c in base["categories"]] == [1, 2, 3, 12]
    assert {c["split"] for c in base["categories"]} == {"base"}
    assert sorted(a["category_id"] for a in base["annotations"]) == [1, 2, 3, 3, 12]
    assert [(img["id"], img["neg_category_ids"], img["not_exhaustive_category_ids"])
            for img in base["images"]] == [(397133, [2], []), (37777, [12], []), (9, [], [3])]
    everything = make_lvis_ovd(lvis, "all")
    assert everything["images"] == lvis["images"]
    assert len(everything["annotations"]) == len(LVIS_OBJECTS)
    assert {c["id"]: c["split"] for c in everything["categories"]} == {
        1: "base", 2: "base", 3: "base", 12: "base", 13: "novel", 14: "novel"}


def test_make_lvis_ovd_rejects_coco_and_bad_frequency():
    with pytest.raises(ValueError, match="neg_category_ids"):
        make_lvis_ovd(coco_instances(), "base")
    lvis = lvis_dataset()
    lvis["categories"][0]["frequency"] = "rare"
    with pytest.raises(ValueError, match=r"categories \[1\] have a frequency"):
        make_lvis_ovd(lvis, "all")


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "datasets" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def test_prepare_coco_cli(tmp_path, capsys):
    main = load_script("prepare_coco_ovd").main
    annotations = tmp_path / "coco" / "annotations"
    write(annotations / "instances_train2017.json", coco_instances())
    assert main(["--coco-root", str(tmp_path / "coco")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "instances_val2017.json not found" in err
    assert "https://cocodataset.org" in err and "instances_train2017.json" not in err
    write(annotations / "instances_val2017.json", coco_instances())
    assert main(["--coco-root", str(tmp_path / "coco")]) == 0
    out = capsys.readouterr().out
    assert "4 images, 48 categories (48 base, 0 novel), 4 annotations" in out
    assert "4 images, 65 categories (48 base, 17 novel), 6 annotations" in out
    base = json.loads((annotations / "instances_train2017_ovd_base.json").read_text())
    assert base == make_coco_ovd(coco_instances(), "base")
    val = json.loads((annotations / "instances_val2017_ovd.json").read_text())
    assert val == make_coco_ovd(coco_instances(), "all")
    write(annotations / "instances_train2017.json", {"images": [], "annotations": []})
    assert main(["--coco-root", str(tmp_path / "coco")]) == 2
    assert "not a COCO instances json" in capsys.readouterr().err


def test_prepare_lvis_cli(tmp_path, capsys):
    main = load_script("prepare_lvis_ovd").main
    write(tmp_path / "lvis_v1_train.json", lvis_dataset())
    write(tmp_path / "lvis_v1_val.json", lvis_dataset())
    assert main(["--lvis-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "3 images, 4 categories (4 base, 0 novel), 5 annotations" in out
    assert "3 images, 6 categories (4 base, 2 novel), 7 annotations" in out
    base = json.loads((tmp_path / "lvis_v1_train_ovd_base.json").read_text())
    assert base == make_lvis_ovd(lvis_dataset(), "base")
    (tmp_path / "lvis_v1_val.json").write_text("{not json")
    assert main(["--lvis-root", str(tmp_path)]) == 2
    assert "lvis_v1_val.json" in capsys.readouterr().err


@pytest.mark.parametrize("script, folder, url", [
    ("prepare_coco_ovd.py", "coco/annotations/instances_train2017.json", "cocodataset.org"),
    ("prepare_lvis_ovd.py", "lvis/lvis_v1_train.json", "lvisdataset.org"),
])
def test_scripts_default_root_and_missing_files(tmp_path, script, folder, url):
    """End to end as a user runs them: the default root comes from OVDET_DATASETS."""
    env = {**os.environ, "OVDET_DATASETS": str(tmp_path)}
    proc = subprocess.run([sys.executable, str(REPO / "datasets" / script)], env=env,
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert str(tmp_path / folder) in proc.stderr and url in proc.stderr
