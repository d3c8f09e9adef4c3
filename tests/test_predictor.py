"""OVPredictor's inputs: single images are one image, vocabularies are validated like the model's."""
import numpy as np
import pytest
import torch
from PIL import Image

from ovdet import OVPredictor
from ovdet.engine.checkpoint import DetectorCheckpointer
from ovdet.modeling.registry import build_model


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    from conftest import TINY_DETECTOR
    from ovdet.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_list(TINY_DETECTOR)
    torch.manual_seed(0)
    model = build_model(cfg)
    model.set_training_vocabulary(["tomato", "egg"])
    folder = tmp_path_factory.mktemp("weights")
    DetectorCheckpointer(model, str(folder)).save("model_final")
    predictor = OVPredictor(cfg, str(folder / "model_final.pth"))
    predictor.set_vocabulary(["tomato", "egg"])
    return predictor


@pytest.fixture(scope="module")
def image_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("images") / "a.png"
    Image.fromarray(np.full((40, 56, 3), 90, np.uint8)).save(path)
    return path


def test_a_single_path_array_or_tensor_is_one_image(predictor, image_path):
    array = np.full((40, 56, 3), 90, np.uint8)
    for single in (str(image_path), image_path, array, torch.from_numpy(array).permute(2, 0, 1),
                   Image.fromarray(array)):
        results = predictor(single)
        assert len(results) == 1 and results[0]["boxes"].shape[1] == 4
        assert (results[0]["boxes"][:, 2] <= 56).all()  # the image's width, not a letter's
    assert len(predictor([str(image_path), array])) == 2
    assert len(predictor.propose(str(image_path))) == 1
    with pytest.raises(TypeError, match="path, an array, a tensor or a list"):
        predictor(42)


def test_vocabulary_is_validated_and_normalised(predictor):
    with pytest.raises(ValueError, match="single string 'tomato'"):
        predictor.set_vocabulary("tomato")
    with pytest.raises(ValueError, match="'Tomato' and 'tomato'"):
        predictor.set_vocabulary(["Tomato", "tomato"])  # refused here as on the command line
    assert predictor.vocabulary == ["tomato", "egg"]
    predictor.set_vocabulary(["Tomato", "Banana"])
    assert predictor.model.novel_mask.tolist() == [False, True]  # "Tomato" is the base tomato
    predictor.set_vocabulary(["tomato", "egg"])
