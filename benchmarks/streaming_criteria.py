"""Benchmark: live (streaming) criteria for 200 region geometries vs recomputing in batch.

For a run of S shots, the live monitor must update the criteria after every shot. Streaming adds
one shot to the grouped accumulators (O(G)) and evaluates the criteria from them (O(G x groups));
the alternative recomputes everything from all shots so far (O(S x G)). Both measured here, in one
run, as time per shot at several run lengths; the ratio is the figure of merit.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.criteria import StreamingCriteria, evaluate  # noqa: E402
from tests.analysis.spin_model import sample, squeezed  # noqa: E402

G = 200


def per_shot(fn, repeats: int) -> float:
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    rng = np.random.default_rng(0)
    figures: dict[str, float] = {"geometries": G}
    for shots in (300, 1200, 3000):
        dirs, n1a, n2a, n1b, n2b = sample(rng, squeezed(), shots // 3, 0.5, datasets=G)
        n1a, n2a, n1b, n2b = (a.astype(float) for a in (n1a, n2a, n1b, n2b))
        live = StreamingCriteria(G)
        for i in range(shots - 1):
            live.add(dirs[i], n1a[i], n2a[i], n1b[i], n2b[i])
        last = shots - 1
        t_add = per_shot(lambda: live.add(dirs[last], n1a[last], n2a[last], n1b[last],
                                          n2b[last]), 200)
        t_result = per_shot(live.result, 20)
        t_batch = per_shot(lambda: evaluate(dirs, n1a, n2a, n1b, n2b), 5)
        ratio = t_batch / (t_add + t_result)
        print(f"S = {shots:5d} shots, G = {G}: streaming add {t_add * 1e6:7.1f} us + result "
              f"{t_result * 1e3:6.2f} ms per shot; batch recompute {t_batch * 1e3:7.2f} ms; "
              f"batch / streaming = {ratio:5.1f}x")
        figures[f"add_us_S{shots}"] = round(t_add * 1e6, 2)
        figures[f"result_ms_S{shots}"] = round(t_result * 1e3, 3)
        figures[f"batch_ms_S{shots}"] = round(t_batch * 1e3, 3)
        figures[f"speedup_S{shots}"] = round(ratio, 2)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
