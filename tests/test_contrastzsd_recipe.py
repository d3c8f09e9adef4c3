"""The contrastive criteria inside a training run, and TEST.PROTOCOL zsd end to end (tiny world,
tiny random CLIP, a few iterations)."""
import json
from pathlib import Path

import pytest
import torch

from test_train_net import load_tool, train, train_killed_then_resumed

CONTRASTIVE = ["MODEL.CRITERIA", "('RegionCategoryContrast', 'RegionRegionContrast')",
               "MODEL.CONTRASTIVE.QUEUE_LENGTH", "64"]
ZSD_TRAINING = CONTRASTIVE + ["MODEL.CONTRASTIVE.PROTOCOL", "zsd"]


@pytest.fixture(scope="module")
def contrastive_run(tiny_world, config_file, tmp_path_factory):
    """Both criteria, the zero-shot protocol (unseen names: the novel classes of tiny_val)."""
    output = tmp_path_factory.mktemp("contrastive")
    train(config_file, output, *ZSD_TRAINING)
    return output


def test_the_losses_are_logged_and_the_queue_is_saved(contrastive_run):
    lines = [json.loads(line) for line in (contrastive_run / "metrics.json").read_text().splitlines()]
    assert all(line["loss_rccl"] > 0 for line in lines)
    assert all(torch.isfinite(torch.tensor(line["loss_rrcl"])) for line in lines)
    model = torch.load(contrastive_run / "model_final.pth", weights_only=True)["model"]
    labels = model["criteria.RegionRegionContrast.queue.labels"]
    assert len(labels) == 64 and (labels >= 0).any() and (labels < 8).all()


def test_unseen_names_enter_rccl_under_the_zero_shot_protocol(tiny_world, tiny_cfg):
    from ovdet.data.catalog import DatasetCatalog
    from ovdet.modeling.registry import build_model

    tiny_cfg.merge_from_list(ZSD_TRAINING + ["DATASETS.TEST", "('tiny_val',)"])
    model = build_model(tiny_cfg)
    unseen = DatasetCatalog.metadata("tiny_val").novel_classes
    assert model.criteria["RegionCategoryContrast"].extra_names == tuple(unseen)
    base = DatasetCatalog.metadata("tiny_val").base_classes
    model.set_training_vocabulary(base)
    extra = model.extra_embeddings(tuple(unseen))
    assert torch.allclose(extra, model.vocabulary.source(list(unseen)), atol=1e-5)
    # a name already in the training vocabulary is not added twice
    assert len(model.extra_embeddings((base[0], unseen[0]))) == 1


def test_resumed_run_equals_whole_run_queue_included(contrastive_run, config_file, tmp_path,
                                                      monkeypatch):
    train_killed_then_resumed(config_file, tmp_path, monkeypatch, *ZSD_TRAINING)
    whole = torch.load(contrastive_run / "model_final.pth", weights_only=True)["model"]
    resumed = torch.load(tmp_path / "model_final.pth", weights_only=True)["model"]
    for key in whole:
        assert torch.equal(whole[key], resumed[key]), key


def test_eval_only_by_the_zero_shot_protocol(contrastive_run, tmp_path, capsys):
    load_tool("train_net").main([
        "--config-file", str(contrastive_run / "config.yaml"), "--eval-only",
        "MODEL.WEIGHTS", str(contrastive_run / "model_final.pth"), "TEST.PROTOCOL", "zsd",
        "DATASETS.TEST", "('tiny_val',)", "OUTPUT_DIR", str(tmp_path)])
    metrics = json.loads((tmp_path / "eval_metrics.json").read_text())["tiny_val"]
    assert set(metrics["zsd"]) == {"mAP50", "recall100@0.4", "recall100@0.5", "recall100@0.6"}
    assert set(metrics["gzsd"]) == {"seen_mAP50", "unseen_mAP50", "hm_mAP50", "seen_recall100",
                                    "unseen_recall100", "hm_recall100"}
    zsd = metrics["zsd"]
    assert 0 <= zsd["recall100@0.6"] <= zsd["recall100@0.5"] <= zsd["recall100@0.4"] <= 100
    out = capsys.readouterr().out
    assert "copypaste: tiny_val zsd mAP50=" in out and "copypaste: tiny_val gzsd seen_mAP50=" in out
    # the ZSD pass ran the unseen names alone, on the images that hold an unseen object
    inference = Path(tmp_path) / "inference"
    zsd_results = json.loads((inference / "tiny_val_zsd_results.json").read_text())
    gzsd_results = json.loads((inference / "tiny_val_gzsd_results.json").read_text())
    from ovdet.data.catalog import DatasetCatalog

    metadata = DatasetCatalog.metadata("tiny_val")
    ground_truth = json.loads(Path(metadata.json_file).read_text())
    unseen_ids = {c["id"] for c in ground_truth["categories"] if c.get("split") == "novel"}
    with_unseen = {a["image_id"] for a in ground_truth["annotations"]
                   if a["category_id"] in unseen_ids and not a.get("iscrowd")}
    assert {r["category_id"] for r in zsd_results} <= unseen_ids
    assert {r["image_id"] for r in zsd_results} <= with_unseen
    assert {r["category_id"] for r in gzsd_results} - unseen_ids  # seen classes compete there


def test_zero_shot_protocol_refuses_bad_settings(contrastive_run, tmp_path, capsys):
    main = load_tool("train_net").main
    base = ["--config-file", str(contrastive_run / "config.yaml"), "--eval-only",
            "MODEL.WEIGHTS", str(contrastive_run / "model_final.pth"), "OUTPUT_DIR",
            str(tmp_path)]
    with pytest.raises(SystemExit, match="TEST.PROTOCOL must be one of"):
        main(base + ["TEST.PROTOCOL", "gzsd"])
    with pytest.raises(SystemExit, match="no novel category"):
        main(base + ["TEST.PROTOCOL", "zsd", "DATASETS.TEST", "('tiny_train',)"])
    assert not (tmp_path / "eval_metrics.json").exists()
