"""The panoptic branch inside OpenVocabRCNN, and train_net on panoptic datasets (tiny world)."""
import json

import pytest
import torch

from conftest import TINY_DETECTOR, TINY_PANOPTIC
from ovdet.config import ConfigError, get_cfg
from ovdet.engine.checkpoint import DetectorCheckpointer
from ovdet.modeling.registry import build_model
from test_train_net import load_tool


def panoptic_cfg(*overrides):
    cfg = get_cfg()
    cfg.merge_from_list(TINY_PANOPTIC + list(overrides))
    return cfg


def constructed_batch():
    """Two 64-px images: a thing (class 0) on two stuff bands (classes 2 and 3), void elsewhere."""
    generator = torch.Generator().manual_seed(5)
    image = torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8, generator=generator)
    masks = torch.zeros(3, 64, 64, dtype=torch.bool)
    masks[0, 10:30, 10:30] = True
    masks[1, :10] = True
    masks[2, 40:] = True
    x = {"image": image, "height": 64, "width": 64, "file_name": "constructed",
         "instances": {"boxes": torch.tensor([[10.0, 10, 30, 30]]), "classes": torch.tensor([0]),
                       "masks": masks[:1]},
         "panoptic": {"masks": masks, "classes": torch.tensor([0, 2, 3]), "void": ~masks.any(0)}}
    return [x, x]


@pytest.fixture()
def panoptic_model():
    torch.manual_seed(0)
    model = build_model(panoptic_cfg())
    model.set_training_vocabulary(["tomato", "egg"], stuff=["sky", "grass"])
    return model


def test_training_losses_pinned_under_a_seed(panoptic_model):
    panoptic_model.train()
    torch.manual_seed(1)
    losses = panoptic_model(constructed_batch())
    panoptic = {k: round(v.item(), 4) for k, v in losses.items() if "panoptic" in k or "rma" in k}
    assert panoptic == pytest.approx(PINNED, abs=2e-4)
    assert {"loss_cls", "loss_objectness"} <= set(losses)  # the detector trains jointly
    sum(losses.values()).backward()
    head = panoptic_model.panoptic_head
    assert all(p.grad is not None for p in head.rma.parameters() if p.requires_grad)
    assert head.query_head.query_feat.weight.grad is not None
    # CLIP stays frozen: no gradient reaches its weights
    assert all(p.grad is None for p in panoptic_model.trunk.parameters())


# computed once with this code (seed 0 weights, seed 1 point draws); a change means the losses moved
PINNED = {"loss_panoptic_objectness": 1.0564, "loss_panoptic_ce": 2.4621,
          "loss_panoptic_mask": 1.4089, "loss_panoptic_dice": 1.1942, "loss_rma_ce": 1.1875,
          "loss_rma_mask": 0.7112, "loss_rma_dice": 0.6285}


def test_panoptic_alone_and_rma_without_blocks_trains_no_rma_loss():
    torch.manual_seed(0)
    model = build_model(panoptic_cfg("MODEL.DETECTOR_ON", "False", "MODEL.PANOPTIC.RMA_BLOCKS", "()"))
    assert model.roi_heads is None and model.proposal_generator is None
    model.set_training_vocabulary(["tomato", "egg"], stuff=["sky", "grass"])
    losses = model(constructed_batch())
    assert set(losses) == {"loss_panoptic_objectness", "loss_panoptic_ce", "loss_panoptic_mask",
                           "loss_panoptic_dice"}
    model.eval()
    output = model([{"image": constructed_batch()[0]["image"], "height": 64, "width": 64}])[0]
    assert set(output) == {"panoptic_seg"}
    with pytest.raises(RuntimeError, match="no detector"):
        model.propose([{"image": constructed_batch()[0]["image"], "height": 64, "width": 64}])


def test_inference_gives_panoptic_seg_at_the_original_size(panoptic_model):
    panoptic_model.eval()
    panoptic_model.panoptic_head.object_mask_threshold = 0.0  # random weights score low
    panoptic_model.set_vocabulary(["tomato", "egg", "banana"], stuff=["sky", "grass", "water"])
    image = constructed_batch()[0]["image"]
    with torch.no_grad():
        outputs = panoptic_model([{"image": image, "height": 100, "width": 90},
                                  {"image": image, "height": 64, "width": 64}])
    for output, size in zip(outputs, [(100, 90), (64, 64)]):
        ids, segments = output["panoptic_seg"]
        assert ids.shape == size and ids.dtype == torch.int32 and "instances" in output
        assert segments, "a zero object threshold keeps at least one segment"
        assert sorted(int(i) for i in ids.unique() if i) == [s["id"] for s in segments]
        for segment in segments:
            assert 0 <= segment["category_id"] < 6
            assert segment["isthing"] == (segment["category_id"] < 3)
            assert 0 <= segment["score"] <= 1
    # the crop classifier runs on the same proposals
    panoptic_model.panoptic_head.classifier = "crop"
    with torch.no_grad():
        ids, segments = panoptic_model([{"image": image, "height": 64, "width": 64}])[0][
            "panoptic_seg"]
    assert ids.shape == (64, 64)


def test_stuff_vocabulary_rules(panoptic_model):
    with pytest.raises(ValueError, match="both as things and as stuff"):
        panoptic_model.set_vocabulary(["tomato", "Sky"], stuff=["sky"])
    panoptic_model.set_vocabulary(["tomato", "banana"])  # stuff=None keeps the stuff
    assert panoptic_model.stuff_names == ["sky", "grass"]
    panoptic_model.set_vocabulary(["Grass", "tomato"])  # ... except a name now given as a thing
    assert panoptic_model.stuff_names == ["sky"]
    panoptic_model.set_vocabulary(["tomato", "banana"], stuff=["sky", "grass"])
    embeddings, seen, is_thing = panoptic_model.panoptic_vocabulary()
    assert embeddings.shape[0] == 4 and seen.tolist() == [True, False, True, True]
    assert is_thing.tolist() == [True, True, False, False]
    panoptic_model.set_vocabulary(["tomato"], stuff=[])
    assert panoptic_model.stuff_names == [] and panoptic_model.panoptic_vocabulary()[0].shape[0] == 1
    # base names (checkpoints) carry things and stuff
    assert panoptic_model.base_names == ["tomato", "egg", "sky", "grass"]


def test_a_panoptic_config_refuses_thing_and_stuff_free_models():
    with pytest.raises(ConfigError, match="neither detector nor panoptic head"):
        build_model(panoptic_cfg("MODEL.DETECTOR_ON", "False", "MODEL.PANOPTIC_ON", "False"))
    with pytest.raises(ConfigError, match="classifier must be"):
        build_model(panoptic_cfg("MODEL.PANOPTIC.CLASSIFIER", "clip"))
    with pytest.raises(ConfigError, match="does not score mask proposals"):
        build_model(panoptic_cfg("MODEL.PANOPTIC.SCORER", "CLIPEnsembleScorer"))
    with pytest.raises(ConfigError, match="does not score detections"):
        build_model(panoptic_cfg("MODEL.OPEN_VOCAB.SCORER", "MaskEnsembleScorer"))
    with pytest.raises(ConfigError, match=r"got \[5\] \(MODEL.PANOPTIC.RMA_BLOCKS"):
        build_model(panoptic_cfg("MODEL.PANOPTIC.RMA_BLOCKS", "(5,)"))
    with pytest.raises(ConfigError, match="multiple of num_heads .*HIDDEN_DIM"):
        build_model(panoptic_cfg("MODEL.PANOPTIC.HIDDEN_DIM", "30"))


def test_train_net_trains_and_evaluates_pq(tiny_world, tmp_path, capsys):
    output = tmp_path / "run"
    load_tool("train_net").main([
        "--config-file", write_config(tmp_path), *TINY_PANOPTIC, "MODEL.DETECTOR_ON", "False",
        "MODEL.PANOPTIC.OBJECT_MASK_THRESHOLD", "0.0", "OUTPUT_DIR", str(output)])
    metrics = json.loads((output / "eval_metrics.json").read_text())
    panoptic = metrics["tiny_val_panoptic"]["panoptic"]
    assert {"PQ", "SQ", "RQ", "PQ_th", "PQ_st", "PQ_novel"} <= set(panoptic)
    assert all(0 <= panoptic[k] <= 100 for k in ("PQ", "SQ", "RQ"))
    assert "copypaste: tiny_val_panoptic panoptic PQ=" in capsys.readouterr().out
    pngs = list((output / "inference" / "tiny_val_panoptic_panoptic").glob("*.png"))
    assert len(pngs) == 6
    checkpoint = torch.load(output / "model_final.pth", weights_only=True)
    assert checkpoint["base_names"][-5:] == ["sky", "grass", "water", "sand", "wall"]
    # evaluating again from the checkpoint gives the same PQ
    load_tool("train_net").main([
        "--config-file", str(output / "config.yaml"), "--eval-only",
        "MODEL.WEIGHTS", str(output / "model_final.pth"), "OUTPUT_DIR", str(tmp_path / "eval")])
    again = json.loads((tmp_path / "eval" / "eval_metrics.json").read_text())
    assert again["tiny_val_panoptic"]["panoptic"]["PQ"] == pytest.approx(panoptic["PQ"])
    # a loaded checkpoint knows its stuff classes
    model = build_model(panoptic_cfg("MODEL.DETECTOR_ON", "False"))
    DetectorCheckpointer(model).load(str(output / "model_final.pth"))
    assert model.stuff_names == ["sky", "grass", "water", "sand", "wall"]
    # the box demo refuses a model without a detector, pointing to the panoptic tool
    with pytest.raises(SystemExit, match="no detector.*panoptic_infer.py"):
        load_tool("demo").main(["--config-file", str(output / "config.yaml"), "--input",
                                str(tiny_world / "val"), "--vocabulary", "tomato", "--output",
                                str(tmp_path / "demo"), "MODEL.WEIGHTS",
                                str(output / "model_final.pth")])


def write_config(tmp_path, panoptic=True):
    path = tmp_path / f"panoptic_{panoptic}.yaml"
    path.write_text(f"MODEL:\n  PANOPTIC_ON: {str(panoptic).lower()}\n")
    return str(path)


def test_stuff_needs_a_panoptic_model(tiny_cfg):
    model = build_model(tiny_cfg)
    with pytest.raises(ValueError, match="stuff classes need a panoptic model"):
        model.set_vocabulary(["tomato"], stuff=["sky"])
    model.set_vocabulary(["tomato"], stuff=[])
    assert model.stuff_names == []


def test_train_net_errors_for_panoptic_misconfigurations(tiny_world, tmp_path):
    train_net = load_tool("train_net")
    with pytest.raises(SystemExit, match="error: DATASETS.TEST names detection datasets"):
        train_net.main(["--config-file", write_config(tmp_path), *TINY_PANOPTIC,
                        "MODEL.DETECTOR_ON", "False", "DATASETS.TEST", "('tiny_val',)",
                        "OUTPUT_DIR", str(tmp_path / "c")])
    with pytest.raises(SystemExit, match="error: MODEL.PANOPTIC_ON trains on panoptic datasets"):
        train_net.main(["--config-file", write_config(tmp_path), *TINY_PANOPTIC,
                        "DATASETS.TRAIN", "('tiny_train',)", "OUTPUT_DIR", str(tmp_path / "a")])
    with pytest.raises(SystemExit, match="error: .*panoptic datasets?.*need.*MODEL.PANOPTIC_ON"):
        train_net.main(["--config-file", write_config(tmp_path, False), *TINY_DETECTOR,
                        "DATASETS.TRAIN", "('tiny_train',)", "DATASETS.TEST",
                        "('tiny_val_panoptic',)", "SOLVER.MAX_ITER", "1",
                        "OUTPUT_DIR", str(tmp_path / "b")])


def test_inference_refuses_a_checkpoint_of_another_config(tiny_cfg, tmp_path):
    """A detector's checkpoint loaded into a panoptic model would leave the panoptic head random:
    the predictor and --eval-only refuse it; training may start from it (fvcore's partial load)."""
    from ovdet.engine.checkpoint import CheckpointError
    from ovdet.predictor import OVPredictor

    torch.manual_seed(0)
    DetectorCheckpointer(build_model(tiny_cfg), str(tmp_path)).save("detector")
    weights = str(tmp_path / "detector.pth")
    with pytest.raises(CheckpointError, match=r"detector.pth does not fit this model: \d+ weights "
                                              r"missing \(e.g. panoptic_head\."):
        OVPredictor(panoptic_cfg(), weights)
    DetectorCheckpointer(build_model(panoptic_cfg())).load(weights)  # training-style: partial
