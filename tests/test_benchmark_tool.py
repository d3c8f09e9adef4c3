"""tools/benchmark.py detector: argument checks and vocabulary (no model is built here)."""
import importlib.util
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
