"""Trigger load: 1,000 custom events dispatched together, each run recording telemetry.

Run: ``.venv/bin/python bench/triggers.py [--runs N]``. Prints, in one run: how long until
every run finished and every record was stored, dispatch-to-finish latency percentiles per run,
the same pipeline called directly (the baseline) with its percentiles, the ratio, and peak
memory (max RSS growth and the tracemalloc peak of the dispatch phase). No thresholds.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from typing import Any

import anyio

from brickrun import Runtime, VirtualClock
from brickrun._definitions import compile_text
from brickrun._pipeline import run_pipeline

MOD = """
apiVersion: v3
kind: recipe
metadata: {id: "@bench/load", name: Load}
definitions:
  go:
    kind: extensionPoint
    definition: {type: trigger, trigger: custom, customEvent: {eventName: go}, reportMode: all}
extensionPoints:
  - id: go
    label: Record
    config:
      action:
        - id: "@pixies/telemetry/record"
          config:
            databaseId: bench-load
            eventName: go
            data: {n: !var "@input.event.n"}
"""


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def bench(runs: int) -> dict[str, Any]:
    from datetime import UTC, datetime

    with tempfile.TemporaryDirectory() as folder:
        mod_path = os.path.join(folder, "mod.yaml")
        with open(mod_path, "w") as f:
            f.write(MOD)
        async with Runtime(
            database_url=f"sqlite:///{folder}/load.sqlite",
            clock=VirtualClock(datetime(2026, 11, 23, tzinfo=UTC)),
            entry_points=False,
        ) as runtime:
            await runtime.activate(mod_path)
            runtime.sign_in("ada@example.com")
            runtime.visit("https://example.com/")
            storage = await runtime.storage()

            finished: dict[str, float] = {}
            runtime.run_listeners.append(
                lambda r: finished.__setitem__(r.run_id, time.perf_counter())
            )
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            start = time.perf_counter()
            dispatched = []
            for n in range(runs):
                dispatched.append((time.perf_counter(), runtime.dispatch_custom("go", {"n": n})))
            await runtime.settle()
            elapsed = time.perf_counter() - start
            rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            statuses = [run.status for _, started in dispatched for run in started]
            assert statuses.count("success") == runs, statuses
            assert await storage.count("bench-load") == runs
            latencies = [finished[run.run_id] - t0 for t0, started in dispatched for run in started]

            # Baseline: the same action pipeline, called directly, one after another.
            [mod] = compile_text(MOD.replace("@bench/load", "@bench/direct"), "d.yaml").definitions
            action = mod.components[0].action  # type: ignore[attr-defined]
            direct = []
            run = runtime.new_run()
            for n in range(runs):
                t0 = time.perf_counter()
                ctx = {"@input": {"event": {"n": n}}, "@options": {}}
                await run_pipeline(action, ctx, run)
                direct.append(time.perf_counter() - t0)
            await runtime.drain()
    return {
        "elapsed": elapsed,
        "latencies": latencies,
        "direct": direct,
        "rss_kib": rss_after - rss_before,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()
    r = anyio.run(bench, args.runs)
    lat, direct = r["latencies"], r["direct"]
    print(f"{args.runs} custom events dispatched together, each recording telemetry")
    print(f"  all runs finished and records stored in {r['elapsed'] * 1000:9.1f} ms")
    print(
        f"  dispatch-to-finish latency  p50 {pct(lat, 0.5):8.2f} ms  p95 {pct(lat, 0.95):8.2f} ms"
        f"  p99 {pct(lat, 0.99):8.2f} ms"
    )
    print(
        f"  direct call (baseline)      p50 {pct(direct, 0.5):8.3f} ms  p95 "
        f"{pct(direct, 0.95):8.3f} ms  p99 {pct(direct, 0.99):8.3f} ms"
    )
    ratio = statistics.median(lat) / statistics.median(direct)
    print(f"  ratio p50 dispatched / direct  {ratio:8.1f}x")
    print(f"  peak memory: max RSS grew {r['rss_kib'] / 1024:.1f} MiB during the dispatch phase")


if __name__ == "__main__":
    main()
