#!/usr/bin/env python
"""fastloss vs NumPy / PyTorch / scikit-learn and vs the machine's memory bandwidth.

A thin wrapper around ``fastloss.benchmark.main`` (the same as ``fastloss bench``)::

    python bench/bench_losses.py --quick
    python bench/bench_losses.py --json bench/results/x.json     # full run, saved
    python bench/bench_losses.py --losses mse,huber --sizes 1e7 --threads 1,2
    python bench/plot.py bench/results/x.json                     # speedup vs size, PNG

See bench/README.md for what is measured and how to read the table.
"""

import sys

from fastloss.benchmark import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
