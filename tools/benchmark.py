#!/usr/bin/env python
"""Benchmarks that print one JSON object each; speed is measured here, never in tests.

    python tools/benchmark.py --task TASK [task options]

Each task lives in ``handobj_d2/benchmarks.py`` next to the others; ``--help`` lists them.
"""

import sys

from handobj_d2.benchmarks import main

if __name__ == "__main__":
    sys.exit(main())
