"""Reading videos: OpenCV-readable files (mp4, avi, ...) and folders of frames, one API.

``find_videos(paths)`` expands files and directories into ``VideoSource`` objects; iterating a
source yields ``(frame_index, image)`` with BGR uint8 images, frames in order.
"""

import os

import cv2
import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


def _images_in(folder):
    return sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))


def read_image(path):
    """BGR uint8 image from ``path``; a clear error for a missing, unreadable or truncated file.
    Decoded from the file's bytes (``cv2.imdecode``, which rejects a truncated JPEG that
    ``cv2.imread`` decodes without an error, grey where the data is missing)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image not found: {path}")
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise ValueError(f"{path}: cannot decode the image (corrupt, truncated or not an image)")
    return image


class VideoSource:
    """One video: a file OpenCV can read, or a folder of frames sorted by file name.

    Attributes: name (unique among the sources of one ``find_videos`` call), path, is_folder,
    fps (frames per second; 30 for folders).
    """

    def __init__(self, path, name=None):
        self.path = path
        self.is_folder = os.path.isdir(path)
        self.name = name or os.path.splitext(os.path.basename(os.path.normpath(path)))[0]
        if self.is_folder:
            self._frames = _images_in(path)
            if not self._frames:
                raise ValueError(f"{path}: folder holds no images ({', '.join(IMAGE_EXTENSIONS)})")
            self.fps = 30.0
            self._count = len(self._frames)
        else:
            capture = self._open()
            self.fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
            self._count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
            capture.release()

    def _open(self):
        capture = cv2.VideoCapture(self.path)
        if not capture.isOpened():
            raise ValueError(
                f"{self.path}: OpenCV cannot open this video (missing codec or corrupt file)"
            )
        return capture

    def __len__(self):
        """Number of frames (as the container reports it for video files)."""
        return self._count

    def __iter__(self):
        if self.is_folder:
            for index, file_name in enumerate(self._frames):
                yield index, read_image(os.path.join(self.path, file_name))
            return
        capture = self._open()
        index = 0
        try:
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                yield index, frame
                index += 1
        finally:
            capture.release()
        if index == 0:
            raise ValueError(f"{self.path}: no frame could be decoded from this video")

    def frame_path(self, frame_index):
        """File of a frame for folder sources, None for video files."""
        return os.path.join(self.path, self._frames[frame_index]) if self.is_folder else None


def find_videos(paths):
    """Expand paths into VideoSources.

    A video file is one source; a folder that directly holds images is one source (its frames);
    any other folder expands, recursively, to the video files and frame folders inside it.
    Names are paths relative to the given folder (with "/" replaced by "__") so they are unique.
    """
    sources = []
    for path in paths:
        if not os.path.exists(path):
            raise FileNotFoundError(f"video path not found: {path}")
        if os.path.isfile(path):
            if not path.lower().endswith(VIDEO_EXTENSIONS):
                raise ValueError(f"{path}: not a video file ({', '.join(VIDEO_EXTENSIONS)})")
            sources.append(VideoSource(path))
        elif _images_in(path):
            sources.append(VideoSource(path))
        else:
            found = []
            for root, dirs, files in os.walk(path):
                dirs.sort()
                if root != path and _images_in(root):
                    found.append(root)
                    dirs[:] = []
                    continue
                found += [
                    os.path.join(root, f)
                    for f in sorted(files)
                    if f.lower().endswith(VIDEO_EXTENSIONS)
                ]
            if not found:
                raise ValueError(f"{path}: no video files or frame folders inside")
            for item in found:
                relative = (
                    os.path.splitext(os.path.relpath(item, path))[0]
                    if os.path.isfile(item)
                    else os.path.relpath(item, path)
                )
                sources.append(VideoSource(item, name=relative.replace(os.sep, "__")))
    names = [s.name for s in sources]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"several videos are named {duplicates}; pass them from distinct folders")
    return sources
