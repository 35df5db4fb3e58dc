"""Pipeline overhead: cost per step through the reducer vs calling the brick functions directly.

Run: ``.venv/bin/python bench/pipeline.py``. Prints absolute figures and ratios against a
hand-written baseline measured in the same run (no thresholds asserted; see README).

1. A 10-step pipeline of trivial transformer bricks, each with a small input schema and two
   ``!var`` arguments, run through the reducer; baseline: the same brick coroutines awaited
   directly with hand-built dicts.
2. Rendering a typical config (``!var`` + ``!nunjucks``) through the compiled renderer;
   baseline: the same dict built by hand with an f-string.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from brickrun import BrickContext, Runtime, brick
from brickrun._definitions import compile_text

STEPS = 10
RUNS = 2000


@brick(
    id="@bench/add",
    name="Add",
    input_schema={
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
    },
)
async def add(args: dict[str, Any], ctx: BrickContext) -> dict[str, int]:
    return {"sum": args["a"] + args["b"]}


def pipeline_yaml() -> str:
    steps = []
    for i in range(STEPS):
        steps.append(
            f'  - id: "@bench/add"\n'
            f"    outputKey: s{i}\n"
            f"    config:\n"
            f'      a: !var "@input.x"\n'
            f'      b: !var "@input.y"\n'
        )
    steps.append('  - id: "@pixiebrix/identity"\n    config: !var "@s9"\n')
    return (
        'apiVersion: v3\nkind: component\nmetadata:\n  id: "@bench/ten"\n  name: Ten\n'
        "inputSchema:\n  type: object\n  properties:\n    x: {type: integer}\n"
        "    y: {type: integer}\npipeline:\n" + "".join(steps)
    )


async def timed(fn: Callable[[], Awaitable[Any]], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - start)
    return samples


async def bench_pipeline() -> tuple[float, float]:
    async with Runtime(entry_points=False) as runtime:
        runtime.register(add)
        result = compile_text(pipeline_yaml(), "bench.yaml")
        assert not result.errors, result.errors
        for definition in result.definitions:
            runtime.registry.register_definition(definition)
        ten = runtime.registry.get("@bench/ten")

        run = runtime.new_run()
        ctx = BrickContext(run, "@bench/add", "")

        async def through_reducer() -> Any:
            return await runtime.run_brick(ten, {"x": 1, "y": 2})

        async def direct() -> Any:
            inp = {"x": 1, "y": 2}
            out: Any = None
            for _ in range(STEPS):
                out = await add.run({"a": inp["x"], "b": inp["y"]}, ctx)
            return out

        assert (await through_reducer()).output == await direct()
        await timed(through_reducer, 200)  # warm caches
        reducer = statistics.median(await timed(through_reducer, RUNS))
        baseline = statistics.median(await timed(direct, RUNS))
    # The reducer runs 11 steps (10 adds + the final identity); count the identity as a step.
    return reducer / (STEPS + 1), baseline / STEPS


def bench_render() -> tuple[float, float]:
    result = compile_text(
        'apiVersion: v3\nkind: component\nmetadata: {id: "@bench/r", name: R}\n'
        'inputSchema: {}\npipeline:\n  - id: "@pixiebrix/identity"\n    config:\n'
        '      url: !var "@context.url"\n      email: !var "@session.email"\n'
        '      key: !nunjucks "{{ @session.email }}-{{ @instant.timestamp }}"\n'
        '      event: !var "@input.eventName"\n      static: {kind: telemetry}\n',
        "render.yaml",
    )
    assert not result.errors, result.errors
    render = result.definitions[0].pipeline.steps[0].render  # type: ignore[attr-defined]
    context = {
        "@input": {"eventName": "translate"},
        "@context": {"url": "https://example.com/x"},
        "@session": {"email": "ada@example.com"},
        "@instant": {"timestamp": "2026-11-23T15:00:00.000Z"},
    }

    def by_hand(ctx: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": ctx["@context"]["url"],
            "email": ctx["@session"]["email"],
            "key": f"{ctx['@session']['email']}-{ctx['@instant']['timestamp']}",
            "event": ctx["@input"]["eventName"],
            "static": {"kind": "telemetry"},
        }

    assert render(context) == by_hand(context)
    n = 20000

    def per_call(fn: Callable[[dict[str, Any]], Any]) -> float:
        samples = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(n):
                fn(context)
            samples.append((time.perf_counter() - start) / n)
        return min(samples)

    return per_call(render), per_call(by_hand)


def main() -> None:
    step, direct = anyio.run(bench_pipeline)
    print(f"pipeline, {STEPS}-step + identity, median of {RUNS} runs")
    print(f"  per step through the reducer : {step * 1e6:8.2f} µs")
    print(f"  per call, brick called direct: {direct * 1e6:8.2f} µs")
    print(f"  ratio reducer / direct       : {step / direct:8.1f}x")
    rendered, by_hand = bench_render()
    print("render a typical config (4 !var, 1 !nunjucks, 1 static object)")
    print(f"  compiled renderer            : {rendered * 1e6:8.2f} µs")
    print(f"  hand-written dict + f-string : {by_hand * 1e6:8.2f} µs")
    print(f"  ratio renderer / by hand     : {rendered / by_hand:8.1f}x")


if __name__ == "__main__":
    main()
