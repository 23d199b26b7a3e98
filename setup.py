#!/usr/bin/env python
"""handobj_d2: semi-supervised 3D hand-object pose estimation as a Detectron2 extension.

Detectron2 itself is not on PyPI: `make install` (or `python tools/install_detectron2.py`)
installs it, leaving an already importable detectron2 alone.
"""

from pathlib import Path

from setuptools import find_packages, setup

requirements = [
    line.split("#")[0].strip()
    for line in (Path(__file__).parent / "requirements.txt").read_text().splitlines()
    if line.split("#")[0].strip() and not line.startswith("pytest")
]

setup(
    name="handobj_d2",
    version="0.1.0",
    description="Semi-supervised 3D hand-object pose estimation (Liu et al., CVPR 2021) "
    "for Detectron2",
    packages=find_packages(include=("handobj_d2", "handobj_d2.*")),
    python_requires=">=3.9",
    install_requires=requirements,
)
