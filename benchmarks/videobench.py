"""Video-Bench on vidjudge: videos/s per mode, and LLM calls per video in the faithful mode, against a
one-call-at-a-time loop of the same chains measured in the same run.

    python -m vidjudge.benchmarks.videobench                      # tiny Video-Bench bundle, CPU
    python -m vidjudge.benchmarks.videobench --bundle bundles/vb7b --groups 8 --generators 4 --out vb.json

A group is one prompt's videos, one per generator (`--generators`), sent with ScoreGroup on all nine
dimensions, as `vidjudge suite` does. Three runs on one server start each:

1. faithful: the nine Video-Bench dimensions (alignment chains, static quality with references, dynamic
   quality over the group), `--concurrency` groups in flight: chains of many videos advance together
   and the LLM backend batches their calls;
2. fast: the nine `.fast` dimensions (one level-token forward each);
3. one call at a time: the faithful dimensions again, one group and one dimension at a time, on a server
   whose LLM runs one call per batch (`scorer.max_batch=1`): Video-Bench's own loop, GPT-4o aside.

LLM calls are counted by the server (`vidjudge_batch_size_sum{stage="llm"}`, transformers backend).
The tiny model's text is random, so most faithful answers end as `unparsable_output` after a retry:
the calls and their cost are real, the scores are not.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from vidjudge.benchmarks import common

DIMENSIONS = ("color", "object_class", "scene", "action", "overall_consistency", "aesthetic_quality",
              "imaging_quality", "temporal_consistency", "motion_effects")
PROMPT = "a red ball rolls across a wooden table"


def _videos(home: Path, count: int) -> list[Path]:
    from vidjudge.export.samples import write_video

    out = home / "videobench-videos"
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        p = out / f"clip{i}_160x120_24f.mp4"
        if not p.exists():
            write_video(p, width=160, height=120, num_frames=16 + 4 * (i % 3), fps=8, pattern="scene", seed=i)
        paths.append(p)
    return paths


def _llm_calls(server) -> float:
    reg = server.server.pipeline.metrics.registry
    return reg.get_sample_value("vidjudge_batch_size_sum", {"stage": "llm"}) or 0.0


async def _run(address: str, groups: list[list[Path]], dims: list[str], concurrency: int,
               one_dim_at_a_time: bool = False) -> tuple[float, int]:
    from vidjudge.client import AsyncJudgeClient

    slots = asyncio.Semaphore(concurrency)
    errors = 0

    async def one(client, g: list[Path], names: list[str]) -> None:
        nonlocal errors
        async with slots:
            items = await client.score_group([(f"g{k}", f"gen{k}", p) for k, p in enumerate(g)], prompt=PROMPT,
                                             dimensions=names)
        errors += sum(not it.ok for it in items)

    t0 = time.perf_counter()
    async with AsyncJudgeClient(address, timeout=3600) as client:
        if one_dim_at_a_time:
            for g in groups:
                for d in dims:
                    await one(client, g, [d])
        else:
            await asyncio.gather(*(one(client, g, dims) for g in groups))
    return time.perf_counter() - t0, errors


def run(bundle: Path, *, groups: int, generators: int, concurrency: int, overrides: dict) -> dict:
    from vidjudge.server.app import ServerThread
    from vidjudge.server.config import load_config

    videos = _videos(common.default_home(), groups * generators)
    batches = [videos[i * generators:(i + 1) * generators] for i in range(groups)]
    n_videos = groups * generators
    fast = [f"{d}.fast" for d in DIMENSIONS]
    results = {}
    base = {"server.port": 0, "server.bundles": [str(bundle)], "scorer.backend": "transformers", **overrides}
    for name, dims, sets, one in (("faithful", list(DIMENSIONS), {}, False), ("fast", fast, {}, False),
                                  ("one call at a time", list(DIMENSIONS), {"scorer.max_batch": 1}, True)):
        common.note(f"{name}: {groups} groups of {generators} videos ...")
        with ServerThread(load_config(env={}, overrides={**base, **sets})) as s:
            asyncio.run(_run(s.address, batches[:1], dims[:1], 1))  # warm-up (first forward, caches)
            calls0 = _llm_calls(s)
            elapsed, errors = asyncio.run(_run(s.address, batches, dims, 1 if one else concurrency, one))
            calls = _llm_calls(s) - calls0
        results[name] = {"seconds": elapsed, "videos_per_s": n_videos / elapsed, "llm_calls": calls,
                         "llm_calls_per_video": calls / n_videos, "failed_videos": errors}
    base_rate = results["one call at a time"]["videos_per_s"]
    for r in results.values():
        r["vs_one_call_at_a_time"] = common.ratio(r["videos_per_s"], base_rate)
    return {"groups": groups, "generators": generators, "concurrency": concurrency, "modes": results}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vidjudge.benchmarks.videobench",
                                 description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", help="A Video-Bench bundle (default: the tiny one, built on first use).")
    ap.add_argument("--groups", type=int, default=4, help="Prompt groups (default 4).")
    ap.add_argument("--generators", type=int, default=3, help="Videos per group (default 3).")
    ap.add_argument("--concurrency", type=int, default=4, help="Groups in flight (default 4).")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                    help="Server setting (repeatable).")
    ap.add_argument("--out", metavar="FILE", help="Write the results as JSON.")
    args = ap.parse_args(argv)
    common.quiet_libraries()
    env = common.environment()
    if args.bundle:
        bundle = Path(args.bundle)
    else:
        from vidjudge.export.videobench import export_videobench_tiny
        from vidjudge.server.bundle import BundleError, load_bundle

        bundle = common.default_home() / "bundles" / "videobench-tiny"
        try:
            load_bundle(bundle)
        except BundleError:
            export_videobench_tiny(bundle, overwrite=True)
    common.note(f"videobench on {bundle}; {common.describe_environment(env)}")
    res = run(bundle, groups=args.groups, generators=args.generators, concurrency=args.concurrency,
              overrides=common.parse_overrides(args.overrides))
    rows = [{"mode": k, **v} for k, v in res["modes"].items()]
    print(common.table(rows, [("mode", "mode"), ("videos_per_s", "videos/s"), ("llm_calls_per_video", "LLM calls/video"),
                              ("seconds", "seconds"), ("vs_one_call_at_a_time", "vs one call at a time")],
                       f"Video-Bench, {res['groups']} groups x {res['generators']} videos, 9 dimensions"))
    common.write_json(args.out, common.report("videobench", vars(args), res, env))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
