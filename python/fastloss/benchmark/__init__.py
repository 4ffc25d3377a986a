"""Benchmark harness: fastloss against NumPy, PyTorch and scikit-learn, and against the machine's
own memory bandwidth.

What one run measures, for every elementwise loss in ``fastloss.losses()`` (or the ones asked
for), every dtype, size and thread count:

* fastloss ``value_and_grad(y_true, y_pred, grad_out=g)`` with a preallocated ``g`` (the hot
  path) and the value alone ``loss(y_true, y_pred)``;
* the same value (mean) and gradient computed by the fastest careful NumPy formulation we know
  (preallocated buffers, ``out=`` ufuncs, fewest passes; see ``baselines.NUMPY``), by PyTorch
  CPU (forward + backward, see ``baselines.TORCH``) and by ``sklearn._loss`` (see
  ``baselines.SKLEARN``) when they are installed;
* achieved GB/s of fastloss (bytes of the arrays it must read and write, once) and that as a
  fraction of a triad ``a = b + s*c`` measured by the harness on arrays far larger than the
  caches, with the same number of threads (``bandwidth``);
* speedups as medians of per-repeat ratios: in every repeat each implementation runs once, in a
  rotating order, so that they share the machine's noise (``timing``);
* a correctness check: the fastloss value and gradient against the NumPy baseline.

The API (``run``, ``format_table``, ``measure_triad_bandwidth``, ``main``) is what
``fastloss bench`` and ``bench/bench_losses.py`` call; ``run`` returns a JSON-serializable dict.
Modules: ``command`` (the runs and the command line), ``baselines``, ``bandwidth``, ``timing``,
``report`` (tables and JSON).
"""

from .bandwidth import measure_triad_bandwidth
from .command import QUICK_SIZES, SIZES, main, run, run_multiclass
from .report import format_multiclass_table, format_table

__all__ = ["run", "format_table", "run_multiclass", "format_multiclass_table",
           "measure_triad_bandwidth", "main", "SIZES", "QUICK_SIZES"]
