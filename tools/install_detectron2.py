#!/usr/bin/env python
"""Install Detectron2 v0.6 as a pure-Python distribution, unless one already imports.

Detectron2 is not published on PyPI. The sdist ``pb1-detectron2==0.6`` carries the v0.6 Python
sources but not ``detectron2/layers/csrc``, so a plain ``pip install`` fails while compiling. This
script is the one place where the project works around that:

1. If ``import detectron2`` already works in the target interpreter (e.g. a source build from
   GitHub), it does nothing.
2. Otherwise it fetches the sdist with ``pip download``, applies the patches listed in
   ``PATCHES`` below, replaces its ``setup.py`` with a pure-Python one named ``detectron2`` and
   installs it with pip, so ``pip list`` shows ``detectron2 0.6`` and ``pip uninstall detectron2``
   removes it. Any script that imports detectron2 gets the patched library, not only ours.

The patches, each checked to apply (a changed sdist fails loudly instead of half-patching):

* Missing compiled ops: ``from detectron2 import _C`` at module import time (deformable conv,
  rotated boxes/ROIAlign, fast COCO eval) becomes a lazy proxy that imports ``detectron2._C`` on
  first use and otherwise raises ImportError naming the missing op. ``collect_env`` still sees a
  plain ImportError for ``detectron2._C``, so ``default_setup()`` keeps working. This project
  needs none of those ops (ROIAlign comes from torchvision).
* Pillow >= 10 removed ``Image.LINEAR``; it was an alias of ``Image.BILINEAR``.
* NumPy >= 1.24 removed ``np.bool/np.int/np.float/np.str/np.object``; they were the builtins.
* setuptools >= 81 removed ``pkg_resources``; ``model_zoo.get_config_file`` now resolves the
  bundled configs relative to the package.

Usage: ``python tools/install_detectron2.py [--python PY] [--force]``. Standard library only, so
it runs before anything else is installed.
"""

import argparse
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

SDIST = "pb1-detectron2==0.6"
VERSION = "0.6"

LAZY_C_MODULE = '''\
"""Lazy access to detectron2's compiled extension (added by handobj_d2's installer).

This detectron2 was installed from Python sources only; the ops that need ``detectron2._C``
(deformable convolution, rotated boxes, fast COCO evaluation) raise ImportError when used.
"""
import importlib


class _LazyCompiledOps:
    def __getattr__(self, name):
        try:
            module = importlib.import_module("detectron2._C")
        except ImportError as e:
            raise ImportError(
                f"detectron2._C.{name} is unavailable: this detectron2 was installed without its "
                "compiled C++/CUDA ops. Build detectron2 from source to use this op."
            ) from e
        return getattr(module, name)


_C = _LazyCompiledOps()
'''

# (relative path or glob, regex, replacement, minimum number of substitutions)
PATCHES = [
    ("detectron2/**/*.py", r"^from detectron2 import _C$", "from detectron2._lazy_c import _C", 4),
    ("detectron2/data/transforms/transform.py", r"Image\.LINEAR\b", "Image.BILINEAR", 1),
    ("detectron2/**/*.py", r"\bnp\.(bool|int|float|str|object)\b", r"\1", 10),
    ("detectron2/model_zoo/model_zoo.py", r"^import pkg_resources\n", "", 1),
    (
        "detectron2/model_zoo/model_zoo.py",
        r"pkg_resources\.resource_filename\(\s*\"detectron2\.model_zoo\",\s*",
        "os.path.join(os.path.dirname(__file__), ",
        1,
    ),
]

SETUP_PY = f'''\
# Pure-Python build of detectron2 v{VERSION} written by handobj_d2/tools/install_detectron2.py.
import glob
from setuptools import find_packages, setup

PROJECTS = {{
    "detectron2.projects.point_rend": "projects/PointRend/point_rend",
    "detectron2.projects.deeplab": "projects/DeepLab/deeplab",
    "detectron2.projects.panoptic_deeplab": "projects/Panoptic-DeepLab/panoptic_deeplab",
}}
configs = [p[len("detectron2/model_zoo/"):] for p in glob.glob(
    "detectron2/model_zoo/configs/**/*.*", recursive=True)]
setup(
    name="detectron2",
    version="{VERSION}",
    description="Detectron2 v{VERSION} Python sources (no compiled ops), patched for current "
    "NumPy, Pillow and setuptools",
    url="https://github.com/facebookresearch/detectron2",
    license="Apache-2.0",
    # detectron2's own packages only: its sdist also holds a top-level "tools" package that
    # would shadow the tools/ of projects built on it.
    packages=find_packages(include=("detectron2", "detectron2.*")) + list(PROJECTS),
    package_dir=PROJECTS,
    package_data={{"detectron2.model_zoo": configs}},
    python_requires=">=3.7",
    install_requires=[
        "Pillow>=7.1", "matplotlib", "pycocotools>=2.0.2", "termcolor>=1.1", "yacs>=0.1.8",
        "tabulate", "cloudpickle", "tqdm>4.29.0", "tensorboard", "fvcore>=0.1.5,<0.1.6",
        "iopath>=0.1.7,<0.1.10", "omegaconf>=2.1", "hydra-core>=1.1",
    ],
)
'''


def detectron2_importable(python):
    """Return the version string if ``import detectron2`` works in ``python``, else None."""
    probe = subprocess.run(
        [python, "-c", "import detectron2; print(detectron2.__version__, detectron2.__file__)"],
        capture_output=True,
        text=True,
    )
    return probe.stdout.strip() if probe.returncode == 0 else None


def apply_patches(src):
    """Apply ``PATCHES`` to the extracted sdist at ``src``; raise if one does not apply."""
    for pattern, regex, replacement, minimum in PATCHES:
        files = sorted(src.glob(pattern))
        if not files:
            raise RuntimeError(f"{pattern}: not found in {SDIST}; the sdist changed")
        count = 0
        for path in files:
            text = path.read_text()
            new_text, n = re.subn(regex, replacement, text, flags=re.MULTILINE)
            if n:
                path.write_text(new_text)
                count += n
        if count < minimum:
            raise RuntimeError(
                f"patch {regex!r} on {pattern} applied {count} times, expected >= {minimum}; "
                f"the sdist of {SDIST} changed"
            )
    (src / "detectron2" / "_lazy_c.py").write_text(LAZY_C_MODULE)
    (src / "setup.py").write_text(SETUP_PY)
    for stale in src.glob("*.egg-info"):
        shutil.rmtree(stale)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="interpreter to install into")
    parser.add_argument(
        "--force", action="store_true", help="reinstall even if detectron2 already imports"
    )
    args = parser.parse_args()

    found = detectron2_importable(args.python)
    if found and not args.force:
        print(f"detectron2 already importable ({found}); leaving it alone.")
        return 0

    pip = [args.python, "-m", "pip"]
    with tempfile.TemporaryDirectory(prefix="detectron2-sdist-") as tmp:
        tmp = Path(tmp)
        print(f"Fetching {SDIST} (Python sources of detectron2 v{VERSION}) ...", flush=True)
        subprocess.run(
            pip + ["download", "-q", "--no-deps", "--no-build-isolation", "-d", str(tmp), SDIST],
            check=True,
        )
        (archive,) = tmp.glob("*.tar.gz")
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        (src,) = [p for p in tmp.iterdir() if p.is_dir()]
        apply_patches(src)
        print("Installing patched detectron2 as a pure-Python distribution ...", flush=True)
        subprocess.run(pip + ["install", "-q", str(src)], check=True)

    found = detectron2_importable(args.python)
    if not found:
        raise SystemExit("detectron2 was installed but does not import; see the output above")
    print(f"detectron2 installed: {found}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
