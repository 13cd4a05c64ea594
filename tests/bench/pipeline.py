"""``python -m tests.bench.pipeline``: the same benchmark as ``twinmon bench`` (the code is streams.bench)."""

from __future__ import annotations

import sys

from streams.bench import main

if __name__ == "__main__":
    sys.exit(main())
