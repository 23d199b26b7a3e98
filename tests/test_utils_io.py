"""handobj_d2/utils/io.py: atomic writes, the resume check, reading images."""

import pickle

import numpy as np
import pytest

from handobj_d2.utils.io import (
    atomic_file,
    atomic_path,
    read_image,
    same_settings,
    write_atomically,
)


def test_atomic_writes_replace_the_file_whole_or_not_at_all(tmp_path):
    path = tmp_path / "new" / "folder" / "result.json"
    write_atomically(str(path), '{"done": "ü"}')  # the folder is made; text is UTF-8
    assert path.read_bytes() == '{"done": "ü"}'.encode("utf-8")
    write_atomically(str(path), b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_file(str(path)) as f:
            f.write(b"half of a new file")
            raise RuntimeError("killed")
    assert path.read_bytes() == b"\x00\x01"  # the old file, untouched
    assert [p.name for p in path.parent.iterdir()] == ["result.json"]  # no temporary left
    with atomic_file(str(tmp_path / "arrays.npy")) as f:
        np.save(f, np.arange(3))
    np.testing.assert_array_equal(np.load(tmp_path / "arrays.npy"), [0, 1, 2])
    with atomic_file(str(tmp_path / "x.pkl")) as f:
        pickle.dump({"a": 1}, f)
    assert pickle.loads((tmp_path / "x.pkl").read_bytes()) == {"a": 1}


def test_atomic_path_gives_writers_a_name_with_the_extension_and_renames_it_whole(tmp_path):
    path = tmp_path / "videos" / "clip.mp4"
    with atomic_path(str(path)) as temporary:
        assert temporary.endswith(".mp4") and not path.exists()  # nothing visible yet
        with open(temporary, "wb") as f:  # a writer that opens the name itself
            f.write(b"first")
    assert path.read_bytes() == b"first"
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_path(str(path)) as temporary:
            with open(temporary, "wb") as f:
                f.write(b"half")
            raise RuntimeError("killed")
    assert path.read_bytes() == b"first"  # the old file, untouched
    assert [p.name for p in path.parent.iterdir()] == ["clip.mp4"]  # no temporary left


def test_a_run_resumes_only_with_the_same_settings():
    previous = {"seeds": [0, 1], "size": [256, 192], "mode": "filtered"}
    assert same_settings(previous, {"size": (256, 192), "mode": "filtered", "seeds": [0, 1]})
    assert not same_settings(previous, {"size": (256, 192), "mode": "distillation"})
    assert same_settings(previous, {"seeds": [4], "mode": "filtered"}, ignore=("seeds",))
    # a setting added since the previous run: its default, or else different
    assert not same_settings(previous, {"mode": "filtered", "domain": "shifted"})
    assert same_settings(previous, {"domain": "shifted"}, defaults={"domain": "shifted"})
    assert not same_settings(previous, {"domain": "other"}, defaults={"domain": "shifted"})


def test_read_image_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="image not found: .*missing.png"):
        read_image(str(tmp_path / "missing.png"))
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="bad.png: cannot decode"):
        read_image(str(tmp_path / "bad.png"))
