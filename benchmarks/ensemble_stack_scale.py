"""Time and peak memory of the stacker's cross-fitted scores (``stacking.crossfit_scores``: one
stacker fit per fold) on synthetic inputs: 650 labels, two inputs, 5 folds, per-document label
counts as cross-fitting gives them. Peak memory is tracemalloc's, above the inputs.

    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/ensemble_stack_scale.py 2000 20000
"""

from __future__ import annotations

import sys
import time
import tracemalloc

import numpy as np

from patentcpc.kinds.ensemble.stacking import crossfit_scores


def main() -> None:
    n_labels = 650
    for n in map(int, sys.argv[1:] or ["2000", "20000"]):
        rng = np.random.default_rng(0)
        y = np.zeros((n, n_labels), dtype=bool)
        y[np.arange(n), rng.integers(0, n_labels, n)] = True
        inputs = [np.where(y, 0.3, 0.0) + rng.random((n, n_labels)) * 0.5 for _ in range(2)]
        log_counts = np.log1p(rng.integers(0, 20, (n, n_labels))).astype(np.float64)
        tracemalloc.start()
        t = time.perf_counter()
        crossfit_scores(inputs, y, log_counts, np.arange(n) % 5)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"{n} documents: {time.perf_counter() - t:.1f} s, peak {peak / 2**20:.0f} MiB above the inputs")


if __name__ == "__main__":
    main()
