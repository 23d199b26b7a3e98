"""Files of the package's long jobs: atomic writes (a killed job never leaves a half-written
file behind), whether a run may be resumed, and reading images with errors that name the file.
"""

import contextlib
import json
import os
import tempfile

import cv2

__all__ = ["atomic_file", "read_image", "same_settings", "write_atomically"]


@contextlib.contextmanager
def atomic_file(path):
    """Open a binary file that replaces ``path`` only once the block ends without an error.

    It is written as a temporary file in ``path``'s folder (created if missing), flushed to
    disk (fsync) and renamed over ``path`` (``os.replace``), so readers see the old file or
    the new one, never a part. On an error the temporary file is removed and ``path`` is left
    as it was. For pickles, meshes, ``np.save`` ...::

        with atomic_file("arrays.npy") as f:
            np.save(f, array)
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.")
    try:
        with os.fdopen(handle, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def write_atomically(path, data):
    """Write ``data`` (str, written as UTF-8, or bytes) to ``path`` through ``atomic_file``."""
    with atomic_file(path) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)


def same_settings(previous, current, ignore=(), defaults=None):
    """Whether a run made with the settings ``previous`` may be resumed with ``current``: every
    key of ``current`` but those in ``ignore`` has the same value in ``previous``, compared as
    JSON (tuples equal lists). A key missing from ``previous`` (a setting added since) counts
    with its value in ``defaults``; without one there, the settings differ."""

    def as_json(settings):
        return json.loads(json.dumps(settings))

    previous = as_json({**(defaults or {}), **previous})
    return all(
        key in previous and previous[key] == value
        for key, value in as_json(current).items()
        if key not in ignore
    )


def read_image(path):
    """BGR uint8 image (H, W, 3) from ``path``; a clear error for a missing or unreadable file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image not found: {path}")
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: cannot decode the image (corrupt or not an image)")
    return image
