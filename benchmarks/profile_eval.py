"""scIB scores of one 10,000-cell embedding (kBET off) in fresh processes: the first with an
empty JAX compilation cache, the next ones loading it (``mmint.metrics.jax_cache``).

Each process imports mmint and scib-metrics, then times :func:`mmint.metrics.scib.scib_scores`
(wall and CPU seconds) on a synthetic embedding: 10 Gaussian clusters in 20 dimensions, 2
batches. The scores must be identical in every process.

Usage::

    python benchmarks/profile_eval.py --cells 10000 --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def child(n_cells: int) -> None:
    import numpy as np

    from mmint.metrics.scib import scib_scores

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, n_cells)
    centres = rng.normal(0, 3, (10, 20))
    batches = rng.integers(0, 2, n_cells)
    z = (centres[labels] + rng.normal(0, 1, (n_cells, 20)) + 0.3 * batches[:, None]).astype(
        np.float32
    )
    wall, cpu = time.perf_counter(), time.process_time()
    scores = scib_scores(z, labels.astype(str), batches.astype(str), kbet=False)
    out = {
        "wall_s": time.perf_counter() - wall,
        "cpu_s": time.process_time() - cpu,
        "load": os.getloadavg()[0],
        "scores": {k: v for k, v in scores.items() if isinstance(v, float)},
    }
    print("RESULT " + json.dumps(out), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.cells)
        return
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "MMINT_JAX_CACHE": cache, "JAX_PLATFORMS": "cpu"}
        results = []
        for i in range(args.runs):
            cmd = [sys.executable, __file__, "--child", "--cells", str(args.cells)]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True)
            line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
            if not line:
                sys.exit(f"run {i} failed:\n{out.stderr[-3000:]}")
            res = json.loads(line[0][7:])
            results.append(res)
            state = "empty cache" if i == 0 else "cache filled"
            print(
                f"process {i + 1} ({state}): scib_scores {res['wall_s']:.1f} s wall, "
                f"{res['cpu_s']:.1f} s CPU, load {res['load']:.1f}",
                flush=True,
            )
        same = all(r["scores"] == results[0]["scores"] for r in results)
        print(f"scores identical in every process: {same}")
        print(json.dumps(results[0]["scores"], indent=1))


if __name__ == "__main__":
    main()
