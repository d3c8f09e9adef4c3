"""tools/benchmark.py: argument checks, vocabulary and result reading (no model is built here)."""
import importlib.util
import json
import math
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "benchmark.py"


@pytest.fixture(scope="module")
def benchmark():
    spec = importlib.util.spec_from_file_location("ovdet_benchmark_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("argv, message", [
    (["--size", "770"], "--size must be a positive multiple of 16"),
    (["--vocab", "0"], "--vocab must be at least 1"),
    (["--repeats", "0"], "--repeats must be at least 1"),
])
def test_bad_arguments_exit_with_one_line(benchmark, argv, message, capsys):
    with pytest.raises(SystemExit, match=message):
        benchmark.main(["detector", *argv])


def test_owlvit_peer_without_transformers(benchmark, monkeypatch):
    monkeypatch.setattr(benchmark.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SystemExit, match=r"needs transformers: pip install -e '\.\[bench\]'"):
        benchmark.main(["detector", "--peer", "owlvit"])


def test_vocabulary_names_extend_coco(benchmark):
    names = benchmark.vocabulary_names(67)
    assert len(set(names)) == 67 and names[:2] == ["person", "bicycle"]
    assert names[-2:] == ["category 66", "category 67"]
    assert benchmark.vocabulary_names(3) == names[:3]


def test_detector_config_errors_are_one_line(benchmark, tmp_path):
    with pytest.raises(SystemExit, match="error: config file not found: .*nope.yaml"):
        benchmark.main(["detector", "--config-file", str(tmp_path / "nope.yaml")])
    with pytest.raises(SystemExit, match="error: unknown config key MODEL.RPN.NMS_THRESHOLD"):
        benchmark.main(["detector", "MODEL.RPN.NMS_THRESHOLD", "0.5"])


def test_panoptic_benchmark_on_a_tiny_model(benchmark, tiny_world, tmp_path, capsys):
    """Both classifiers on the same masks: JSON with their seconds, and PQ per classifier."""
    import json

    import torch

    from conftest import TINY_PANOPTIC
    from ovdet.config import get_cfg
    from ovdet.engine.checkpoint import DetectorCheckpointer
    from ovdet.modeling.registry import build_model

    cfg = get_cfg()
    cfg.merge_from_list(TINY_PANOPTIC)
    torch.manual_seed(0)
    model = build_model(cfg)
    model.set_training_vocabulary(["tomato"], stuff=["sky"])
    DetectorCheckpointer(model, str(tmp_path)).save("tiny")
    config = tmp_path / "tiny.yaml"
    config.write_text(cfg.dump())
    benchmark.main(["panoptic", "--config-file", str(config), "--size", "64", "--masks", "7",
                    "--repeats", "1", "--dataset", "tiny_val_panoptic",
                    "MODEL.WEIGHTS", str(tmp_path / "tiny.pth")])
    result = json.loads(capsys.readouterr().out)
    speed = result["speed"]
    assert speed["masks"] == 7 and speed["mask_grid"] == [16, 16]
    assert speed["ratio"] == pytest.approx(speed["crop_s"] / speed["rma_s"], rel=0.02)
    accuracy = result["accuracy"]
    assert accuracy["images"] == 6 and set(accuracy) >= {"rma", "crop", "rma_head_masks"}
    assert all(0 <= accuracy[k]["PQ"] <= 100 for k in ("rma", "crop", "rma_head_masks"))
    masks = benchmark.random_masks(5, (8, 12))
    assert masks.shape == (5, 8, 12) and set(masks.unique().tolist()) == {-4.0, 4.0}


def test_panoptic_benchmark_errors(benchmark, tmp_path):
    with pytest.raises(SystemExit, match="error: .* has no panoptic branch"):
        benchmark.main(["panoptic", "--config-file",
                        str(TOOL.parents[1] / "configs" / "Base-OVRCNN.yaml"), "--size", "64"])
    with pytest.raises(SystemExit, match="must be positive"):
        benchmark.main(["panoptic", "--masks", "0"])


@pytest.mark.parametrize("argv, message", [
    (["--rows", "plain,rcl"], "--rows takes names from"),
    (["--scorings", "clip"], "--scorings takes names from"),
    (["--config-file", "missing.yaml"], "--config-file missing.yaml not found"),
    (["--check-world", "nowhere"], "needs annotations/instances_val.json"),
])
def test_contrastive_ablation_checks_its_arguments_before_training(benchmark, argv, message,
                                                                   tmp_path):
    with pytest.raises(SystemExit, match=message):
        benchmark.main(["contrastive", "--output-dir", str(tmp_path), *argv])
    assert not any(tmp_path.iterdir())  # nothing trained


def test_contrastive_ablation_reads_one_evaluation(benchmark, tmp_path):
    metrics = {"zsd": {"mAP50": 12.345, "recall100@0.4": 90.0, "recall100@0.5": 80.0,
                       "recall100@0.6": None},
               "gzsd": {"seen_mAP50": 95.0, "unseen_mAP50": 33.0, "hm_mAP50": 48.99,
                        "seen_recall100": 98.0, "unseen_recall100": 80.0, "hm_recall100": 88.09}}
    (tmp_path / "model_final.pth").write_text("weights")
    folder = tmp_path / "eval" / "toyworld_val_head"
    folder.mkdir(parents=True)
    (folder / "eval_metrics.json").write_text(json.dumps({"toyworld_val": metrics}))
    cells = benchmark.evaluated(tmp_path, "toyworld_val", "head", [])  # newer than the weights
    assert cells["novel_AP50"] == 33.0 and cells["base_AP50"] == 95.0
    assert cells["zsd_mAP50"] == 12.35 and math.isnan(cells["zsd_recall100@0.6"])


@pytest.mark.parametrize("argv, message", [
    (["--rows", "soft,hard"], "--rows takes names from"),
    (["--check-world", "nowhere"], "needs annotations/instances_val.json"),
])
def test_pseudo_finetune_checks_its_arguments_before_training(benchmark, argv, message, tmp_path):
    with pytest.raises(SystemExit, match=message):
        benchmark.main(["pseudo-finetune", "--output-dir", str(tmp_path), *argv])
    assert not any(tmp_path.iterdir())  # nothing trained


def _fake_train_net(calls, novel=85.0, base=95.0):
    """A stand-in for tools/train_net.py: records the command line, writes what a run writes."""
    def train_net(args):
        calls.append(args)
        output = Path(args[args.index("OUTPUT_DIR") + 1])
        output.mkdir(parents=True, exist_ok=True)
        name = "toyworld_val"
        if "--eval-only" in args:
            name = args[args.index("DATASETS.TEST") + 1].strip("(',)")
        else:
            (output / "model_final.pth").write_text("weights")
            (output / "config.yaml").write_text("config")
        (output / "eval_metrics.json").write_text(json.dumps(
            {name: {"bbox": {"AP50_novel": novel, "AP50_base": base}}}))
    return train_net


def test_pseudo_finetune_trains_what_is_missing_or_stale(benchmark, tmp_path, monkeypatch):
    import os

    calls = []
    monkeypatch.setattr(benchmark, "train_net", _fake_train_net(calls))
    argv = ["pseudo-finetune", "--output-dir", str(tmp_path), "--rows", "soft,keep"]
    benchmark.main(argv)
    configs = [Path(c[c.index("--config-file") + 1]).name for c in calls]
    assert configs == ["pbovd_pretrain.yaml", "pbovd_keep_soft.yaml", "pbovd_keep.yaml"]
    pretrained = str(tmp_path / "pbovd_pretrain" / "model_final.pth")
    assert all(c[c.index("MODEL.WEIGHTS") + 1] == pretrained for c in calls[1:])
    calls.clear()
    benchmark.main(argv)  # everything is there and fresh: nothing runs
    assert calls == []
    # new pretrained weights make the fine-tuned rows stale: they train again, from scratch
    later = os.stat(pretrained).st_mtime + 10
    os.utime(pretrained, (later, later))
    (tmp_path / "pbovd_keep" / "last_checkpoint").write_text("model_0000249.pth")
    benchmark.main(argv)
    assert [Path(c[c.index("--config-file") + 1]).name for c in calls] == \
        ["pbovd_keep_soft.yaml", "pbovd_keep.yaml"]
    assert all("--resume" not in c for c in calls)


def test_pseudo_finetune_table_and_target(benchmark, tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(benchmark, "train_net", _fake_train_net(calls, novel=79.99, base=96.0))
    world = tmp_path / "world"
    (world / "annotations").mkdir(parents=True)
    (world / "annotations" / "instances_val.json").write_text("{}")
    (world / "val").mkdir()
    benchmark.main(["pseudo-finetune", "--output-dir", str(tmp_path / "runs"), "--rows",
                    "zero_boxes", "--check-world", str(world)])
    out, err = capsys.readouterr()
    row = json.loads(out)["rows"]["zero_boxes"]
    assert row["toyworld_val"] == {"novel_AP50": 79.99, "base_AP50": 96.0}
    assert row["meets_target"] is False  # novel AP50 is below 80
    assert "MODEL.WEIGHTS" not in calls[0]  # trained from scratch, not from the pretraining
    check = calls[1]  # the second world: an --eval-only pass, boxes only
    assert "--eval-only" in check and check[check.index("MODEL.MASK_ON") + 1] == "False"
    assert "zero_boxes" in err and "toyworld_val_check novel" in err


def test_pseudo_finetune_resumes_an_interrupted_row_of_the_same_pretraining(benchmark, tmp_path,
                                                                             monkeypatch):
    calls = []
    monkeypatch.setattr(benchmark, "train_net", _fake_train_net(calls))
    argv = ["pseudo-finetune", "--output-dir", str(tmp_path), "--rows", "soft"]
    benchmark.main(argv)
    (tmp_path / "pbovd_keep_soft" / "model_final.pth").unlink()  # killed after a checkpoint
    (tmp_path / "pbovd_keep_soft" / "last_checkpoint").write_text("model_0000249.pth")
    calls.clear()
    benchmark.main(argv)
    assert len(calls) == 1 and "--resume" in calls[0]
