"""Test-wide setup: never touch the network, never write into the user's caches."""
import os
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("OVDET_CACHE", tempfile.mkdtemp(prefix="ovdet-test-cache-"))

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_clip():
    """A randomly initialised tiny CLIP (ovdet-test-vit-t8: 32 px, patch 8, 2 blocks)."""
    from ovdet.clip import load_clip

    torch.manual_seed(0)
    return load_clip("ovdet-test-vit-t8")


@pytest.fixture(scope="session")
def toy_clip():
    """The toy CLIP shipped with the package."""
    from ovdet.clip import load_clip

    return load_clip("toyworld")
