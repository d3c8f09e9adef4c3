"""tools/pretrain_clip.py: losses, checkpoints, and a killed-then-resumed run equal to a whole one."""
import importlib.util
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ovdet.clip import pretrain
from ovdet.clip.pretrain import patch_alignment_loss

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "pretrain_clip.py"


def load_script():
    spec = importlib.util.spec_from_file_location("pretrain_clip_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_patch_alignment_loss_by_hand():
    """Two images of two patches each; one-hot embeddings make the pooling easy to follow."""
    e = torch.eye(3)
    dense = torch.stack([torch.stack([e[0], e[2]]), torch.stack([e[1], e[2]])])  # (2, 2, 3)
    text = torch.stack([e[0], e[1]])
    scale = torch.tensor(10.0)
    # image 0 pooled for caption 0 is ~e0 (patch 0 wins the softmax); for caption 1 both patches
    # tie (similarity 0), so the pool is (e0 + e2)/sqrt(2), whose similarity to e1 is 0.
    logits = torch.tensor([[1.0, 0.0], [0.0, 1.0]]) * scale
    labels = torch.arange(2)
    expected = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    got = patch_alignment_loss(dense, text, scale, pool_temperature=1e-3)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)


ARGS = ["--model", "ovdet-test-vit-t8", "--steps", "4", "--batch-size", "8", "--num-pairs", "48",
        "--checkpoint-period", "2", "--warmup", "1", "--probe-images", "12", "--threads", "2"]


def test_killed_and_resumed_run_equals_whole_run(tmp_path, monkeypatch):
    script = load_script()
    script.main(ARGS + ["--output-dir", str(tmp_path / "whole")])
    whole = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=False)
    metrics = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    assert metrics["args"]["steps"] == 4 and 0 <= metrics["zero_shot"]["overall"] <= 1

    real_forward = pretrain.ToyCLIPObjective.forward
    calls = []

    def dies_at_third_step(self, images, captions):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed after the step-2 checkpoint
        return real_forward(self, images, captions)

    monkeypatch.setattr(pretrain.ToyCLIPObjective, "forward", dies_at_third_step)
    with pytest.raises(KeyboardInterrupt):
        script.main(ARGS + ["--output-dir", str(tmp_path / "killed")])
    assert torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=False)["step"] == 2
    monkeypatch.setattr(pretrain.ToyCLIPObjective, "forward", real_forward)
    script.main(ARGS + ["--output-dir", str(tmp_path / "killed"), "--resume"])
    resumed = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=False)
    assert resumed["step"] == 4
    for key, value in whole["model"].items():
        assert torch.equal(value, resumed["model"][key]), key


def test_bad_arguments_exit_cleanly():
    script = load_script()
    with pytest.raises(SystemExit):
        script.parse_args(["--steps", "0"])
