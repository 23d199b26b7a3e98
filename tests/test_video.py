"""Video and frame-folder reading."""

import cv2
import numpy as np
import pytest

from handobj_d2.data.video import find_videos
from handobj_d2.utils.io import read_image


def _write_mp4(path, count, size=(64, 48)):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, size)
    assert writer.isOpened()
    for i in range(count):
        writer.write(np.full((size[1], size[0], 3), 20 * i, np.uint8))
    writer.release()


def _write_frames(folder, count):
    folder.mkdir(parents=True)
    for i in range(count):
        cv2.imwrite(str(folder / f"{i:04d}.png"), np.full((32, 40, 3), 30 * i, np.uint8))


def test_video_file_frames_come_in_order(tmp_path):
    _write_mp4(tmp_path / "clip.mp4", 5)
    (source,) = find_videos([str(tmp_path / "clip.mp4")])
    assert source.name == "clip" and len(source) == 5 and not source.is_folder
    frames = list(source)
    assert [i for i, _ in frames] == [0, 1, 2, 3, 4]
    # Lossy codec: the mean grey level still identifies each frame (20 * i).
    np.testing.assert_allclose([f.mean() for _, f in frames], [0, 20, 40, 60, 80], atol=3)


def test_directory_expands_to_videos_and_frame_folders(tmp_path):
    (tmp_path / "data").mkdir()
    _write_mp4(tmp_path / "data" / "a.mp4", 3)
    _write_frames(tmp_path / "data" / "seq1" / "rgb", 4)
    _write_mp4(tmp_path / "data" / "seq1" / "b.mp4", 2)
    sources = find_videos([str(tmp_path / "data")])
    assert [s.name for s in sources] == ["a", "seq1__b", "seq1__rgb"]
    folder = sources[2]
    assert folder.is_folder and len(folder) == 4
    assert [int(image.mean()) for _, image in folder] == [0, 30, 60, 90]
    assert folder.frame_path(2).endswith("0002.png")
    # A folder of frames given directly is one video.
    assert [s.name for s in find_videos([str(tmp_path / "data" / "seq1" / "rgb")])] == ["rgb"]


def test_bad_inputs_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="video path not found: .*nothing.mp4"):
        find_videos([str(tmp_path / "nothing.mp4")])
    broken = tmp_path / "broken.mp4"
    broken.write_text("not a video")
    with pytest.raises(ValueError, match="broken.mp4"):
        list(find_videos([str(broken)])[0])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty: no video files or frame folders"):
        find_videos([str(tmp_path / "empty")])
    bad_image = tmp_path / "bad.png"
    bad_image.write_bytes(b"\x89PNG broken")
    with pytest.raises(ValueError, match="bad.png: cannot decode"):
        read_image(str(bad_image))
    with pytest.raises(FileNotFoundError, match="image not found"):
        read_image(str(tmp_path / "missing.png"))
