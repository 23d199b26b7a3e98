#!/usr/bin/env python
"""Benchmarks that print one JSON object each: ``dev/benchmark.py``, run from here.

    python tools/benchmark.py --task TASK [task options]      (--help lists the tasks)
"""

import os
import runpy

if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    runpy.run_path(os.path.join(here, "..", "dev", "benchmark.py"), run_name="__main__")
