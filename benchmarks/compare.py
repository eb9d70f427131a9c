"""The headline number: the server's videos/s over the naive reference loop's, same bundle, same videos, same run.

    python -m vidjudge.benchmarks.compare                    # tiny bundle on CPU, ~1-2 minutes
    python -m vidjudge.benchmarks.compare --concurrency 32 --set decode.workers=8 --out compare.json
    python -m vidjudge.benchmarks.compare --bundle bundles/qwen7b --naive-device cuda --videos clips/

1. naive: `vidjudge.benchmarks.naive` (one video at a time, in-process PyAV decode, the
   untouched HF model's full forward per dimension with its own vision tower, full-vocabulary
   log-softmax) for ``--naive-interval`` seconds -> videos/s;
2. server: a real vidjudge server started in this process (ServerThread, real gRPC on a
   loopback port), loaded by `vidjudge.benchmarks.loadgen` at ``--concurrency`` (16) for
   ``--measurement-interval`` seconds -> videos/s, latency percentiles, error counts;
3. prints ``server / naive``. Both paths score the same dimensions of the same videos; before
   the load, each distinct video is scored once through the server and compared with the naive
   scores (``max_score_diff``), so the two sides are known to compute the same thing.

The server runs with its defaults unless ``--set`` overrides are given; the effective
settings are printed and written to the JSON. With ``--repeats R`` the two measurements
alternate R times and the median ratio is reported (the machine may be shared and noisy).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from vidjudge.benchmarks import common, loadgen, naive


def score_once(target: str, videos: Sequence[Path], prompt: str, dims: Sequence[str]) -> dict[str, dict[str, float]]:
    from vidjudge.client import JudgeClient

    out = {}
    with JudgeClient(target, timeout=120) as c:
        for v in videos:
            r = c.score(v, prompt=prompt, dimensions=dims)
            out[str(v)] = {k: s.score for k, s in r.scores.items()}
    return out


def max_diff(a: dict[str, dict[str, float]], b: dict[str, dict[str, float]]) -> float | None:
    diffs = [abs(a[v][d] - b[v][d]) for v in a if v in b for d in a[v] if d in b[v]]
    return max(diffs) if diffs else None


def run_compare(bundle: Path, videos: Sequence[Path], *, prompt: str, dimensions: Sequence[str] = (),
                concurrency: int = 16, interval_s: float = 20.0, naive_interval_s: float = 20.0,
                warmup: int = 16, overrides: dict | None = None, repeats: int = 1, requests: int | None = None,
                naive_requests: int | None = None, naive_device: str = "cpu", naive_threads: int = 0,
                naive_dtype: str = "float32",
                timeout_s: float = 60.0,
                progress: common.Progress | None = None) -> dict:
    progress = progress or common.Progress()
    plan = loadgen.LoadPlan(measurement_interval_s=interval_s, requests=requests, warmup=warmup,
                            timeout_s=timeout_s)
    if not dimensions:
        # The reference loop reads level words: both sides score the level-token dimensions.
        from vidjudge.server.bundle import load_bundle

        dimensions = [d.name for d in load_bundle(bundle).dimensions.values()
                      if d.head == "level_token" and (prompt or not d.requires_prompt)]
    reqs = loadgen.build_requests(videos, prompt=prompt, dimensions=dimensions)
    runs = []
    server_config = None
    import torch

    torch_threads = torch.get_num_threads()  # the server's scorer.threads setting is process-wide
    for rep in range(repeats):
        torch.set_num_threads(torch_threads)
        common.note(f"[{rep + 1}/{repeats}] naive reference loop ...")
        nv = naive.run_naive(bundle, videos, prompt=prompt, dimensions=dimensions, seconds=naive_interval_s,
                             max_videos=naive_requests, device=naive_device, dtype=naive_dtype, threads=naive_threads,
                             progress=progress)
        gc.collect()
        torch.set_num_threads(torch_threads)  # the naive loop's --naive-threads must not leak into the server
        common.note(f"[{rep + 1}/{repeats}] naive: {nv['videos_per_s']:.3f} videos/s; starting the server ...")
        t = time.perf_counter()
        with loadgen.started_server(bundle, overrides) as (target, srv, server_config):
            loadgen.wait_ready(target)
            start_s = time.perf_counter() - t
            server_config["backends_in_use"] = loadgen.server_backends(srv)
            served = score_once(target, videos, prompt, dimensions)
            common.note(f"[{rep + 1}/{repeats}] server up in {start_s:.1f}s; load at concurrency {concurrency} ...")
            (row,) = loadgen.run_levels(
                target, reqs, concurrencies=[concurrency], plan=plan,
                stats=loadgen.registry_snapshot(srv.server.pipeline.metrics.registry),
                decode_workers=server_config["decode"]["workers"], progress=progress)
        gc.collect()
        decode = row.get("server", {}).get("decode", {})
        runs.append({"naive": nv, "server": row, "server_start_s": start_s,
                     "ratio": common.ratio(row["videos_per_s"], nv["videos_per_s"]),
                     "decode_ceiling_videos_per_s": decode.get("ceiling_videos_per_s"),
                     "of_decode_ceiling": decode.get("of_ceiling"),
                     "shared_joins": row.get("server", {}).get("shared_joins"),
                     "max_score_diff": max_diff(nv["scores"], served)})
    ratios = [r["ratio"] for r in runs if r["ratio"] is not None]
    return {"runs": runs, "ratio_median": statistics.median(ratios) if ratios else None,
            "naive_videos_per_s_median": statistics.median(r["naive"]["videos_per_s"] for r in runs),
            "server_videos_per_s_median": statistics.median(r["server"]["videos_per_s"] for r in runs),
            "concurrency": concurrency, "server_config": server_config}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m vidjudge.benchmarks.compare",
        description=__doc__.split("\n\n", 1)[0],
        epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", help="Bundle directory (default: the tiny random bundle, built on first use).")
    ap.add_argument("--concurrency", type=int, default=16, help="Server load: outstanding requests (default 16).")
    ap.add_argument("--measurement-interval", type=float, default=20.0, metavar="SECONDS",
                    help="Server measurement window (default 20).")
    ap.add_argument("--requests", type=int, metavar="N",
                    help="Server: close the window after N completions instead (count mode).")
    ap.add_argument("--warmup", type=int, default=16, metavar="N",
                    help="Server: completions before the window opens, excluded (default 16).")
    ap.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS", help="Per-request deadline.")
    ap.add_argument("--naive-interval", type=float, default=20.0, metavar="SECONDS",
                    help="Naive loop: score videos for this long (default 20).")
    ap.add_argument("--naive-requests", type=int, metavar="N", help="Naive loop: score exactly N videos instead.")
    ap.add_argument("--naive-device", default="cpu", help="torch device of the naive loop (cpu, cuda).")
    ap.add_argument("--naive-dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                    help="dtype of the naive loop's model (bfloat16 on a GPU, as the reference code runs).")
    ap.add_argument("--naive-threads", type=int, default=0,
                    help="torch intra-op threads of the naive loop (default 0: torch's default, as reference "
                         "code runs).")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                    help="Server config override (repeatable), e.g. --set decode.workers=4 "
                         "--set scorer.max_batch=32 --set encoder.max_wait_ms=10. Default: none.")
    ap.add_argument("--repeats", type=int, default=1, help="Alternate naive and server this many times "
                                                           "(median ratio reported; default 1).")
    ap.add_argument("--prompt", default=common.DEFAULT_PROMPT, help="Generation prompt ('' for none).")
    ap.add_argument("--dimensions", default="", metavar="A,B",
                    help="Comma-separated level-token dimensions (default: every level-token dimension the "
                         "request can be scored on; the naive loop reads level words only).")
    loadgen.add_video_args(ap)
    ap.add_argument("--out", metavar="FILE", help="Write the results as JSON.")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    common.quiet_libraries()
    try:
        overrides = common.parse_overrides(args.overrides)
    except ValueError as e:
        raise SystemExit(str(e))
    bundle = common.resolve_bundle(args.bundle)
    videos = loadgen.videos_from_args(args)
    dims = [d.strip() for d in args.dimensions.split(",") if d.strip()]
    env = common.environment()
    common.note(f"compare on {bundle}, {len(videos)} videos; {common.describe_environment(env)}")
    t0 = time.perf_counter()
    res = run_compare(bundle, videos, prompt=args.prompt, dimensions=dims, concurrency=args.concurrency,
                      interval_s=args.measurement_interval, naive_interval_s=args.naive_interval, warmup=args.warmup,
                      overrides=overrides, repeats=max(1, args.repeats), requests=args.requests,
                      naive_requests=args.naive_requests, naive_device=args.naive_device,
                      naive_dtype=args.naive_dtype,
                      naive_threads=args.naive_threads, timeout_s=args.timeout)
    rows = []
    for i, r in enumerate(res["runs"]):
        nv, sv = r["naive"], r["server"]
        rows.append({"run": i + 1, "path": "naive", "videos_per_s": nv["videos_per_s"], "n": nv["videos"],
                     "p50": nv["mean_ms"]["total"], "errors": 0})
        rows.append({"run": i + 1, "path": f"server c={args.concurrency}", "videos_per_s": sv["videos_per_s"],
                     "n": sv["ok"], "p50": sv["latency_ms"].get("p50"), "p99": sv["latency_ms"].get("p99"),
                     "errors": sv["resource_exhausted"] + sv["deadline_exceeded"] + sv["other_errors"],
                     "ratio": r["ratio"], "diff": r["max_score_diff"]})
    print(common.table(rows, [("run", "run"), ("path", "path"), ("videos_per_s", "videos/s"), ("n", "videos"),
                              ("p50", "p50 ms"), ("p99", "p99 ms"), ("errors", "errors"),
                              ("ratio", "server/naive"), ("diff", "max |score diff|")],
                       "naive reference loop vs vidjudge server (naive latency = mean per video)"))
    print()
    print(loadgen.level_table([r["server"] for r in res["runs"]], (50, 95, 99), "server level details"))
    print()
    print(loadgen.timings_table([r["server"] for r in res["runs"]]))
    cfg = res["server_config"] or {}
    shown = {k: cfg.get(k) for k in ("backends_in_use", "decode", "encoder", "scorer", "admission")}
    print(f"\nserver settings: overrides {overrides or 'none (defaults)'}; effective: {shown}")
    print(f"\nserver / naive = {common.fmt_num(res['ratio_median'])}x "
          f"({common.fmt_num(res['server_videos_per_s_median'])} vs "
          f"{common.fmt_num(res['naive_videos_per_s_median'])} videos/s, concurrency {args.concurrency}"
          f"{', median of %d runs' % len(res['runs']) if len(res['runs']) > 1 else ''}); "
          f"{common.describe_environment(env)}; total {time.perf_counter() - t0:.0f}s")
    for i, r in enumerate(res["runs"]):
        if r.get("decode_ceiling_videos_per_s"):
            print(f"run {i + 1}: server at {common.fmt_num(100 * r['of_decode_ceiling'])}% of its decode-bound "
                  f"ceiling ({common.fmt_num(r['decode_ceiling_videos_per_s'])} videos/s = decode workers / mean "
                  f"decode time); {r.get('shared_joins') or 0} requests joined another's decode of the same video")
    config = {"bundle": str(bundle), "videos": [str(v) for v in videos], "prompt": args.prompt, "dimensions": dims,
              "concurrency": args.concurrency, "measurement_interval_s": args.measurement_interval,
              "naive_interval_s": args.naive_interval, "warmup": args.warmup, "overrides": overrides,
              "repeats": args.repeats, "naive_device": args.naive_device, "naive_dtype": args.naive_dtype,
              "naive_threads": args.naive_threads}
    common.write_json(args.out, common.report("compare", config, res, env))
    return 0


if __name__ == "__main__":
    sys.exit(main())
