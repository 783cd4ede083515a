"""Streaming benchmark: time and memory of ``patentcpc data stats`` on growing prefixes of a big file.

Runs the CLI in a child process per size and samples ``/proc/<pid>/status`` every 50 ms:

* ``VmHWM``: peak resident set size (what ``/usr/bin/time -v`` reports as "Maximum resident set size");
* ``RssAnon``: anonymous memory (Python objects, Arrow buffers in RAM): if loading held every row in
  Python lists this would grow with the row count;
* ``RssFile``: file-backed pages (memory-mapped Arrow cache files): reclaimable page cache, it grows
  with the file but the kernel can drop it at any time.

    python benchmarks/streaming_make_data.py --rows 1000000 --output /tmp/big.csv
    python benchmarks/streaming_bench.py --data /tmp/big.csv --sizes 250000,500000,1000000

Each run gets its own empty Hugging Face cache folder (the cold path: CSV -> Arrow conversion included).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _status(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                    out[key] = int(value.split()[0])  # kB
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


def run(cmd: list[str], env: dict) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = {"VmHWM": 0, "RssAnon": 0, "RssFile": 0}
    import threading

    done = threading.Event()

    def sample():
        while not done.is_set():
            st = _status(proc.pid)
            for k in peak:
                peak[k] = max(peak[k], st.get(k, 0))
            time.sleep(0.05)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    stdout, stderr = proc.communicate()
    done.set()
    th.join()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{stderr.decode()[-2000:]}")
    return {"wall_s": round(wall, 1), "peak_rss_mb": round(peak["VmHWM"] / 1024),
            "peak_anon_mb": round(peak["RssAnon"] / 1024), "peak_file_mb": round(peak["RssFile"] / 1024),
            "stats": json.loads(stdout)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="a big CSV from streaming_make_data.py")
    ap.add_argument("--sizes", default="250000,500000,1000000", help="row counts (prefixes of --data)")
    ap.add_argument("--workdir", type=Path, default=None, help="where prefixes and caches go (default: a temp dir)")
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="patentcpc-stream-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in [int(x) for x in args.sizes.split(",")]:
        part = work / f"rows{n}.csv"
        with open(args.data, encoding="utf-8") as src, open(part, "w", encoding="utf-8") as dst:
            for i, line in enumerate(src):  # the generator writes no embedded newlines
                if i > n:
                    break
                dst.write(line)
        cache = work / f"hf-cache-{n}"
        shutil.rmtree(cache, ignore_errors=True)
        env = {**os.environ, "HF_DATASETS_CACHE": str(cache), "HF_DATASETS_OFFLINE": "1"}
        cmd = [sys.executable, "-m", "patentcpc", "data", "stats", "--data", str(part),
               "--plots-dir", str(work / "plots"), "--json"]
        res = run(cmd, env)
        res["rows"] = n
        res["file_mb"] = round(part.stat().st_size / 1e6)
        res["n_docs"], res["n_labels"] = res["stats"]["n_docs"], res["stats"]["n_labels"]
        del res["stats"]
        rows.append(res)
        print(json.dumps(res), flush=True)
        shutil.rmtree(cache, ignore_errors=True)
        part.unlink()
    print("\n| rows | file MB | wall s | peak RSS MB | peak anonymous MB | peak file-backed MB |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['rows']:,} | {r['file_mb']} | {r['wall_s']} | {r['peak_rss_mb']} | {r['peak_anon_mb']} "
              f"| {r['peak_file_mb']} |")


if __name__ == "__main__":
    main()
