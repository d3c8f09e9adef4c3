"""What a new user ran into (issue 8, section 3): each test fails on the code before its fix.

The tools run in-process (``main(argv)``) on the tiny toy world and a tiny random CLIP.
"""
import argparse
import json
import logging
import math
import pydoc
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY_DETECTOR
from ovdet.config import get_cfg
from ovdet.data.toyworld.categories import BASE_NAMES, STUFF_CATEGORIES
from ovdet.engine.trainer import lr_schedule
from ovdet.modeling.meta_arch.ov_rcnn import OpenVocabRCNN
from ovdet.utils.io import atomic_write_json
from ovdet.utils.visualize import draw_detections, label_color
from test_train_net import load_tool

TOY_STUFF = [c.name for c in STUFF_CATEGORIES]


def train_net(*argv):
    load_tool("train_net").main(list(argv))


def train(config_file, output_dir, *overrides, flags=()):
    """Two tiny iterations, no evaluation unless ``overrides`` name DATASETS.TEST."""
    train_net("--config-file", config_file, *flags, *TINY_DETECTOR, "SOLVER.MAX_ITER", "2",
              "SOLVER.STEPS", "(1,)", "SOLVER.CHECKPOINT_PERIOD", "1", "DATASETS.TEST", "()",
              "OUTPUT_DIR", str(output_dir), *overrides)


@pytest.fixture(scope="module")
def trained(tiny_world, config_file, tmp_path_factory):
    output = tmp_path_factory.mktemp("run")
    train(config_file, output)
    return output


def demo(trained, *argv, weights=None):
    load_tool("demo").main(["--config-file", str(trained / "config.yaml"), *argv,
                            "MODEL.WEIGHTS", str(weights or trained / "model_final.pth")])


def toy_image(path, value=120):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 32), (value, 30, 30)).save(path)


# 1. --vocabulary: the pseudo-box tool's files, and no silent class names made of paths


def test_demo_reads_the_pseudo_box_vocabulary_files(trained, tiny_world, tmp_path, monkeypatch):
    from ovdet.predictor import OVPredictor

    seen = []
    real = OVPredictor.set_vocabulary
    monkeypatch.setattr(OVPredictor, "set_vocabulary", lambda self, names, *a, **k:
                        seen.append(list(names)) or real(self, names, *a, **k))
    toy_image(tmp_path / "in" / "a.png")
    instances = tiny_world / "annotations/instances_val.json"
    demo(trained, "--input", str(tmp_path / "in"), "--vocabulary", str(instances),
         "--output", str(tmp_path / "out1"))
    names = [c["name"] for c in json.loads(instances.read_text())["categories"]]
    text = tmp_path / "names.txt"
    text.write_text("tomato, tomatoes\n\nice cube\n")
    demo(trained, "--input", str(tmp_path / "in"), "--vocabulary", str(text),
         "--output", str(tmp_path / "out2"))
    assert seen == [names, ["tomato", "ice cube"]]


@pytest.mark.parametrize("spec", ["annotations/instances_vall.json", "names.txt", "voc/names"])
def test_demo_misspelt_vocabulary_path_is_an_error(trained, tmp_path, spec):
    toy_image(tmp_path / "in" / "a.png")
    with pytest.raises(SystemExit, match="vocabulary file not found"):
        demo(trained, "--input", str(tmp_path / "in"), "--vocabulary", spec,
             "--output", str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


# 3. evaluation never changes a run's config.yaml


def test_eval_only_writes_config_eval_and_keeps_config(trained, capsys):
    before = (trained / "config.yaml").read_bytes()
    train_net("--config-file", str(trained / "config.yaml"), "--eval-only",
              "MODEL.WEIGHTS", str(trained / "model_final.pth"), "DATASETS.TEST", "('tiny_val',)",
              "MODEL.OPEN_VOCAB.USE_CLIP_ENSEMBLE", "False")
    assert (trained / "config.yaml").read_bytes() == before
    evaluated = get_cfg()
    evaluated.merge_from_file(str(trained / "config_eval.yaml"))
    assert evaluated.MODEL.OPEN_VOCAB.USE_CLIP_ENSEMBLE is False
    assert "copypaste: tiny_val bbox" in capsys.readouterr().out


# 4. and 5. outputs never overwrite an input, nor each other


def test_demo_refuses_to_write_over_its_inputs(trained, tmp_path, capsys):
    folder = tmp_path / "photos"
    toy_image(folder / "a.png")
    original = (folder / "a.png").read_bytes()
    with pytest.raises(SystemExit, match="is the input folder"):
        demo(trained, "--input", str(folder), "--vocabulary", "tomato", "--output", str(folder))
    with pytest.raises(SystemExit, match="no image could be processed"):
        demo(trained, "--input", str(folder / "a.png"), "--vocabulary", "tomato",
             "--output", str(folder))
    assert "would overwrite the input" in capsys.readouterr().err
    assert (folder / "a.png").read_bytes() == original
    assert sorted(p.name for p in folder.iterdir()) == ["a.png"]


def test_demo_output_names_never_collide(trained, tmp_path, capsys):
    inputs = [tmp_path / "x" / "a.png", tmp_path / "x" / "a_1.png", tmp_path / "y" / "a.png"]
    for value, path in zip((10, 120, 240), inputs):
        toy_image(path, value)
    out = tmp_path / "out"
    demo(trained, "--input", str(tmp_path / "x"), str(tmp_path / "y"), "--vocabulary", "tomato",
         "--output", str(out), "--confidence", "2")  # nothing drawn: each output is its input
    assert "wrote 3 of 3 images" in capsys.readouterr().out
    drawn = sorted(out.glob("*.png"))
    assert len(drawn) == 3 and len(list(out.glob("*.json"))) == 3
    assert {int(np.asarray(Image.open(p))[0, 0, 0]) for p in drawn} == {10, 120, 240}


def test_output_names_are_unique_for_sure(tmp_path):
    from ovdet.utils.outputs import output_names

    paths = [tmp_path / "x/a.png", tmp_path / "x/a_1.png", tmp_path / "y/a.png",
             tmp_path / "x__a.png", tmp_path / "A.PNG", tmp_path / "y/a.jpg"]
    names = output_names(paths)
    assert len({n.casefold() for n in names}) == len(paths)
    assert names[1] == "a_1" and names[0] == "x__a" and names[2] == "y__a"


# 6. SOLVER.MAX_ITER alone shortens a schedule


def test_max_iter_alone_drops_later_steps(caplog):
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.MAX_ITER", "5", "SOLVER.WARMUP_ITERS", "0"])
    with caplog.at_level(logging.WARNING):
        schedule = lr_schedule(cfg)
    assert "dropping the steps" in caplog.text and "60000" in caplog.text
    assert schedule(0.0) == schedule(0.9) == 1.0
    cfg.merge_from_list(["SOLVER.STEPS", "(3, 80000)"])
    assert math.isclose(lr_schedule(cfg)(0.8), 0.1)


# 7. dataset names are checked before anything is built


def test_misspelt_test_dataset_found_before_building_the_model(tiny_world, config_file, tmp_path,
                                                               monkeypatch):
    tool = load_tool("train_net")

    def no_model(cfg):
        raise AssertionError("the model was built before the datasets were checked")

    monkeypatch.setattr(tool, "build_model", no_model)
    with pytest.raises(SystemExit) as error:
        tool.main(["--config-file", config_file, *TINY_DETECTOR, "OUTPUT_DIR", str(tmp_path),
                   "DATASETS.TEST", "('tiny_vall', 'tiny_val')"])
    message = str(error.value)
    assert message.count("\n") == 0 and "'tiny_vall'" in message
    assert "did you mean 'tiny_val'" in message and "DATASETS.TEST" in message
    assert "registered: " in message and "toyworld_val" in message


# 9. one clear line instead of a traceback


def test_missing_weights_for_demo_and_eval(trained, tmp_path):
    toy_image(tmp_path / "in" / "a.png")
    missing = str(tmp_path / "nope.pth")
    with pytest.raises(SystemExit, match="MODEL.WEIGHTS file not found: .*nope.pth"):
        demo(trained, "--input", str(tmp_path / "in"), "--vocabulary", "tomato",
             "--output", str(tmp_path / "out"), weights=missing)
    with pytest.raises(SystemExit, match="MODEL.WEIGHTS file not found: .*nope.pth"):
        train_net("--config-file", str(trained / "config.yaml"), "--eval-only",
                  "MODEL.WEIGHTS", missing, "OUTPUT_DIR", str(tmp_path / "eval"))


def test_output_that_is_a_file(trained, config_file, tmp_path):
    a_file = tmp_path / "taken"
    a_file.write_text("mine")
    with pytest.raises(SystemExit, match="OUTPUT_DIR .*taken is an existing file"):
        train(config_file, a_file)
    with pytest.raises(SystemExit, match="OUTPUT_DIR .*taken/run cannot be a folder: .*taken is"):
        train(config_file, a_file / "run")  # a folder inside a file
    toy_image(tmp_path / "in" / "a.png")
    with pytest.raises(SystemExit, match="--output .*taken is an existing file"):
        demo(trained, "--input", str(tmp_path / "in"), "--vocabulary", "tomato",
             "--output", str(a_file))
    assert a_file.read_text() == "mine"


def test_invalid_dataset_json(config_file, tmp_path):
    from ovdet.data import register_coco_instances

    (tmp_path / "broken.json").write_text('{"images": [')
    register_coco_instances("broken_train", str(tmp_path / "broken.json"), str(tmp_path))
    with pytest.raises(SystemExit, match="dataset 'broken_train': .*broken.json is not valid JSON"):
        train(config_file, tmp_path / "run", "DATASETS.TRAIN", "('broken_train',)")


def test_yaml_syntax_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("MODEL:\n  DEVICE: cpu\n SOLVER: [1,\n")
    with pytest.raises(SystemExit, match=r"bad.yaml:3:2 is not valid YAML"):
        train_net("--config-file", str(bad))
    child = tmp_path / "child.yaml"
    child.write_text(f"_BASE_: {bad}\n")
    with pytest.raises(SystemExit, match=r"bad.yaml:3:2 is not valid YAML"):
        train_net("--config-file", str(child))


def test_corrupt_checkpoint_on_resume(trained, config_file, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    last = run / (run / "last_checkpoint").read_text().strip()
    last.write_bytes(last.read_bytes()[:500])
    with pytest.raises(SystemExit) as error:
        train(config_file, run, flags=["--resume"])
    message = str(error.value)
    assert message.count("\n") == 0 and last.name in message
    assert "truncated or corrupt" in message and "last_checkpoint" in message
    (run / "garbage.pth").write_bytes(b"not a checkpoint at all")
    (run / "last_checkpoint").write_text("garbage.pth")
    with pytest.raises(SystemExit, match="garbage.pth cannot be read"):
        train(config_file, run, flags=["--resume"])


def test_training_set_without_base_classes(tiny_world, config_file, tmp_path):
    from ovdet.data import register_coco_instances

    register_coco_instances("tiny_all_novel", str(tiny_world / "annotations/instances_train.json"),
                            str(tiny_world / "train"), novel=BASE_NAMES, keep="base")
    with pytest.raises(SystemExit, match="'tiny_all_novel' has no base classes"):
        train(config_file, tmp_path, "DATASETS.TRAIN", "('tiny_all_novel',)")


# 10. pseudo boxes: a default background, and COCO captions files read directly


def test_default_background_names():
    from ovdet.data.stuff_names import COCO_STUFF_NAMES
    from ovdet.pseudo.generator import default_background
    from ovdet.pseudo.vocabulary import NounVocabulary

    assert len(COCO_STUFF_NAMES) == 53 and all("-" not in n for n in COCO_STUFF_NAMES)
    assert default_background(NounVocabulary.from_names(["tomato", "ice cube"])) == TOY_STUFF
    coco = default_background(NounVocabulary.from_names(["cat", "pillow", "trees"]))
    assert {"wall", "sky", "grass", "floor"} <= set(coco)
    assert not {"pillow", "tree"} & set(coco)  # the vocabulary's own names never compete
    tool = load_tool("generate_pseudo_boxes")
    args = tool.parse_args(["--captions", "c", "--image-root", "i", "--vocabulary", "v",
                            "--out", "o"])
    assert args.background == "auto"
    vocabulary = NounVocabulary.from_names(["cat"])
    assert tool.background_names("none", vocabulary) == []
    assert tool.background_names("sky, road", vocabulary) == ["sky", "road"]


def test_pseudo_boxes_from_a_coco_captions_file(tiny_world, tmp_path):
    out = tmp_path / "pseudo.json"
    load_tool("generate_pseudo_boxes").main([
        "--captions", str(tiny_world / "annotations/captions_val.json"),
        "--image-root", str(tiny_world / "val"),
        "--vocabulary", str(tiny_world / "annotations/instances_val.json"),
        "--input-size", "64", "--out", str(out), "--device", "cpu"])
    written = json.loads(out.read_text())
    assert written["info"]["background"] == TOY_STUFF
    assert written["annotations"] and written["images"]


# 11. a missing input is skipped, not fatal


def test_demo_skips_a_missing_input(trained, tmp_path, capsys):
    toy_image(tmp_path / "a.png")
    demo(trained, "--input", str(tmp_path / "gone.png"), str(tmp_path / "a.png"),
         "--vocabulary", "tomato", "--output", str(tmp_path / "out"))
    captured = capsys.readouterr()
    skipped = [line for line in captured.err.splitlines() if line.startswith("skipped:")]
    assert len(skipped) == 1 and "gone.png" in skipped[0]
    assert "wrote 1 of 2 images" in captured.out and (tmp_path / "out/a.png").is_file()
    with pytest.raises(SystemExit, match="no image could be processed"):
        demo(trained, "--input", str(tmp_path / "gone.png"), "--vocabulary", "tomato",
             "--output", str(tmp_path / "out2"))


# 12. labels that can be read on small images


def text_pixels(image, box_color):
    """Pixels of an overlay that are neither the background gray nor the tag/box colour."""
    return ~(image == 100).all(-1) & ~(image == np.array(box_color)).all(-1)


def test_cjk_and_emoji_labels_are_drawn_readably():
    from ovdet.utils.visualize import font_for, missing_chars

    for label in ("猫 0.91", "🍎 0.91", "crème brûlée", "tomato"):
        font, text = font_for(label, 9)
        assert text and not missing_chars(font, text), label  # drawable, fallback or not
    assert font_for("crème brûlée", 9)[1] == "crème brûlée"  # Latin names are drawn as they are
    image = np.full((128, 128, 3), 100, np.uint8)
    box = np.array([[20.0, 40.0, 100.0, 100.0]])
    cat, dog = (draw_detections(image, box, [name]) for name in ("猫", "犬"))
    assert (text_pixels(cat, label_color("猫"))[25:40]
            != text_pixels(dog, label_color("犬"))[25:40]).any()


def test_tags_of_overlapping_boxes_do_not_cover_each_other():
    image = np.full((128, 128, 3), 100, np.uint8)
    boxes = np.array([[10.0, 30.0, 80.0, 90.0]] * 3)  # one object, three guesses
    labels = ["egg", "dragon fruit", "ice cube"]
    assert len({label_color(label) for label in labels}) == 3
    out = draw_detections(image, boxes, labels, np.array([0.9, 0.8, 0.7]))
    for label in labels:  # every tag keeps its filled background
        assert (out[:, :100] == np.array(label_color(label))).all(-1).sum() > 100, label


# 13. NaN: honest about checkpoints, and JSON without bare NaN


def test_nan_loss_before_the_first_checkpoint(config_file, tiny_world, tmp_path, monkeypatch):
    monkeypatch.setattr(OpenVocabRCNN, "forward",
                        lambda self, batch: {"loss_cls": torch.tensor(float("nan"),
                                                                      requires_grad=True)})
    with pytest.raises(SystemExit) as error:
        train(config_file, tmp_path)
    assert "no checkpoint was saved yet" in str(error.value)
    assert "last good checkpoint" not in str(error.value)


def test_nan_loss_after_a_checkpoint_names_it(config_file, tiny_world, tmp_path, monkeypatch):
    real_forward = OpenVocabRCNN.forward
    calls = []

    def nan_in_iteration_one(self, batch):
        calls.append(1)
        if len(calls) == 2:
            return {"loss_cls": torch.tensor(float("nan"), requires_grad=True)}
        return real_forward(self, batch)

    monkeypatch.setattr(OpenVocabRCNN, "forward", nan_in_iteration_one)
    with pytest.raises(SystemExit, match="last good checkpoint is .*model_0000000.pth"):
        train(config_file, tmp_path)


def test_json_files_hold_null_not_nan(tmp_path):
    path = tmp_path / "metrics.json"
    atomic_write_json(path, {"bbox": {"AP": 1.5, "APm": float("nan"), "APl": float("inf")},
                             "list": [float("-inf"), (2.0, float("nan"))], "n": 3})

    def refuse(constant):
        raise ValueError(f"bare {constant} is not JSON")

    assert json.loads(path.read_text(), parse_constant=refuse) == {
        "bbox": {"AP": 1.5, "APm": None, "APl": None}, "list": [None, [2.0, None]], "n": 3}


# 14. help(ovdet) and training on one's own data without code


def test_help_lists_the_api_and_import_stays_light():
    import ovdet

    assert {"OVPredictor", "get_cfg", "build_model", "register_coco_instances", "load_clip",
            "DatasetCatalog"} <= set(ovdet.__all__) <= set(dir(ovdet))
    text = pydoc.render_doc(ovdet, renderer=pydoc.plaintext)
    functions = text[text.index("FUNCTIONS"):]
    for name in ("get_cfg(", "build_model(", "register_coco_instances(", "load_clip("):
        assert name in functions, name
    assert "class OVPredictor" in text
    from ovdet.config import get_cfg as real_get_cfg

    assert ovdet.get_cfg is real_get_cfg
    code = "import sys, ovdet; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"


def test_train_net_dataset_flag_registers_own_data(tiny_world, config_file, tmp_path):
    from ovdet.data import DatasetCatalog

    annotations = tiny_world / "annotations"
    train(config_file, tmp_path / "run",
          "DATASETS.TRAIN", "('own_train',)", "DATASETS.TEST", "('own_val',)",
          flags=["--dataset", f"own_train={annotations / 'instances_train.json'}:"
                              f"{tiny_world / 'train'}:novel=tomato,lime",
                 "--dataset", f"own_val={annotations / 'instances_val.json'}:{tiny_world / 'val'}"])
    train_meta, val_meta = DatasetCatalog.metadata("own_train"), DatasetCatalog.metadata("own_val")
    assert train_meta.keep == "base" and "tomato" not in train_meta.thing_classes
    assert len(train_meta.thing_classes) == 6  # 8 base - tomato - lime
    assert val_meta.keep == "all" and len(val_meta.thing_classes) == 12
    checkpoint = torch.load(tmp_path / "run/model_final.pth", weights_only=True)
    assert sorted(checkpoint["base_names"]) == sorted(train_meta.thing_classes)
    assert "own_val" in json.loads((tmp_path / "run/eval_metrics.json").read_text())
    with pytest.raises(SystemExit):  # argparse: usage and one error line
        train(config_file, tmp_path / "bad", flags=["--dataset", "own=only.json"])


# 10. review fixes: checkpoints with numpy arrays, class names, --resume, demo writes,
# vocabulary arguments, --dataset paths


def test_checkpoint_with_numpy_arrays_loads_and_a_cut_one_is_corrupt(tmp_path):
    from ovdet.engine.checkpoint import CheckpointError, DetectorCheckpointer

    model = torch.nn.Linear(2, 1)
    path = tmp_path / "converted.pth"
    torch.save({"model": {"weight": np.full((1, 2), 3.0, np.float32),
                          "bias": np.zeros(1, np.float32)}}, path)
    DetectorCheckpointer(model).load(str(path))
    assert torch.equal(model.weight.detach(), torch.full((1, 2), 3.0))
    cut = tmp_path / "cut.pth"
    cut.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="cut.pth cannot be read, it is truncated or corrupt"):
        DetectorCheckpointer(model).load(str(cut))


@pytest.mark.parametrize("split", ["TRAIN", "TEST"])
def test_clashing_class_names_found_before_building_the_model(tiny_world, config_file, tmp_path,
                                                               monkeypatch, split):
    from ovdet.data import register_coco_instances

    source = json.loads((tiny_world / "annotations/instances_train.json").read_text())
    source["categories"][:2] = [{"id": source["categories"][0]["id"], "name": "Person"},
                                {"id": source["categories"][1]["id"], "name": "person"}]
    (tmp_path / "clash.json").write_text(json.dumps(source))
    register_coco_instances(f"clash_{split}", str(tmp_path / "clash.json"),
                            str(tiny_world / "train"))
    tool = load_tool("train_net")
    monkeypatch.setattr(tool, "build_model", lambda cfg: pytest.fail("model built"))
    with pytest.raises(SystemExit) as error:
        tool.main(["--config-file", config_file, *TINY_DETECTOR, "OUTPUT_DIR", str(tmp_path / "o"),
                   f"DATASETS.{split}", f"('clash_{split}',)"])
    message = str(error.value)
    assert message.startswith("error: ") and message.count("\n") == 0
    assert f"dataset 'clash_{split}'" in message and "'Person' and 'person'" in message


def test_resume_needs_no_model_weights_file(trained, config_file, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    train(config_file, run, "MODEL.WEIGHTS", str(tmp_path / "gone.pth"), flags=["--resume"])
    assert (run / "model_final.pth").is_file()
    with pytest.raises(SystemExit, match="MODEL.WEIGHTS file not found: .*gone.pth"):
        train(config_file, tmp_path / "fresh", "MODEL.WEIGHTS", str(tmp_path / "gone.pth"),
              flags=["--resume"])


def test_demo_output_that_cannot_be_written_is_one_error_line(trained, tmp_path, monkeypatch):
    toy_image(tmp_path / "in" / "a.png")
    (tmp_path / "a_file").write_text("mine")
    with pytest.raises(SystemExit) as error:
        demo(trained, "--input", str(tmp_path / "in"), "--vocabulary", "tomato",
             "--output", str(tmp_path / "a_file" / "sub"))
    message = str(error.value)
    assert message.startswith("error: cannot write to --output ") and "a_file" in message
    assert message.count("\n") == 0

    def disk_full(path, image):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("ovdet.utils.visualize.save_png", disk_full)
    with pytest.raises(SystemExit) as error:
        demo(trained, "--input", str(tmp_path / "in"), "--vocabulary", "tomato",
             "--output", str(tmp_path / "out"))
    message = str(error.value)
    assert message.startswith("error: cannot write ")
    assert "a.png (No space left on device)" in message
    assert message.count("\n") == 0


def test_vocabulary_argument_is_a_path_only_when_it_looks_like_one(tmp_path, monkeypatch):
    from ovdet.pseudo.captions import load_vocabulary

    monkeypatch.chdir(tmp_path)
    for empty in ("", "  "):
        with pytest.raises(ValueError, match="empty vocabulary"):
            load_vocabulary(empty)
    (tmp_path / "tomato").mkdir()  # a folder that happens to share a class name
    assert load_vocabulary("tomato").names == ["tomato"]
    (tmp_path / "egg").write_text("egg\nice cube\n")  # an existing file without a suffix
    assert load_vocabulary("egg").names == ["egg", "ice cube"]
    assert load_vocabulary("egg,tomato").names == ["egg", "tomato"]
    with pytest.raises(FileNotFoundError, match="tv/monitor .*goes in a .txt file"):
        load_vocabulary("tv/monitor")
    (tmp_path / "names.txt").write_text("tv/monitor\n")
    assert load_vocabulary("names.txt").names == ["tv/monitor"]
    with pytest.raises(FileNotFoundError, match="is a folder"):
        load_vocabulary("./tomato")


def test_dataset_flag_json_path_may_contain_a_colon(tmp_path):
    from ovdet.engine.launch import parse_dataset_spec

    json_file = str(tmp_path / "run:2" / "train.json")
    spec = parse_dataset_spec(f"own={json_file}:{tmp_path / 'images'}:novel=zebra, okapi")
    assert (spec.name, spec.json_file, spec.image_root) == ("own", json_file,
                                                           str(tmp_path / "images"))
    assert spec.novel == ("zebra", "okapi")
    assert parse_dataset_spec(f"own={json_file}:img").json_file == json_file
    for bad in ("own=only.json", "own=a.json:img:novel=", "=a.json:img"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_dataset_spec(bad)


def test_names_of_one_class_twice_are_refused_before_caption_matching(caplog):
    from ovdet.pseudo.captions import load_vocabulary

    with caplog.at_level(logging.WARNING), pytest.raises(ValueError, match="'Tomato' and 'tomato'"):
        load_vocabulary("Tomato,banana,tomato")
    assert not caplog.records  # no caption-matching warning before the error
