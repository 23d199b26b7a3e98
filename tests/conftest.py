import sys
from pathlib import Path

import pytest

# Test helpers (hand_skeletons.py, ...) import as top-level modules.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def tiny_synthetic_root(tmp_path_factory):
    """A tiny synthetic HO3D-format tree (8 train, 4 evaluation frames, one 6-frame video,
    160x120 px) shared by the tests that train, evaluate or run the tools."""
    from handobj_d2.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("datasets") / "synthetic"
    generate_dataset(str(root), train=8, evaluation=4, videos=1, frames_per_video=6,
                     image_size=(160, 120), seed=0, progress=False)  # fmt: skip
    return root
