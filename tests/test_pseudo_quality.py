"""Pseudo-box precision and recall, counted by hand."""
from ovdet.evaluation.pseudo_boxes import pseudo_box_quality

CATEGORIES = [{"id": 1, "name": "a", "split": "base"}, {"id": 2, "name": "b", "split": "novel"}]
GROUND_TRUTH = {
    "images": [{"id": 1}, {"id": 2}, {"id": 3}],
    "categories": CATEGORIES,
    "annotations": [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
        {"image_id": 1, "category_id": 1, "bbox": [20, 20, 10, 10]},  # second "a": not findable
        {"image_id": 1, "category_id": 2, "bbox": [40, 0, 10, 10]},
        {"image_id": 2, "category_id": 2, "bbox": [0, 0, 10, 10]},
        {"image_id": 3, "category_id": 1, "bbox": [0, 0, 10, 10]},
        {"image_id": 3, "category_id": 1, "bbox": [0, 0, 50, 50], "iscrowd": 1},  # ignored
    ],
}
PSEUDO = {"categories": CATEGORIES, "images": [], "annotations": [
    {"image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10]},   # IoU 81/119 = 0.68: correct
    {"image_id": 1, "category_id": 2, "bbox": [45, 0, 10, 10]},  # IoU 50/150: wrong
    {"image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 10]},   # wrong category
    {"image_id": 2, "category_id": 2, "bbox": [0, 0, 10, 20]},   # IoU 0.5 exactly: correct
]}


def test_quality_by_hand():
    quality = pseudo_box_quality(PSEUDO, GROUND_TRUTH)
    assert quality["all"] == {"precision": 50.0, "recall": 40.0, "pair_recall": 50.0,
                              "pseudo_boxes": 4, "gt_boxes": 5}
    assert quality["base"] == {"precision": 50.0, "recall": round(100 / 3, 2),
                               "pair_recall": 50.0, "pseudo_boxes": 2, "gt_boxes": 3}
    assert quality["novel"] == {"precision": 50.0, "recall": 50.0, "pair_recall": 50.0,
                                "pseudo_boxes": 2, "gt_boxes": 2}


def test_quality_restricted_to_images():
    quality = pseudo_box_quality(PSEUDO, GROUND_TRUTH, image_ids=[2])
    assert quality["all"]["precision"] == 50.0 and quality["all"]["gt_boxes"] == 1
    assert quality["novel"]["recall"] == 100.0
    assert quality["base"]["recall"] is None  # no ground-truth "a" in image 2


def test_command_line_evaluates_the_pseudo_file_images(tmp_path, capsys):
    """``python -m ovdet.evaluation.pseudo_boxes``: only images the pseudo file lists (and the
    ground truth has) are evaluated; unreadable input is one error line, exit status 2."""
    import json

    import pytest

    from ovdet.evaluation.pseudo_boxes import main

    pseudo = {**PSEUDO, "images": [{"id": 2}, {"id": 99}]}
    (tmp_path / "pseudo.json").write_text(json.dumps(pseudo))
    (tmp_path / "gt.json").write_text(json.dumps(GROUND_TRUTH))
    quality = main([str(tmp_path / "pseudo.json"), str(tmp_path / "gt.json")])
    assert quality == pseudo_box_quality(PSEUDO, GROUND_TRUTH, image_ids=[2])
    assert json.loads(capsys.readouterr().out)["images"] == 1
    (tmp_path / "bad.json").write_text(json.dumps({"images": []}))
    for argv in ([str(tmp_path / "missing.json"), str(tmp_path / "gt.json")],
                 [str(tmp_path / "bad.json"), str(tmp_path / "gt.json")],
                 [str(tmp_path / "pseudo.json"), str(tmp_path / "gt.json"), "--iou", "0"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        assert capsys.readouterr().err.startswith("error: ")
