"""Weighted checkpoint averages (model soups): the arithmetic, the checks and the tool."""
import json
import math

import pytest
import torch

from conftest import TINY_DETECTOR
from ovdet.config import get_cfg
from ovdet.engine.averaging import average_checkpoints, normalised_ratios
from ovdet.engine.checkpoint import CheckpointError, DetectorCheckpointer
from ovdet.modeling.registry import build_model
from test_train_net import load_tool

BASE = ["tomato", "orange"]


def save(path, model, base_names=BASE, stuff_names=()):
    torch.save({"model": model, "base_names": list(base_names), "stuff_names": list(stuff_names),
                "optimizer": {"state": {}}, "iteration": 9}, path)
    return str(path)


@pytest.fixture()
def two(tmp_path):
    a = {"w": torch.tensor([1.0, 2.0]), "h": torch.tensor([4.0], dtype=torch.float16),
         "count": torch.tensor(5)}
    b = {"w": torch.tensor([3.0, -2.0]), "h": torch.tensor([8.0], dtype=torch.float16),
         "count": torch.tensor(7)}
    return save(tmp_path / "a.pth", a), save(tmp_path / "b.pth", b)


def test_average_is_the_ratio_weighted_sum_in_each_dtype(two):
    averaged = average_checkpoints(two, [3, 1])  # scaled to 0.75, 0.25
    model = averaged["model"]
    assert torch.equal(model["w"], torch.tensor([0.75 * 1 + 0.25 * 3, 0.75 * 2 + 0.25 * -2]))
    assert model["h"].dtype == torch.float16 and model["h"].item() == 5.0
    assert model["count"].item() == 5  # integer buffers: the first checkpoint's
    assert averaged["base_names"] == BASE and averaged["stuff_names"] == []
    assert set(averaged) == {"model", "base_names", "stuff_names"}  # no optimizer, no iteration


def test_equal_ratios_and_the_ends(two):
    assert torch.equal(average_checkpoints(two, [1, 1])["model"]["w"], torch.tensor([2.0, 0.0]))
    assert torch.equal(average_checkpoints(two, [0, 1])["model"]["w"], torch.tensor([3.0, -2.0]))


@pytest.mark.parametrize("ratios", [[], [1, -1], [0, 0], [1, math.nan], [math.inf, 1]])
def test_bad_ratios(ratios):
    with pytest.raises(ValueError, match="ratios"):
        normalised_ratios(ratios)


def test_huge_ratios_are_scaled_without_overflow():
    assert normalised_ratios([1e308, 1e308]) == [0.5, 0.5]
    assert normalised_ratios([3, 1]) == [0.75, 0.25]


def test_names_are_copied_only_when_there(tmp_path):
    paths = [str(tmp_path / f"{i}.pth") for i in range(2)]
    for path in paths:
        torch.save({"model": {"w": torch.ones(1)}}, path)
    assert set(average_checkpoints(paths, [1, 1])) == {"model"}  # no base_names invented


def test_counts_must_match(two):
    with pytest.raises(ValueError, match="at least two"):
        average_checkpoints(two[:1], [1])
    with pytest.raises(ValueError, match="one ratio per checkpoint"):
        average_checkpoints(two, [1, 2, 3])


def test_checkpoints_that_do_not_fit_each_other(tmp_path, two):
    other_names = save(tmp_path / "c.pth", {"w": torch.zeros(2), "x": torch.zeros(1),
                                            "count": torch.tensor(1)})
    both = r"different weights \(e\.g\. h only in .*a\.pth; x only in .*c\.pth\)"
    with pytest.raises(CheckpointError, match=both):
        average_checkpoints([two[0], other_names], [1, 1])
    other_shape = save(tmp_path / "d.pth", {"w": torch.zeros(3), "h": torch.zeros(1),
                                            "count": torch.tensor(1)})
    with pytest.raises(CheckpointError, match=r"w has shape \(3,\)"):
        average_checkpoints([two[0], other_shape], [1, 1])
    other_base = save(tmp_path / "e.pth", torch.load(two[1])["model"], base_names=["lime"])
    with pytest.raises(CheckpointError, match="different base_names"):
        average_checkpoints([two[0], other_base], [1, 1])
    other_kind = save(tmp_path / "g.pth", {"w": torch.zeros(2, dtype=torch.int64),
                                           "h": torch.zeros(1), "count": torch.tensor(1)})
    with pytest.raises(CheckpointError, match="w is torch.int64 in .*g.pth but torch.float32"):
        average_checkpoints([two[0], other_kind], [1, 1])
    not_tensor = save(tmp_path / "h.pth", {"w": "text", "h": torch.zeros(1),
                                           "count": torch.tensor(1)})
    with pytest.raises(CheckpointError, match="weight w is a str, not a tensor"):
        average_checkpoints([two[0], not_tensor], [1, 1])
    garbage = tmp_path / "f.pth"
    garbage.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        average_checkpoints([two[0], str(garbage)], [1, 1])


@pytest.fixture(scope="module")
def detectors(tmp_path_factory):
    """Two tiny detectors of one config, different random weights: (config.yaml, [pth, pth])."""
    cfg = get_cfg()
    cfg.merge_from_list(TINY_DETECTOR)
    folder = tmp_path_factory.mktemp("soup")
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = build_model(cfg)
        model.set_training_vocabulary(BASE)
        DetectorCheckpointer(model, str(folder)).save(f"run{seed}")
        paths.append(str(folder / f"run{seed}.pth"))
    config = folder / "config.yaml"
    config.write_text(cfg.dump())
    return str(config), paths


def test_tool_writes_a_loadable_average_and_a_config_that_loads_it(detectors, tmp_path):
    config, paths = detectors
    out = tmp_path / "soup" / "model_final.pth"
    record = load_tool("average_weights").main(
        ["--weights", *paths, "--ratios", "0.7", "0.3", "--out", str(out),
         "--config-file", config, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.2"])
    assert record["checkpoints"] == [{"path": paths[0], "ratio": 0.7},
                                     {"path": paths[1], "ratio": 0.3}]
    assert json.loads((out.parent / "averaging.json").read_text()) == record
    cfg = get_cfg()
    cfg.merge_from_file(str(out.parent / "config.yaml"))
    assert cfg.MODEL.WEIGHTS == str(out) and cfg.OUTPUT_DIR == str(out.parent)
    assert cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST == 0.2
    model = build_model(cfg)
    DetectorCheckpointer(model, complete=True).load(cfg.MODEL.WEIGHTS)  # fits the config
    assert model.base_names == BASE
    ends = [torch.load(p)["model"] for p in paths]
    for name, value in model.state_dict().items():
        if value.is_floating_point() and name in ends[0]:
            expected = 0.7 * ends[0][name].double() + 0.3 * ends[1][name].double()
            torch.testing.assert_close(value, expected.to(value.dtype))


def run_failing(capsys, *arguments):
    with pytest.raises(SystemExit) as exit_info:
        load_tool("average_weights").main(list(arguments))
    assert exit_info.value.code == 1
    return capsys.readouterr().err.strip()


def test_tool_never_writes_over_inputs_runs_or_other_files(detectors, tmp_path, capsys):
    config, paths = detectors
    out = tmp_path / "soup" / "model_final.pth"
    tool = load_tool("average_weights")
    tool.main(["--weights", *paths, "--out", str(out)])
    assert "give --overwrite" in run_failing(capsys, "--weights", *paths, "--out", str(out))
    tool.main(["--weights", *paths, "--out", str(out), "--ratios", "1", "0",
               "--overwrite"])  # our own file: replaced
    replaced = torch.load(out)["model"]
    first_run = torch.load(paths[0])["model"]
    assert all(torch.equal(replaced[k], v) for k, v in first_run.items())
    capsys.readouterr()
    message = run_failing(capsys, "--weights", *paths, "--out", str(out.parent / "other.pth"))
    assert "it holds an average of model_final.pth" in message
    user_config = out.parent / "config.yaml"  # the user's, beside an average made without one
    user_config.write_text("mine")
    message = run_failing(capsys, "--weights", *paths, "--out", str(out), "--config-file",
                          config, "--overwrite")
    assert "config.yaml was not written by this tool" in message
    assert user_config.read_text() == "mine"
    user_config.unlink()
    # an average with a config, then one without: the earlier config.yaml (ours) goes
    tool.main(["--weights", *paths, "--out", str(out), "--config-file", config, "--overwrite"])
    assert user_config.exists()
    tool.main(["--weights", *paths, "--out", str(out), "--overwrite"])
    assert not user_config.exists()
    # killed after the record, before the average: the same command runs again
    out.unlink()
    tool.main(["--weights", *paths, "--out", str(out)])
    assert out.exists()
    for name in ("config.yaml", "averaging.json"):
        message = run_failing(capsys, "--weights", *paths, "--out", str(tmp_path / "n" / name))
        assert "the name of a file written beside it" in message
    message = run_failing(capsys, "--weights", paths[0], paths[0], "--out", str(tmp_path / "d.pth"))
    assert "names one file twice" in message
    assert "would overwrite the input" in run_failing(capsys, "--weights", *paths,
                                                      "--out", paths[0], "--overwrite")
    user_file = tmp_path / "mine" / "model.pth"
    user_file.parent.mkdir()
    user_file.write_bytes(b"precious")
    message = run_failing(capsys, "--weights", *paths, "--out", str(user_file), "--overwrite")
    assert "not written by this tool" in message and user_file.read_bytes() == b"precious"
    run_folder = tmp_path / "run"
    run_folder.mkdir()
    (run_folder / "last_checkpoint").write_text("model_final.pth")
    assert "training run's folder" in run_failing(capsys, "--weights", *paths,
                                                  "--out", str(run_folder / "soup.pth"))
    assert not (run_folder / "averaging.json").exists()


@pytest.mark.parametrize("arguments, message", [
    (["--ratios", "1"], "2 --weights but 1 --ratios"),
    (["--ratios", "1", "-2"], "ratios must be finite and >= 0"),
    (["MODEL.WEIGHTS", "x"], "need --config-file"),
    (["--config-file", "missing.yaml"], "not found: missing.yaml"),
])
def test_tool_bad_arguments_are_one_error_line(detectors, tmp_path, capsys, arguments, message):
    _, paths = detectors
    error = run_failing(capsys, "--weights", *paths, "--out", str(tmp_path / "s.pth"), *arguments)
    assert error.startswith("error:") and message in error and len(error.splitlines()) == 1
    assert not (tmp_path / "s.pth").exists()
