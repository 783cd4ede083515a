"""Bounded load test of ``patentcpc serve`` on loopback: throughput and p50/p95/p99 latency.

Starts ``patentcpc serve --model DIR`` on 127.0.0.1 (a free port) unless ``--url`` names a running
loopback service, sends ``--requests`` POST /predict requests from ``--concurrency`` clients (at
most ``--max-seconds``), then checks that malformed, empty and oversized requests get a 4xx and
that /health still answers, and prints (and with ``--output`` writes) one JSON object.

    python benchmarks/loadtest.py --model MODEL_DIR --data ../shared/data/uspto-abstracts/patents.jsonl \
        --requests 500 --concurrency 32 --output benchmarks/loadtest-linear.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from urllib.parse import urlparse

import httpx

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_texts(data: str | None, n: int) -> list[str]:
    if data is None:
        return [f"Wireless network base station scheduling data packets, variant {i}" for i in range(n)]
    from patentcpc.data import load_data

    texts = load_data(data, require_labels=False).texts
    return [texts[i % len(texts)] for i in range(n)]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[k]


async def wait_healthy(client: httpx.AsyncClient, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if (await client.get("/health")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.5)
    raise SystemExit(f"service not healthy after {timeout:.0f} s")


async def run(args, base_url: str) -> dict:
    texts = load_texts(args.data, args.requests * args.docs_per_request)
    latencies: list[float] = []
    errors: list[str] = []
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=args.request_timeout, limits=limits) as client:
        await wait_healthy(client, args.startup_timeout)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(args.requests):
            queue.put_nowait(i)
        deadline = time.monotonic() + args.max_seconds

        async def worker() -> None:
            while time.monotonic() < deadline:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                chunk = texts[i * args.docs_per_request : (i + 1) * args.docs_per_request]
                body = ({"text": chunk[0]} if args.docs_per_request == 1
                        else {"documents": [{"id": str(j), "text": t} for j, t in enumerate(chunk)]})
                t0 = time.perf_counter()
                try:
                    r = await client.post("/predict", json=body)
                    ok = r.status_code == 200
                    if not ok:
                        errors.append(f"{r.status_code}: {r.text[:200]}")
                except httpx.HTTPError as exc:
                    ok = False
                    errors.append(f"{type(exc).__name__}: {exc}")
                if ok:
                    latencies.append((time.perf_counter() - t0) * 1000)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        wall = time.perf_counter() - t0

        bad = {
            "malformed_json": await client.post("/predict", content=b"{oops",
                                                headers={"content-type": "application/json"}),
            "empty_text": await client.post("/predict", json={"text": ""}),
            "too_many_documents": await client.post("/predict", json={"documents": [{"text": "x"}] * 10_000}),
            "oversized_body": await client.post("/predict", content=b"{\"text\": \"" + b"y" * 5_000_000 + b"\"}",
                                                headers={"content-type": "application/json"}),
        }
        health = await client.get("/health")
    sent = len(latencies) + len(errors)
    return {
        "url": base_url,
        "requests_planned": args.requests,
        "requests_sent": sent,
        "concurrency": args.concurrency,
        "docs_per_request": args.docs_per_request,
        "ok": len(latencies),
        "errors": len(errors),
        "error_samples": errors[:5],
        "wall_s": round(wall, 3),
        "requests_per_s": round(len(latencies) / wall, 2) if wall else 0.0,
        "docs_per_s": round(len(latencies) * args.docs_per_request / wall, 2) if wall else 0.0,
        "latency_ms": {"p50": round(percentile(latencies, 50), 2), "p95": round(percentile(latencies, 95), 2),
                       "p99": round(percentile(latencies, 99), 2), "max": round(max(latencies, default=0), 2),
                       "mean": round(statistics.fmean(latencies), 2) if latencies else None},
        "bad_requests": {k: r.status_code for k, r in bad.items()},
        "health_after": {"status_code": health.status_code, **health.json()},
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "load_avg_1m": round(os.getloadavg()[0], 2)},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="model folder to serve (starts `patentcpc serve` on loopback)")
    p.add_argument("--url", help="a running service on loopback, e.g. http://127.0.0.1:8000")
    p.add_argument("--data", help="documents to send (any format patentcpc reads); default synthetic")
    p.add_argument("--requests", type=int, default=500)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--docs-per-request", type=int, default=1)
    p.add_argument("--max-seconds", type=float, default=300.0, help="stop sending after this long")
    p.add_argument("--request-timeout", type=float, default=120.0)
    p.add_argument("--startup-timeout", type=float, default=180.0)
    p.add_argument("--serve-args", default="", help="extra arguments for `patentcpc serve`")
    p.add_argument("--output", help="also write the JSON result here")
    args = p.parse_args()
    if (args.model is None) == (args.url is None):
        p.error("give exactly one of --model and --url")
    if not (1 <= args.requests <= 100_000 and 1 <= args.concurrency <= 1024 and args.max_seconds <= 3600):
        p.error("bounded runs only: 1..100000 requests, 1..1024 clients, at most 3600 s")

    server = None
    if args.url:
        if urlparse(args.url).hostname not in LOOPBACK:
            p.error("--url must be a loopback address (127.0.0.1, localhost, ::1)")
        base_url = args.url.rstrip("/")
    else:
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "patentcpc", "serve", "--model", args.model, "--host", "127.0.0.1",
               "--port", str(port), "--log-level", "warning", *args.serve_args.split()]
        server = subprocess.Popen(cmd)
    try:
        result = asyncio.run(run(args, base_url))
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
    result["model"] = args.model
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
