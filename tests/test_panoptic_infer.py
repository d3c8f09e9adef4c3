"""tools/panoptic_infer.py end to end on a tiny random panoptic model, the predictor's panoptic
results, and ovdet.utils.visualize.draw_panoptic on hand-made segment maps."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from conftest import TINY_DETECTOR
from ovdet import OVPredictor
from ovdet.config import get_cfg
from ovdet.data.toyworld.writer import decode_segment_ids
from ovdet.engine.checkpoint import DetectorCheckpointer
from ovdet.modeling.registry import build_model
from ovdet.utils.visualize import draw_panoptic, font_size, label_color
from test_train_net import load_tool

TINY_PANOPTIC = [
    "MODEL.PANOPTIC_ON", "True", "MODEL.MASK_ON", "False", "MODEL.PANOPTIC.NUM_QUERIES", "5",
    "MODEL.PANOPTIC.HIDDEN_DIM", "32", "MODEL.PANOPTIC.NUM_HEADS", "4",
    "MODEL.PANOPTIC.DIM_FEEDFORWARD", "64", "MODEL.PANOPTIC.DEC_LAYERS", "1",
    "MODEL.PANOPTIC.TRAIN_POINTS", "64", "MODEL.PANOPTIC.OBJECT_MASK_THRESHOLD", "0.0",
    "MODEL.PANOPTIC.OVERLAP_THRESHOLD", "0.0", "MODEL.PANOPTIC.MASK_THRESHOLD", "0.0",  # segments
]
THINGS, STUFF = ["tomato", "egg"], ["wall", "table"]


@pytest.fixture(scope="module")
def tool():
    return load_tool("panoptic_infer")


def save_run(folder, overrides, **vocabulary):
    """A random tiny model of ``overrides``: its weights and config.yaml in ``folder``."""
    cfg = get_cfg()
    cfg.merge_from_list(TINY_DETECTOR + overrides)
    torch.manual_seed(0)
    model = build_model(cfg)
    model.set_training_vocabulary(THINGS, **vocabulary)
    DetectorCheckpointer(model, str(folder)).save("model_final")
    (folder / "config.yaml").write_text(cfg.dump())
    return folder


@pytest.fixture(scope="module")
def panoptic_run(tmp_path_factory):
    """A panoptic model without detector (MODEL.DETECTOR_ON False)."""
    return save_run(tmp_path_factory.mktemp("panoptic"),
                    TINY_PANOPTIC + ["MODEL.DETECTOR_ON", "False"], stuff=["wall"])


@pytest.fixture(scope="module")
def detector_run(tmp_path_factory):
    """A detector without panoptic branch (its weights are never loaded)."""
    folder = tmp_path_factory.mktemp("detector")
    cfg = get_cfg()
    cfg.merge_from_list(TINY_DETECTOR)
    (folder / "config.yaml").write_text(cfg.dump())
    (folder / "model_final.pth").write_bytes(b"")
    return folder


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(folder / "a.png")
    Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(folder / "b.jpg")
    (folder / "broken.png").write_bytes(b"not an image")
    return folder


def run_tool(tool, run, *argv):
    tool.main(["--config-file", str(run / "config.yaml"), *argv,
               "MODEL.WEIGHTS", str(run / "model_final.pth")])


# ---- draw_panoptic ------------------------------------------------------------------------------


def segment_map(n):
    """Sky (id 5) over two eggs (ids 7 and 9) side by side; a void square in the sky."""
    ids = np.zeros((n, n), np.int32)
    ids[: n // 2] = 5
    ids[n // 2:, : n // 2] = 7
    ids[n // 2:, n // 2:] = 9
    ids[n // 8: n // 4, n // 8: n // 4] = 0
    segments = [{"id": 5, "label": "sky", "isthing": False},
                {"id": 7, "label": "egg", "isthing": True},
                {"id": 9, "label": "egg", "isthing": True}]
    return ids, segments


def four_neighbour_edges(ids):
    edge = np.zeros(ids.shape, bool)
    for axis in (0, 1):
        differs = np.diff(ids, axis=axis) != 0
        lead = [slice(None)] * 2
        lead[axis] = slice(1, None)
        trail = [slice(None)] * 2
        trail[axis] = slice(None, -1)
        edge[tuple(lead)] |= differs
        edge[tuple(trail)] |= differs
    return edge


@pytest.mark.parametrize("n", [64, 1000])
def test_draw_panoptic_fills_outlines_and_labels_each_segment(n):
    ids, segments = segment_map(n)
    image = np.full((n, n, 3), 100, np.uint8)
    out = draw_panoptic(image, ids, segments)
    assert out.shape == image.shape and out.dtype == np.uint8
    weight = round(0.45 * 256)
    edges = four_neighbour_edges(ids)
    text_size = font_size(n)
    for segment in segments:
        color = np.asarray(label_color(segment["label"]))
        inside = ids == segment["id"]
        outline = inside & edges
        blend = (100 * (256 - weight) + color * weight + 128) >> 8
        fill = inside & ~outline
        # one tag of the colour, with text, inside the segment, as tall as the text size
        tag = fill & (out == color).all(axis=2)
        rows, cols = np.flatnonzero(tag.any(axis=1)), np.flatnonzero(tag.any(axis=0))
        assert rows.size, f"no tag for segment {segment['id']}"
        under_tag = np.zeros_like(inside)
        under_tag[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] = True
        box = out[under_tag].reshape(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1, 3)
        assert inside[under_tag].all()
        assert rows[-1] - rows[0] + 1 >= 0.7 * text_size  # text grows with the image
        assert ((box != color).any(axis=2) & (box != blend).any(axis=2)).sum() > 10  # letters
        # elsewhere: outline pixels opaque in the colour, the rest the translucent fill
        assert (out[outline & ~under_tag] == color).all()
        assert (out[fill & ~under_tag] == blend).all()
        # the tag is around the pixel farthest from the segment's border
        distance = ndimage.distance_transform_edt(np.pad(inside, 1))[1:-1, 1:-1]
        y, x = np.unravel_index(np.argmax(distance), distance.shape)
        assert rows[0] <= y <= rows[-1] and cols[0] <= x <= cols[-1]
    # void is left as it was, its border with the sky is outlined on the sky's side only
    void = ids == 0
    assert (out[void] == 100).all()
    sky_edge = (ids == 5) & ndimage.binary_dilation(void)
    assert (out[sky_edge] == label_color("sky")).all(axis=1).mean() > 0.9


def test_draw_panoptic_without_segments_and_bad_arguments():
    ids, segments = segment_map(64)
    image = np.full((64, 64, 3), 100, np.uint8)
    assert (draw_panoptic(image, ids, []) == image).all()
    assert (draw_panoptic(image, np.zeros_like(ids), segments) == image).all()
    only_sky = draw_panoptic(image, ids, segments[:1])  # ids 7, 9 unnamed: left alone
    assert (only_sky[ids >= 7] == 100).all() and (only_sky[ids == 5] != 100).any()
    thick = draw_panoptic(np.full((1600, 1600, 3), 100, np.uint8), *segment_map(1600))
    column = thick[796:804, 1000]  # 2 px outline on each side of the sky / egg border at 1600 px
    assert (column[2:4] == label_color("sky")).all() and (column[4:6] == label_color("egg")).all()
    assert (column[[1, 6]] != label_color("sky")).any(axis=1).all()
    assert (column[[1, 6]] != label_color("egg")).any(axis=1).all()
    with pytest.raises(ValueError, match="ids must be"):
        draw_panoptic(image, ids[:10], segments)
    with pytest.raises(ValueError, match="image must be"):
        draw_panoptic(image[..., 0], ids, segments)
    with pytest.raises(ValueError, match="void"):
        draw_panoptic(image, ids, [{"id": 0, "label": "x"}])
    with pytest.raises(ValueError, match="alpha"):
        draw_panoptic(image, ids, segments, alpha=2)


# ---- predictor -----------------------------------------------------------------------------------


def test_predictor_without_detector_returns_labelled_panoptic_segments(panoptic_run):
    cfg = get_cfg()
    cfg.merge_from_file(str(panoptic_run / "config.yaml"))
    predictor = OVPredictor(cfg, str(panoptic_run / "model_final.pth"))
    predictor.set_vocabulary(["egg", "cup"], stuff=STUFF)
    assert predictor.vocabulary == ["egg", "cup"] and predictor.stuff_vocabulary == STUFF
    result = predictor(np.full((40, 56, 3), 90, np.uint8))[0]
    assert set(result) == {"panoptic_seg"}  # no detector: no detection keys
    ids, segments = result["panoptic_seg"]
    assert ids.shape == (40, 56) and ids.dtype == np.int32
    for segment in segments:
        assert segment["label"] == (["egg", "cup"] + STUFF)[segment["category_id"]]
        assert segment["isthing"] == (segment["category_id"] < 2)
    with pytest.raises(ValueError, match="both"):
        predictor.set_vocabulary(["egg"], stuff=["Egg"])
    predictor.set_vocabulary(["egg"])  # stuff kept
    assert predictor.stuff_vocabulary == STUFF


# ---- the tool ------------------------------------------------------------------------------------


def test_tool_writes_coco_panoptic_pngs_json_and_overlays(tool, panoptic_run, images, tmp_path,
                                                         capsys, monkeypatch):
    monkeypatch.setattr(tool, "JSON_EVERY_S", 0.0)  # rewritten after every batch
    written = []
    real = tool.write_json
    monkeypatch.setattr(tool, "write_json",
                        lambda output, annotations, *a: written.append(len(annotations))
                        or real(output, annotations, *a))
    out = tmp_path / "out"
    run_tool(tool, panoptic_run, "--input", str(images), str(tmp_path / "gone.png"),
             "--things", ",".join(THINGS), "--stuff", ",".join(STUFF), "--output", str(out),
             "--batch-size", "1")
    captured = capsys.readouterr()
    assert "skipped: cannot read image" in captured.err and "broken.png" in captured.err
    assert "gone.png" in captured.err
    assert "wrote 2 of 4 images" in captured.out
    assert written == [1, 2, 2, 2]  # after each batch (broken.png's is empty) and at the end

    data = json.loads((out / "panoptic.json").read_text())
    assert data["categories"] == [{"id": 1, "name": "tomato", "isthing": 1},
                                  {"id": 2, "name": "egg", "isthing": 1},
                                  {"id": 3, "name": "wall", "isthing": 0},
                                  {"id": 4, "name": "table", "isthing": 0}]
    assert [a["file_name"] for a in data["annotations"]] == ["a.png", "b.png"]
    assert [(i["id"], i["height"], i["width"]) for i in data["images"]] == [("a", 40, 56),
                                                                            ("b", 48, 48)]
    for annotation, size in zip(data["annotations"], ((40, 56), (48, 48))):
        png = np.asarray(Image.open(out / "panoptic" / annotation["file_name"]))
        ids = decode_segment_ids(png)
        assert ids.shape == size
        overlay = np.asarray(Image.open(out / annotation["file_name"]))
        assert overlay.shape == (*size, 3)
        info = annotation["segments_info"]
        assert set(np.unique(ids)) - {0} == {s["id"] for s in info}
        for s in info:
            mask = ids == s["id"]
            rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            assert s["area"] == mask.sum()
            assert s["bbox"] == [cols[0], rows[0], cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1]
            assert s["isthing"] == (s["category_id"] <= 2) and 1 <= s["category_id"] <= 4
            assert 0 <= s["score"] <= 1
        assert info  # thresholds 0: the queries owning pixels are segments


def test_a_second_run_adds_to_the_earlier_json_and_never_replaces_a_foreign_one(
        tool, panoptic_run, images, tmp_path, capsys):
    out = tmp_path / "out"
    vocabulary = ["--things", ",".join(THINGS), "--stuff", ",".join(STUFF), "--output", str(out)]
    run_tool(tool, panoptic_run, "--input", str(images / "a.png"), str(images / "b.jpg"),
             *vocabulary)
    first = json.loads((out / "panoptic.json").read_text())
    (out / "panoptic" / "b.png").unlink()  # an earlier result whose PNG is gone is dropped
    capsys.readouterr()
    run_tool(tool, panoptic_run, "--input", str(images / "a.png"), *vocabulary)
    assert "wrote 1 of 1 images" in capsys.readouterr().out
    second = json.loads((out / "panoptic.json").read_text())
    assert [a["file_name"] for a in second["annotations"]] == ["a.png"]
    run_tool(tool, panoptic_run, "--input", str(images / "b.jpg"), *vocabulary)
    assert "also keeps 1 of an earlier run" in capsys.readouterr().out
    third = json.loads((out / "panoptic.json").read_text())
    assert [a["file_name"] for a in third["annotations"]] == ["a.png", "b.png"]
    assert third["annotations"][0] == second["annotations"][0]  # the earlier entry, as it was
    assert len(first["annotations"]) == 2
    assert [i["id"] for i in third["images"]] == ["a", "b"]
    kept = (out / "panoptic.json").read_bytes()
    with pytest.raises(SystemExit, match="error: .*panoptic.json holds results for another "
                                         "vocabulary.*choose another --output"):
        run_tool(tool, panoptic_run, "--input", str(images / "a.png"), "--things", "tomato",
                 "--output", str(out))
    (out / "panoptic.json").write_text("[1, 2]")
    with pytest.raises(SystemExit, match="error: .*panoptic.json is not a panoptic.json of this "
                                         "tool"):
        run_tool(tool, panoptic_run, "--input", str(images / "a.png"), *vocabulary)
    assert (out / "panoptic.json").read_text() == "[1, 2]"
    (out / "panoptic.json").write_bytes(kept)


def test_segments_info_round_trips_through_the_png(tool, tmp_path):
    from ovdet.data.toyworld.writer import encode_segment_ids

    ids = np.zeros((6, 300), np.int32)
    ids[:, 10:20] = 70000  # needs all three bytes
    ids[2:4, 100:103] = 3
    ids[0, 299] = 12  # no segment names it: void
    segments = [{"id": 70000, "category_id": 0, "isthing": True, "score": 0.9},
                {"id": 3, "category_id": 2, "isthing": False, "score": 0.51234567},
                {"id": 8, "category_id": 1, "isthing": True, "score": 0.2}]  # no pixels: dropped
    written, info = tool.segments_info(ids, segments)
    Image.fromarray(encode_segment_ids(written)).save(tmp_path / "p.png")
    decoded = decode_segment_ids(np.asarray(Image.open(tmp_path / "p.png")))
    assert (decoded == np.where(ids == 12, 0, ids)).all()
    assert info == [{"id": 70000, "category_id": 1, "isthing": True, "score": 0.9, "area": 60,
                     "bbox": [10, 0, 10, 6]},
                    {"id": 3, "category_id": 3, "isthing": False, "score": 0.5123, "area": 6,
                     "bbox": [100, 2, 3, 2]}]


@pytest.mark.parametrize("argv, message", [
    (["--things", ""], "--things: empty vocabulary"),
    (["--things", " , "], "--things: empty vocabulary"),
    (["--things", "egg", "--stuff", ""], "--stuff: empty vocabulary"),
    (["--things", "egg,Wall", "--stuff", "wall,table"],
     "'Wall' given both in --things and in --stuff"),
    (["--things", "egg", "--batch-size", "0"], "--batch-size must be at least 1"),
])
def test_tool_refuses_bad_vocabularies(tool, panoptic_run, images, tmp_path, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        run_tool(tool, panoptic_run, "--input", str(images), "--output", str(tmp_path / "o"), *argv)
    assert exit_info.value.code.startswith(f"error: {message}")
    assert not (tmp_path / "o").exists()


def test_tool_refuses_a_detector_config_missing_weights_and_its_input_folder(
        tool, detector_run, panoptic_run, images, tmp_path):
    with pytest.raises(SystemExit, match="error: .* is not a panoptic model's config .* "
                                         "MODEL.PANOPTIC_ON True"):
        run_tool(tool, detector_run, "--input", str(images), "--things", "egg",
                 "--output", str(tmp_path / "o"))
    with pytest.raises(SystemExit, match="error: MODEL.WEIGHTS file not found"):
        tool.main(["--config-file", str(panoptic_run / "config.yaml"), "--input", str(images),
                   "--things", "egg", "--output", str(tmp_path / "o"),
                   "MODEL.WEIGHTS", str(tmp_path / "missing.pth")])
    with pytest.raises(SystemExit, match="error: .*needs a trained model"):
        tool.main(["--config-file", str(panoptic_run / "config.yaml"), "--input", str(images),
                   "--things", "egg", "--output", str(tmp_path / "o"), "MODEL.WEIGHTS", ""])
    before = sorted(p.name for p in images.iterdir())
    with pytest.raises(SystemExit, match="error: --output .* is the input folder"):
        run_tool(tool, panoptic_run, "--input", str(images), "--things", "egg",
                 "--output", str(images))
    photos = tmp_path / "photos"
    (photos / "panoptic").mkdir(parents=True)  # the PNG folder of --output photos
    with pytest.raises(SystemExit, match="error: --output .*panoptic is the input folder"):
        run_tool(tool, panoptic_run, "--input", str(photos / "panoptic"), "--things", "egg",
                 "--output", str(photos))
    assert sorted(p.name for p in images.iterdir()) == before

def test_tool_never_writes_over_an_input(tool, panoptic_run, tmp_path, capsys):
    folder = tmp_path / "photos"
    (folder / "panoptic").mkdir(parents=True)
    Image.fromarray(np.full((32, 32, 3), 50, np.uint8)).save(folder / "panoptic" / "a.png")
    original = (folder / "panoptic" / "a.png").read_bytes()
    with pytest.raises(SystemExit, match="no image could be processed"):
        run_tool(tool, panoptic_run, "--input", str(folder / "panoptic" / "a.png"), "--things",
                 "egg", "--output", str(folder))
    assert "would overwrite the input" in capsys.readouterr().err
    assert (folder / "panoptic" / "a.png").read_bytes() == original
    assert not (folder / "panoptic.json").exists()
