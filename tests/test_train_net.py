"""tools/train_net.py and tools/demo.py end to end on a tiny toy world and a tiny random CLIP."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY_DETECTOR
from ovdet.modeling.meta_arch.ov_rcnn import OpenVocabRCNN

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def load_tool(name):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train(config_file, output_dir, *overrides, flags=()):
    load_tool("train_net").main(["--config-file", config_file, *flags, *TINY_DETECTOR,
                                 "OUTPUT_DIR", str(output_dir), *overrides])


@pytest.fixture(scope="module")
def trained(tiny_world, config_file, tmp_path_factory):
    output = tmp_path_factory.mktemp("run")
    train(config_file, output)
    return output


def test_outputs_of_a_run(trained, capsys):
    for name in ("config.yaml", "model_final.pth", "last_checkpoint", "metrics.json",
                 "eval_metrics.json", "inference/tiny_val_results.json", "log.txt"):
        assert (trained / name).is_file(), name
    assert (trained / "last_checkpoint").read_text().strip() == "model_final.pth"
    lines = [json.loads(line) for line in (trained / "metrics.json").read_text().splitlines()]
    assert [line["iteration"] for line in lines] == [0, 3] and "loss_cls" in lines[0]
    metrics = json.loads((trained / "eval_metrics.json").read_text())
    assert set(metrics["tiny_val"]) == {"bbox", "segm"}
    assert {"AP", "AP50", "AP50_base", "AP50_novel"} <= set(metrics["tiny_val"]["bbox"])
    checkpoint = torch.load(trained / "model_final.pth", weights_only=True)
    assert len(checkpoint["base_names"]) == 8 and checkpoint["iteration"] == 3


def train_killed_then_resumed(config_file, output_dir, monkeypatch, *overrides):
    """A run killed in its third iteration (after the checkpoint of iteration 1), then resumed."""
    real_forward = OpenVocabRCNN.forward
    calls = []

    def dies_in_iteration_two(self, batch):
        if self.training:
            calls.append(1)
            if len(calls) == 3:
                raise KeyboardInterrupt
        return real_forward(self, batch)

    monkeypatch.setattr(OpenVocabRCNN, "forward", dies_in_iteration_two)
    with pytest.raises(KeyboardInterrupt):
        train(config_file, output_dir, *overrides)
    assert (output_dir / "last_checkpoint").read_text().strip() == "model_0000001.pth"
    monkeypatch.setattr(OpenVocabRCNN, "forward", real_forward)
    train(config_file, output_dir, *overrides, flags=["--resume"])


def test_killed_and_resumed_run_equals_whole_run(trained, config_file, tmp_path, monkeypatch):
    train_killed_then_resumed(config_file, tmp_path, monkeypatch)
    whole = torch.load(trained / "model_final.pth", weights_only=True)["model"]
    resumed = torch.load(tmp_path / "model_final.pth", weights_only=True)["model"]
    assert whole.keys() == resumed.keys()
    for key in whole:
        assert torch.equal(whole[key], resumed[key]), key


def test_eval_only_writes_metrics(trained, tmp_path, capsys):
    load_tool("train_net").main(["--config-file", str(trained / "config.yaml"), "--eval-only",
                                 "MODEL.WEIGHTS", str(trained / "model_final.pth"),
                                 "DATASETS.TEST", "('tiny_val',)", "OUTPUT_DIR", str(tmp_path)])
    metrics = json.loads((tmp_path / "eval_metrics.json").read_text())
    assert metrics == json.loads((trained / "eval_metrics.json").read_text())
    assert "copypaste: tiny_val bbox AP=" in capsys.readouterr().out


def test_nan_loss_stops_with_clear_error(config_file, tiny_world, tmp_path, monkeypatch):
    monkeypatch.setattr(OpenVocabRCNN, "forward",
                        lambda self, batch: {"loss_cls": torch.tensor(float("nan"),
                                                                      requires_grad=True)})
    with pytest.raises(SystemExit, match="error: loss became nan at iteration 0"):
        train(config_file, tmp_path)


def test_bad_command_lines_exit_with_one_line(config_file, tmp_path, capsys):
    with pytest.raises(SystemExit, match="unknown config key SOLVER.MAX_ITERS; did you mean "
                                         "SOLVER.MAX_ITER"):
        train(config_file, tmp_path, "SOLVER.MAX_ITERS", "3")
    with pytest.raises(SystemExit, match="dataset 'nope' is not registered"):
        train(config_file, tmp_path, "DATASETS.TRAIN", "('nope',)")
    with pytest.raises(SystemExit, match="needs MODEL.WEIGHTS"):
        train(config_file, tmp_path, flags=["--eval-only"])


def test_demo_any_image(trained, tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.new("RGB", (90, 60), (200, 30, 30)).save(inputs / "rgb.png")
    Image.new("L", (40, 40), 128).save(inputs / "gray.png")
    Image.new("RGBA", (50, 30), (0, 0, 255, 100)).save(inputs / "rgba.png")
    Image.fromarray(np.full((30, 30), 40000, dtype=np.uint16)).save(inputs / "deep.png")
    Image.new("RGB", (1, 1)).save(inputs / "tiny.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: width and height swap
    Image.new("RGB", (64, 32), (0, 200, 0)).save(inputs / "rotated.jpg", exif=exif)
    (inputs / "broken.png").write_bytes(b"\x89PNG not really")
    out = tmp_path / "out"
    load_tool("demo").main(["--config-file", str(trained / "config.yaml"), "--input", str(inputs),
                            "--vocabulary", "tomato,egg,grape", "--output", str(out),
                            "--confidence", "0", "MODEL.WEIGHTS", str(trained / "model_final.pth")])
    captured = capsys.readouterr()
    skipped = [line for line in captured.err.splitlines() if line.startswith("skipped:")]
    assert len(skipped) == 1 and "broken.png" in skipped[0] and "Traceback" not in captured.err
    assert "wrote 6 of 7 images" in captured.out
    sizes = {"rgb": (90, 60), "gray": (40, 40), "rgba": (50, 30), "deep": (30, 30),
             "tiny": (1, 1), "rotated": (32, 64)}
    for stem, (width, height) in sizes.items():
        assert Image.open(out / f"{stem}.png").size == (width, height)
        detections = json.loads((out / f"{stem}.json").read_text())
        for d in detections:
            x1, y1, x2, y2 = d["bbox"]
            assert 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height
            assert d["category"] in {"tomato", "egg", "grape"} and 0 <= d["score"] <= 1


def test_fine_tuning_from_another_runs_weights_keeps_its_own_base_names(tiny_world, config_file,
                                                                       tmp_path):
    """Pseudo-box pretraining on all 12 classes, then fine-tuning on the 8 base classes: the
    fine-tuned detector's base classes are the 8 it was fine-tuned on, not the checkpoint's 12."""
    from ovdet.data import register_coco_instances

    register_coco_instances("tiny_train_all", str(tiny_world / "annotations/instances_train.json"),
                            str(tiny_world / "train"))
    train(config_file, tmp_path / "pretrain", "DATASETS.TRAIN", "('tiny_train_all',)",
          "DATASETS.TEST", "()")
    pretrained = tmp_path / "pretrain/model_final.pth"
    assert len(torch.load(pretrained, weights_only=False)["base_names"]) == 12
    train(config_file, tmp_path / "finetune", "MODEL.WEIGHTS", str(pretrained),
          "DATASETS.TEST", "()")
    finetuned = torch.load(tmp_path / "finetune/model_final.pth", weights_only=False)
    assert len(finetuned["base_names"]) == 8 and "banana" not in finetuned["base_names"]


def test_rpn_proposals_serve_as_pseudo_box_candidates(trained, tiny_world, tmp_path):
    from ovdet import OVPredictor
    from ovdet.config import get_cfg
    from ovdet.pseudo.captions import group_coco_captions

    cfg = get_cfg()
    cfg.merge_from_file(str(trained / "config.yaml"))
    predictor = OVPredictor(cfg, str(trained / "model_final.pth"))
    proposals, = predictor.propose([np.full((50, 90, 3), 120, np.uint8)])
    boxes = proposals["boxes"]
    assert boxes.shape[1] == 4 and 0 < len(boxes) <= 30
    assert len(proposals["objectness"]) == len(boxes)
    assert (boxes[:, [0, 2]] >= 0).all() and (boxes[:, [0, 2]] <= 90).all()
    assert (boxes[:, [1, 3]] >= 0).all() and (boxes[:, [1, 3]] <= 50).all()

    records, _ = group_coco_captions(json.loads(
        (tiny_world / "annotations/captions_val.json").read_text()))
    captions = tmp_path / "captions.json"
    captions.write_text(json.dumps({"images": records}))
    out = tmp_path / "pseudo.json"
    load_tool("generate_pseudo_boxes").main([
        "--captions", str(captions), "--image-root", str(tiny_world / "val"),
        "--vocabulary", str(tiny_world / "annotations/instances_val.json"),
        "--proposals", str(trained / "model_final.pth"), "--out", str(out)])
    annotations = json.loads(out.read_text())["annotations"]
    assert annotations
    files = {r["id"]: tiny_world / "val" / r["file_name"] for r in records}
    for annotation in annotations:
        x, y, w, h = annotation["bbox"]
        candidates = predictor.propose([str(files[annotation["image_id"]])])[0]["boxes"]
        assert np.abs(candidates - np.array([x, y, x + w, y + h], np.float32)).max(1).min() < 1e-3


def test_a_config_the_model_refuses_never_replaces_a_runs_config(tiny_world, config_file, tmp_path):
    (tmp_path / "config.yaml").write_text("an earlier run's config")
    with pytest.raises(SystemExit, match="MODEL.OPEN_VOCAB.PROMPTS: region prompts file"):
        train(config_file, tmp_path, "MODEL.OPEN_VOCAB.EMBEDDING_SOURCE", "RegionPromptEmbeddings",
              "MODEL.OPEN_VOCAB.PROMPTS", str(tmp_path / "missing.pt"))
    assert (tmp_path / "config.yaml").read_text() == "an earlier run's config"
