"""Files of the package's long jobs: atomic writes (a killed job never leaves a half-written
file behind), whether a run may be resumed, and reading images with errors that name the file.
"""

import contextlib
import json
import logging
import os
import tempfile

import cv2
import numpy as np

__all__ = [
    "TEMPORARY_PREFIX",
    "atomic_file",
    "atomic_path",
    "read_image",
    "remove_temporary_files",
    "same_settings",
    "write_atomically",
]

logger = logging.getLogger(__name__)

# Names of the temporary files of ``atomic_file`` (and other writers that rename into place).
TEMPORARY_PREFIX = ".tmp-"


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
    handle, temporary = _temporary_file(path)
    try:
        with os.fdopen(handle, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


@contextlib.contextmanager
def atomic_path(path):
    """A temporary file name that replaces ``path`` only once the block ends without an error,
    for writers that take a file name rather than a file (``cv2.VideoWriter``, ...).

    The temporary file is in ``path``'s folder (created if missing) with ``path``'s extension
    (writers that pick the format from it see the right one); it is flushed to disk (fsync) and
    renamed over ``path`` (``os.replace``). On an error it is removed and ``path`` is left as it
    was::

        with atomic_path("clip.mp4") as temporary:
            video = cv2.VideoWriter(temporary, ...)
            ...
            video.release()
    """
    handle, temporary = _temporary_file(path, keep_extension=True)
    os.close(handle)
    try:
        yield temporary
        with open(temporary, "rb") as f:
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _temporary_file(path, keep_extension=False):
    """A new TEMPORARY_PREFIX file beside ``path`` (its folder created if missing), with the mode
    ``open()`` would give it: (OS handle, name). Its name ends with ``path``'s extension only
    with ``keep_extension``: otherwise a search for "*.json" (say) does not find it."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    name = os.path.basename(path)
    stem, extension = os.path.splitext(name) if keep_extension else (name, "")
    handle, temporary = tempfile.mkstemp(
        dir=folder, prefix=f"{TEMPORARY_PREFIX}{stem}.", suffix=extension
    )
    os.fchmod(handle, 0o666 & ~_umask())  # mkstemp's 0600
    return handle, temporary


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomically(path, data):
    """Write ``data`` (str, written as UTF-8, or bytes-like) to ``path`` through ``atomic_file``."""
    with atomic_file(path) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)


def remove_temporary_files(folder, recursive=True):
    """Delete the TEMPORARY_PREFIX files a killed writer left in ``folder`` (and below); returns
    their paths. Call it only where no other process is writing there."""
    removed = []
    for root, _, files in os.walk(folder):
        removed += [os.path.join(root, f) for f in files if f.startswith(TEMPORARY_PREFIX)]
        if not recursive:
            break
    for path in removed:
        os.remove(path)
    if removed:
        logger.info(f"Removed {len(removed)} temporary file(s) of an interrupted run in {folder}")
    return removed


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
    """BGR uint8 image (H, W, 3) from ``path``; a clear error for a missing, unreadable or
    truncated file. Decoded from the file's bytes (``cv2.imdecode`` rejects a truncated JPEG
    that ``cv2.imread`` decodes without an error, grey where the data is missing)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image not found: {path}")
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise ValueError(f"{path}: cannot decode the image (corrupt, truncated or not an image)")
    return image
