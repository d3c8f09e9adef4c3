from pathlib import Path

import pytest
import torch
from torch import nn

from ovdet.config import CfgNode, ConfigError, configurable, get_cfg
from ovdet.modeling.registry import BACKBONE_REGISTRY, build_from_registry


def write(path, text):
    path.write_text(text)
    return str(path)


def test_defaults_come_from_components():
    cfg = get_cfg()
    assert cfg.MODEL.CLIP.NAME == "toyworld"
    assert cfg.MODEL.CLIP.KEEP_LAST_BLOCKS == 2
    assert cfg.MODEL.BACKBONE.TRAINABLE_BLOCKS == 0
    assert get_cfg() is not cfg  # a fresh copy each call


def test_yaml_base_inheritance_and_overrides(tmp_path):
    base = write(tmp_path / "Base.yaml", "MODEL:\n  CLIP:\n    KEEP_LAST_BLOCKS: 3\nOUTPUT_DIR: a\n")
    child = write(tmp_path / "child.yaml", "_BASE_: Base.yaml\nOUTPUT_DIR: b\n")
    cfg = get_cfg()
    cfg.merge_from_file(child)
    assert cfg.MODEL.CLIP.KEEP_LAST_BLOCKS == 3 and cfg.OUTPUT_DIR == "b"
    cfg.merge_from_list(["OUTPUT_DIR", "c", "DATASETS.TRAIN", "('x', 'y')"])
    assert cfg.OUTPUT_DIR == "c" and tuple(cfg.DATASETS.TRAIN) == ("x", "y")
    assert base


def test_unknown_key_names_closest(tmp_path):
    cfg = get_cfg()
    with pytest.raises(ConfigError, match=r"MODEL\.CLIP\.KEEP_LAST_BLOCK; did you mean MODEL\.CLIP\.KEEP_LAST_BLOCKS"):
        cfg.merge_from_list(["MODEL.CLIP.KEEP_LAST_BLOCK", "3"])
    bad = write(tmp_path / "bad.yaml", "MODEL:\n  CLIPP:\n    NAME: x\n")
    with pytest.raises(ConfigError, match=r"unknown config key MODEL\.CLIPP"):
        cfg.merge_from_file(bad)


def test_wrong_type_names_key(tmp_path):
    cfg = get_cfg()
    with pytest.raises(ConfigError, match="KEEP_LAST_BLOCKS"):
        cfg.merge_from_list(["MODEL.CLIP.KEEP_LAST_BLOCKS", "abc"])
    bad = write(tmp_path / "bad.yaml", "MODEL:\n  CLIP:\n    NAME: [1, 2]\n")
    with pytest.raises(ConfigError, match=r"MODEL\.CLIP\.NAME.*bad\.yaml"):
        cfg.merge_from_file(bad)
    group = write(tmp_path / "group.yaml", "MODEL: 3\n")
    with pytest.raises(ConfigError, match="group of options"):
        cfg.merge_from_file(group)
    with pytest.raises(ConfigError, match="group of options"):
        cfg.merge_from_list(["MODEL.CLIP", "3"])


def test_int_accepted_for_float():
    cfg = get_cfg()
    cfg.NEW = CfgNode({"LR": 0.5})
    cfg.merge_from_list(["NEW.LR", "1"])
    assert cfg.NEW.LR == 1.0 and isinstance(cfg.NEW.LR, float)


def test_missing_files(tmp_path):
    cfg = get_cfg()
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        cfg.merge_from_file(str(tmp_path / "nope.yaml"))
    child = write(tmp_path / "child.yaml", "_BASE_: missing-base.yaml\n")
    with pytest.raises(ConfigError, match="missing-base.yaml"):
        cfg.merge_from_file(child)


def test_odd_override_list():
    with pytest.raises(ConfigError, match="KEY VALUE pairs"):
        get_cfg().merge_from_list(["OUTPUT_DIR"])


class Scaled(nn.Module):
    @configurable
    def __init__(self, *, width: int, scale: float = 1.0):
        super().__init__()
        self.width, self.scale = width, scale

    @classmethod
    def from_config(cls, cfg, scale: float = 2.0):
        return {"width": cfg.MODEL.CLIP.KEEP_LAST_BLOCKS * 10, "scale": scale}


def test_configurable_from_config_or_kwargs():
    cfg = get_cfg()
    from_cfg = Scaled(cfg)
    assert (from_cfg.width, from_cfg.scale) == (20, 2.0)
    assert Scaled(cfg, scale=3.0).scale == 3.0  # a keyword from_config takes
    assert Scaled(cfg, width=7).width == 7  # a keyword only __init__ takes overrides the config
    direct = Scaled(width=7)
    assert (direct.width, direct.scale) == (7, 1.0)


def test_registry_unknown_name_lists_known():
    with pytest.raises(ConfigError, match="CLIPViTSimpleFPN"):
        build_from_registry(BACKBONE_REGISTRY, "NoSuchBackbone", get_cfg())


def test_backbone_builds_from_config_frozen_by_default():
    from ovdet.modeling import build_backbone

    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.BACKBONE.OUT_CHANNELS", "16"])
    backbone = build_backbone(cfg)
    trunk_parameters = set(backbone.trunk.parameters())
    assert not any(p.requires_grad for p in trunk_parameters)
    assert all(p.requires_grad for p in backbone.levels.parameters())
    cfg.merge_from_list(["MODEL.BACKBONE.TRAINABLE_BLOCKS", "1"])
    backbone = build_backbone(cfg)
    trainable = {n for n, p in backbone.trunk.named_parameters() if p.requires_grad}
    last = len(backbone.trunk.visual.transformer.resblocks) - 1
    assert trainable and all(f"resblocks.{last}." in n for n in trainable)
    output, pyramid = backbone(torch.zeros(1, 3, 64, 96))
    assert output.grid == (8, 12) and len(output.kept) == cfg.MODEL.CLIP.KEEP_LAST_BLOCKS
    assert {k: tuple(v.shape) for k, v in pyramid.items()} == {
        "p2": (1, 16, 16, 24), "p3": (1, 16, 8, 12), "p4": (1, 16, 4, 6), "p5": (1, 16, 2, 3)}


@pytest.mark.parametrize("path", sorted(str(p) for p in (Path(__file__).resolve().parents[1]
                                                         / "configs").rglob("*.yaml")))
def test_every_shipped_config_merges(path):
    cfg = get_cfg()
    cfg.merge_from_file(path)
    assert len(cfg.MODEL.RPN.ANCHOR_SIZES) == len(cfg.MODEL.BACKBONE.STRIDES)


def test_a_frozen_config_refuses_overrides():
    cfg = get_cfg()
    cfg.freeze()
    with pytest.raises(ConfigError, match="frozen"):
        cfg.merge_from_list(["MODEL.LOSS_WEIGHTS.loss_new", "1.0"])
    assert "loss_new" not in cfg.MODEL.LOSS_WEIGHTS


def test_a_component_refusing_its_config_values_is_a_config_error():
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.BACKBONE.STRIDES", "(8, 4, 16, 32)"])
    with pytest.raises(ConfigError, match=r"backbone CLIPViTSimpleFPN: strides must be distinct "
                                          r"and ascending .*\(8, 4, 16, 32\)"):
        build_from_registry(BACKBONE_REGISTRY, "CLIPViTSimpleFPN", cfg)
