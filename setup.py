"""Install ovdet: ``pip install -e .[test]`` (``.[bench]`` adds transformers, for the OWL-ViT peer
of ``tools/benchmark.py detector``)."""
from setuptools import find_packages, setup

setup(
    name="ovdet",
    version="0.1.0",
    description="Open-vocabulary object detection and panoptic segmentation on one shared ViT-CLIP",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["ovdet", "ovdet.*"]),
    package_data={"ovdet.clip": ["model_configs/*.json", "weights/*.pt", "weights/*.md"]},
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "open_clip_torch>=2.24",
        "fvcore>=0.1.5.post20221221",
        "pycocotools>=2.0.7",
        "lvis>=0.5.3",
        "scipy>=1.10",
        "numpy>=1.24",
        "pillow>=10.1",
        "tqdm>=4.66",
    ],
    extras_require={"test": ["pytest>=7.4"], "bench": ["transformers>=4.40"]},
)
