"""Loading CLIP through open_clip: architecture names, pretrained tags, local checkpoints, and
ovdet's own tiny CLIPs.

``load_clip(name, pretrained)``:

* ``name`` is an open_clip architecture (``ViT-B-16``), one of ovdet's own (``list_models()``), or
  ``"toyworld"``, the toy CLIP that ships with the package.
* ``pretrained`` is an open_clip tag (``openai``, ``laion2b_s34b_b88k``, ...), a local checkpoint
  path (an open_clip state dict: ``.pt``, ``.bin``, ``.safetensors``), or ``None`` (random init).

A tag is looked up offline first: in ``$OVDET_CLIP_CACHE`` (or open_clip's default cache) for
URL weights, in the Hugging Face cache for hub weights. Only when the file is not there, and
``HF_HUB_OFFLINE`` is not set, does open_clip try to download it. Weights that cannot be had raise
:class:`WeightsNotFoundError`, which says what to fetch and where to put it.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import open_clip
import torch

PACKAGE_DIR = Path(__file__).resolve().parent
MODEL_CONFIG_DIR = PACKAGE_DIR / "model_configs"
TOYWORLD_WEIGHTS = PACKAGE_DIR / "weights" / "toyworld.pt"
TOYWORLD_ARCH = "ovdet-toy-vit-t8"
CACHE_ENV = "OVDET_CLIP_CACHE"
WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")

open_clip.add_model_config(MODEL_CONFIG_DIR)


class WeightsNotFoundError(FileNotFoundError):
    """CLIP weights could not be found locally (and could not be downloaded)."""


@dataclass
class CLIPBundle:
    """A loaded CLIP: ``model`` (open_clip CLIP, eval mode), ``tokenizer`` (list[str] -> (N, L)
    token ids), ``preprocess`` (PIL image -> (3, S, S) tensor at the native size ``S``), and
    where it came from (``name``, ``pretrained``)."""

    model: open_clip.CLIP
    tokenizer: Callable[[list[str]], torch.Tensor]
    preprocess: Callable
    name: str
    pretrained: str | None

    def image_normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std) per RGB channel in [0, 1] units, as the model's own preprocess uses."""
        cfg = self.model.visual.preprocess_cfg
        return tuple(cfg["mean"]), tuple(cfg["std"])

    def text_fingerprint(self) -> str:
        """SHA-1 of the text tower's current weights: what text embeddings depend on."""
        return self._fingerprint(lambda key: not key.startswith("visual."))

    def weights_fingerprint(self) -> str:
        """SHA-1 of all current weights (image and text towers)."""
        return self._fingerprint(lambda key: True)

    def _fingerprint(self, include: Callable[[str], bool]) -> str:
        digest = hashlib.sha1()
        for key, value in sorted(self.model.state_dict().items()):
            if include(key):
                digest.update(key.encode())
                digest.update(value.detach().cpu().reshape(-1).contiguous().view(torch.uint8)
                              .numpy().tobytes())
        return digest.hexdigest()


def list_models() -> list[str]:
    """ovdet's own CLIP architectures (registered with open_clip) plus ``toyworld``."""
    return sorted(p.stem for p in MODEL_CONFIG_DIR.glob("*.json")) + ["toyworld"]


def _looks_like_path(pretrained: str) -> bool:
    return os.sep in pretrained or pretrained.endswith(WEIGHT_SUFFIXES) or pretrained.startswith(".")


def _cached_tag_file(name: str, pretrained_cfg: dict, cache_dir: str | None) -> str | None:
    """The local file of a tag's weights if some cache already holds it, without any network."""
    url = pretrained_cfg.get("url", "")
    if url:
        candidate = Path(cache_dir or Path.home() / ".cache" / "clip") / os.path.basename(url)
        if candidate.is_file():
            return str(candidate)
    hub = pretrained_cfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        repo_id, filename = os.path.split(hub)
        names = [filename] if filename else ["open_clip_model.safetensors",
                                             "open_clip_pytorch_model.bin"]
        for candidate in names:
            found = try_to_load_from_cache(repo_id, candidate, cache_dir=cache_dir)
            if isinstance(found, str):
                return found
    return None


def _missing_weights_message(name: str, tag: str, pretrained_cfg: dict, cache_dir: str | None,
                             reason: str) -> str:
    url = pretrained_cfg.get("url", "")
    hub = pretrained_cfg.get("hf_hub", "")
    where = Path(cache_dir or Path.home() / ".cache" / "clip")
    lines = [f"CLIP weights for {name} / {tag} were not found locally ({reason}).", "Either:"]
    if url:
        lines.append(f"  - download {url}\n    and put it at {where / os.path.basename(url)} "
                     f"(set {CACHE_ENV} to use another folder), or")
    if hub:
        repo_id, filename = os.path.split(hub)
        lines.append(f"  - download {filename or 'open_clip_model.safetensors'} from the Hugging Face "
                     f"repository {repo_id} into the Hugging Face cache, or")
    lines.append("  - download the checkpoint anywhere and pass its path as `pretrained` "
                 "(config: MODEL.CLIP.PRETRAINED /path/to/file).")
    return "\n".join(lines)


def clip_embed_dim(name: str) -> int:
    """D, the joint-space width of CLIP architecture ``name`` (as :func:`load_clip` names it),
    read from its config without building it; ``ValueError`` for an unknown architecture."""
    architecture = TOYWORLD_ARCH if name == "toyworld" else name
    config = open_clip.get_model_config(architecture)
    if config is None:
        raise ValueError(f"unknown CLIP architecture {name!r}")
    return int(config["embed_dim"])


def load_clip(name: str, pretrained: str | None = None, device: str | torch.device = "cpu",
              cache_dir: str | None = None) -> CLIPBundle:
    """Load a CLIP by open_clip architecture ``name`` and ``pretrained`` tag or path (module doc).

    ``load_clip("toyworld")`` loads the toy CLIP shipped with ovdet. Raises
    :class:`WeightsNotFoundError` for weights that cannot be found, ``ValueError`` for an unknown
    architecture or tag.
    """
    cache_dir = cache_dir or os.environ.get(CACHE_ENV) or None
    if name == "toyworld":
        if not TOYWORLD_WEIGHTS.is_file():
            raise WeightsNotFoundError(
                f"the toy CLIP checkpoint {TOYWORLD_WEIGHTS} is missing from the package; "
                "regenerate it with the command in ovdet/clip/weights/TOYWORLD.md")
        name, pretrained = TOYWORLD_ARCH, pretrained or str(TOYWORLD_WEIGHTS)
        display_name = "toyworld"
    else:
        display_name = name
    if name not in open_clip.list_models():
        raise ValueError(f"unknown CLIP architecture {name!r}; open_clip knows "
                         f"{', '.join(open_clip.list_models()[:8])}, ... and ovdet adds "
                         f"{', '.join(list_models())}")
    kwargs: dict = {}
    checkpoint = None
    if pretrained:
        pretrained_cfg = open_clip.get_pretrained_cfg(name, pretrained)
        if pretrained_cfg:
            kwargs = {"force_quick_gelu": pretrained_cfg.get("quick_gelu", False),
                      "image_mean": pretrained_cfg.get("mean"), "image_std": pretrained_cfg.get("std")}
            checkpoint = _cached_tag_file(name, pretrained_cfg, cache_dir)
            if checkpoint is None:
                checkpoint = _download(name, pretrained, pretrained_cfg, cache_dir)
        elif Path(pretrained).is_file():
            checkpoint = pretrained
        elif _looks_like_path(pretrained):
            raise WeightsNotFoundError(f"CLIP checkpoint file {pretrained} does not exist")
        else:
            tags = open_clip.list_pretrained_tags_by_model(name)
            raise ValueError(f"{pretrained!r} is neither a pretrained tag of {name} "
                             f"({', '.join(tags) or 'none'}) nor an existing file")
    model, _, preprocess = open_clip.create_model_and_transforms(
        name, pretrained=checkpoint, device=device, **{k: v for k, v in kwargs.items() if v is not None})
    model.eval()
    return CLIPBundle(model=model, tokenizer=open_clip.get_tokenizer(name), preprocess=preprocess,
                      name=display_name, pretrained=pretrained)


def _download(name: str, tag: str, pretrained_cfg: dict, cache_dir: str | None) -> str:
    """Let open_clip download a tag's weights; any failure becomes a WeightsNotFoundError."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"):
        raise WeightsNotFoundError(_missing_weights_message(
            name, tag, pretrained_cfg, cache_dir, "HF_HUB_OFFLINE is set, so nothing is downloaded"))
    try:
        path = open_clip.download_pretrained(pretrained_cfg, cache_dir=cache_dir)
    except Exception as error:  # network errors come in many types; all mean "not available"
        raise WeightsNotFoundError(_missing_weights_message(
            name, tag, pretrained_cfg, cache_dir, f"download failed: {type(error).__name__}")) from error
    if not path or not Path(path).is_file():
        raise WeightsNotFoundError(_missing_weights_message(
            name, tag, pretrained_cfg, cache_dir, "download returned no file"))
    return path
