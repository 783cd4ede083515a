"""Startup time: ``patentcpc --help`` vs ``patentcpc predict --model <cold-start model> --text ...``.

Runs the two commands alternately (so machine load hits both alike), ``--runs`` times each, and
prints wall and CPU (user + sys) seconds: min and median. Usage::

    python benchmarks/startup.py --model patentcpc-models/scheme-subclass [--runs 5]

Train the cold-start model first with ``patentcpc quickstart``. The target (issue 12) is predict
<= 10x help.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

TEXT = ("A method for transmitting data packets in a wireless communication network, wherein a base station "
        "allocates radio resources to a user equipment based on channel quality reports.")


def run_once(argv: list[str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "120"})
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr.decode(errors='replace')[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="The cold-start model folder (patentcpc quickstart).")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    base = [sys.executable, "-m", "patentcpc"]
    commands = {"help": [*base, "--help"], "predict": [*base, "predict", "--model", args.model, "--text", TEXT]}
    for argv in commands.values():  # warm the file cache
        run_once(argv)
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in commands}
    for _ in range(args.runs):
        for name, argv in commands.items():
            times[name].append(run_once(argv))
    result = {}
    for name, ts in times.items():
        walls, cpus = [t[0] for t in ts], [t[1] for t in ts]
        result[name] = {"wall_min_s": round(min(walls), 3), "wall_median_s": round(statistics.median(walls), 3),
                        "cpu_min_s": round(min(cpus), 3), "cpu_median_s": round(statistics.median(cpus), 3)}
    result["ratio_wall_median"] = round(result["predict"]["wall_median_s"] / result["help"]["wall_median_s"], 2)
    result["ratio_cpu_median"] = round(result["predict"]["cpu_median_s"] / result["help"]["cpu_median_s"], 2)
    result["runs"] = args.runs
    result["load_average"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
