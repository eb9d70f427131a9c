"""Rescore throughput: the same manifest through `vidjudge rescore` in-process, through gRPC, and on Ray.

    python -m vidjudge.benchmarks.rescore                         # tiny bundle on CPU, a few minutes
    python -m vidjudge.benchmarks.rescore --set scorer.backend=transformers --repeats 3 --out rescore.json
    python -m vidjudge.benchmarks.rescore --bundle bundles/qwen7b --actors 1 --gpus-per-actor 1   # GPU

One run measures every mode on the same videos (distinct content, so dedupe never skips work):

1. bundle: the in-process runner (`vidjudge.server.offline.InProcessScorer`, the server's pipeline
   and batching with no gRPC hop), `--concurrency` videos in flight;
2. server: the gRPC runner against a real `vidjudge serve` subprocess on a loopback port (same
   settings), `--concurrency` calls in flight;
3. ray: a local Ray instance, `--actors` pipeline actors (`RayPipelineActor`), the whole Ray path
   (manifest read as a Ray dataset, hashing tasks, the actor pool).

Each pass is the real rescore path (`Run` + its runner) writing a fresh output directory. Model
loading is outside the timings for bundle and server (loaded once, reused by every repeat); Ray's
actors load theirs in every pass, so its wall time includes that (`first result s` shows it).
Reported per pass: wall videos/s (all videos / pass time) and steady videos/s (the videos done after
the first window in flight, over the time they took). With `--repeats R` the modes alternate R times (order rotated)
and medians are reported, with each mode's ratio to in-process.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vidjudge.benchmarks import common

MODES = ("bundle", "server", "ray")


def make_videos(count: int, width: int, height: int, num_frames: int, fps: float) -> list[Path]:
    """`count` clips with distinct bytes (patterns cycle, seeds differ; any repeat is replaced by noise)."""
    from vidjudge.export.samples import write_video

    out = common.default_home() / "rescore-videos" / f"{width}x{height}_{num_frames}f"
    out.mkdir(parents=True, exist_ok=True)
    paths, seen = [], set()
    for i in range(count):
        pattern = common.SAMPLE_PATTERNS[i % len(common.SAMPLE_PATTERNS)]
        p = out / f"{i:04d}.mp4"
        for attempt in (pattern, "noise"):
            if not p.is_file() or p.stat().st_size == 0:
                tmp = out / f".tmp-{i:04d}.mp4"
                write_video(tmp, codec="libx264", width=width, height=height, num_frames=num_frames, fps=fps,
                            pattern=attempt, seed=i, faststart=True)
                tmp.replace(p)
            digest = hashlib.sha256(p.read_bytes()).hexdigest()
            if digest not in seen:
                break
            p.unlink()
        seen.add(digest)
        paths.append(p)
    return paths


def write_manifest(videos: list[Path], path: Path, prompt: str) -> Path:
    path.write_text("".join(json.dumps({"id": v.stem, "path": str(v), "prompt": prompt,
                                        "generator": f"g{i % 4}"}) + "\n" for i, v in enumerate(videos)))
    return path


class TimedReporter:
    """A Reporter that records when each video is done (no bar)."""

    def __init__(self):
        self.done: list[float] = []
        self.started = time.monotonic()

    def start(self, total: int, description: str = "") -> None:
        pass

    def advance(self, n: int = 1) -> None:
        self.done.extend([time.monotonic()] * n)

    def describe(self, text: str) -> None:
        pass

    def stop(self) -> None:
        pass


def _stats(rep: TimedReporter, t0: float, t1: float, summary, window: int) -> dict:
    """Wall rate, and the steady rate: videos done after the first window of work (the videos in flight
    at once: `concurrency`, or actors x videos per actor call) over the time they took. Ray's results
    arrive a block at a time; measuring from the first full window keeps its start-up out."""
    done = sorted(rep.done)
    n = len(done)
    k = min(window, n - 1)
    steady = (n - k) / (done[-1] - done[k - 1]) if k >= 1 and done[-1] > done[k - 1] else None
    return {"videos": summary.scored, "ok_rows": summary.rows_ok, "failed_rows": sum(summary.rows_failed.values()),
            "left": summary.left_for_next_run, "wall_s": t1 - t0,
            "videos_per_s": summary.scored / (t1 - t0) if t1 > t0 else None, "steady_videos_per_s": steady,
            "first_result_s": (done[0] - t0) if done else None}


def _run(manifest: Path, out: Path, mode: str, concurrency: int):
    from vidjudge.client.rescore.run import Run, RunOptions

    rep = TimedReporter()
    run = Run(RunOptions(manifest=str(manifest), out=out, concurrency=concurrency, part_rows=1000,
                         part_seconds=60.0), mode, rep)
    run.open()
    return run, rep


async def pass_local(manifest: Path, out: Path, scorer, concurrency: int) -> tuple[dict, Path]:
    from vidjudge.client.rescore.manifest import read_manifest
    from vidjudge.client.rescore.run import drive

    t0 = time.monotonic()
    run, rep = _run(manifest, out, scorer.mode, concurrency)
    items = run.plan(read_manifest(str(manifest)), scorer.info)
    await drive(run, items, scorer, asyncio.Event(), concurrency)
    summary = run.close()
    return _stats(rep, t0, time.monotonic(), summary, concurrency), out


def pass_ray(manifest: Path, out: Path, opts) -> tuple[dict, Path]:
    import threading

    from vidjudge.client.rescore.ray_runner import read_manifest_ray, score_on_ray
    from vidjudge.server.offline import bundle_judge_info

    t0 = time.monotonic()
    run, rep = _run(manifest, out, "ray", opts.batch_size)
    items = run.plan(read_manifest_ray(str(manifest), None, ("question",)), bundle_judge_info(opts.bundle))
    score_on_ray(run, items, opts, threading.Event())
    summary = run.close()
    window = opts.actors * max(1, min(opts.batch_size, -(-len(items) // opts.actors)))  # as score_on_ray blocks
    return _stats(rep, t0, time.monotonic(), summary, window), out


def start_server(bundle: Path, sets: list[str]) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "vidjudge.cli", "serve", str(bundle), "--port", "0"]
    for s in sets:
        cmd += ["--set", s]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if "serving on" in line:
            return proc, line.strip().rsplit(" ", 1)[-1]
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit("the server did not start (run `vidjudge serve` by hand to see why)")


def scores_of(out: Path) -> dict:
    import pyarrow.dataset as pads

    t = pads.dataset(str(out), format="parquet").to_table(columns=["id", "dimension", "score"])
    return {(i, d): s for i, d, s in zip(*(t.column(c).to_pylist() for c in ("id", "dimension", "score")))}


def max_diff(a: dict, b: dict) -> float | None:
    diffs = [abs(a[k] - b[k]) for k in a if k in b and a[k] is not None and b[k] is not None]
    return max(diffs) if diffs else None


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m vidjudge.benchmarks.rescore",
                                 description="Rescore videos/s: in-process vs gRPC vs Ray, same videos, one run.",
                                 epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", help="Bundle directory (default: the tiny random bundle, built on first use).")
    ap.add_argument("--count", type=int, default=128, help="Distinct videos in the manifest (default 128).")
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--frames", type=int, default=48, help="Frames per generated clip (24 fps).")
    ap.add_argument("--concurrency", type=int, default=16, help="Videos in flight, bundle and server (default 16).")
    ap.add_argument("--actors", type=int, default=2, help="Ray actors (default 2).")
    ap.add_argument("--cpus-per-actor", type=float, default=None,
                    help="CPUs each Ray actor reserves (default: the machine's CPUs / actors).")
    ap.add_argument("--gpus-per-actor", type=float, default=0.0)
    ap.add_argument("--ray-batch-size", type=int, default=16, help="Videos per actor call (default 16).")
    ap.add_argument("--modes", default=",".join(MODES), help="Which of bundle,server,ray to run.")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                    help="Pipeline setting for every mode (the server and the Ray actors too); repeatable.")
    ap.add_argument("--repeats", type=int, default=3, help="Alternate the modes this many times (default 3).")
    ap.add_argument("--prompt", default=common.DEFAULT_PROMPT, help="Generation prompt ('' for none).")
    ap.add_argument("--out", metavar="FILE", help="Write the results as JSON.")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    common.quiet_libraries()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = set(modes) - set(MODES)
    if bad:
        raise SystemExit(f"unknown mode(s) {', '.join(sorted(bad))}; choose from {', '.join(MODES)}")
    bundle = common.resolve_bundle(args.bundle).resolve()
    progress = common.Progress()
    progress.update("writing sample videos", force=True)
    videos = make_videos(args.count, args.width, args.height, args.frames, 24)
    env = common.environment()
    common.note(f"rescore on {bundle}, {len(videos)} distinct videos; {common.describe_environment(env)}")
    work = Path(tempfile.mkdtemp(prefix="vidjudge-bench-rescore-"))
    manifest = write_manifest(videos, work / "manifest.jsonl", args.prompt)

    from vidjudge.server.offline import InProcessScorer, flat_config, rescore_config

    cfg = rescore_config(bundle, args.overrides, env={}, concurrency=max(args.concurrency, args.ray_batch_size))
    loads: dict[str, float] = {}
    scorer = server = proc = None
    loop = asyncio.new_event_loop()
    try:
        if "bundle" in modes:
            t = time.monotonic()
            scorer = InProcessScorer(cfg)
            loads["bundle"] = time.monotonic() - t
        if "server" in modes:
            from vidjudge.client.rescore.grpc_runner import GrpcScorer

            t = time.monotonic()
            proc, address = start_server(bundle, args.overrides)
            server = GrpcScorer([address])
            loop.run_until_complete(server.start())
            loads["server"] = time.monotonic() - t
        ray_opts = None
        if "ray" in modes:
            from vidjudge.client.rescore.ray_runner import RayOptions, init_ray

            cpus = args.cpus_per_actor or max(1.0, (os.cpu_count() or 2) / args.actors)
            ray_opts = RayOptions(bundle=str(bundle), overrides=flat_config(cfg), actors=args.actors,
                                  cpus_per_actor=cpus, gpus_per_actor=args.gpus_per_actor,
                                  batch_size=args.ray_batch_size, local_cpus=os.cpu_count(), object_store_mb=256)
            t = time.monotonic()
            init_ray(ray_opts)
            loads["ray_init"] = time.monotonic() - t
        runs, outs = [], {}
        for r in range(max(1, args.repeats)):
            order = modes[r % len(modes):] + modes[:r % len(modes)]
            for mode in order:
                progress.update(f"repeat {r + 1}/{args.repeats}: {mode}", force=True)
                out = work / f"{mode}-{r}"
                if mode == "bundle":
                    res, out = loop.run_until_complete(pass_local(manifest, out, scorer, args.concurrency))
                elif mode == "server":
                    res, out = loop.run_until_complete(pass_local(manifest, out, server, args.concurrency))
                else:
                    res, out = pass_ray(manifest, out, ray_opts)
                runs.append({"repeat": r + 1, "mode": mode, **res})
                outs.setdefault(mode, out)
        progress.done()
    finally:
        if scorer is not None:
            scorer.close()
        if server is not None:
            loop.run_until_complete(server.aclose())
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=60)
        if "ray" in modes:
            import ray

            ray.shutdown()
        loop.close()

    ref = scores_of(outs[modes[0]])
    diffs = {m: max_diff(ref, scores_of(o)) for m, o in outs.items() if m != modes[0]}
    shutil.rmtree(work, ignore_errors=True)
    med = {}
    for m in modes:
        rs = [x for x in runs if x["mode"] == m]
        med[m] = {k: statistics.median([x[k] for x in rs if x[k] is not None] or [float("nan")])
                  for k in ("videos_per_s", "steady_videos_per_s", "wall_s", "first_result_s")}
    base = modes[0]
    for m in modes:
        med[m]["ratio_steady"] = common.ratio(med[m]["steady_videos_per_s"], med[base]["steady_videos_per_s"])
        med[m]["ratio_wall"] = common.ratio(med[m]["videos_per_s"], med[base]["videos_per_s"])
    print(common.table(runs, [("repeat", "run"), ("mode", "mode"), ("videos", "videos"), ("wall_s", "wall s"),
                              ("videos_per_s", "videos/s"), ("steady_videos_per_s", "steady videos/s"),
                              ("first_result_s", "first result s"), ("failed_rows", "failed rows")],
                       "rescore passes (same manifest, fresh output each)"))
    print()
    print(common.table([{"mode": m, **med[m]} for m in modes],
                       [("mode", "mode"), ("videos_per_s", "videos/s"), ("steady_videos_per_s", "steady videos/s"),
                        ("ratio_wall", f"/ {base} (wall)"), ("ratio_steady", f"/ {base} (steady)"),
                        ("first_result_s", "first result s")], f"medians of {args.repeats} repeats"))
    print("\nmodel load (outside the timings): " + ", ".join(f"{k} {v:.1f}s" for k, v in loads.items())
          + f"; max |score diff| vs {base}: " + ", ".join(f"{m} {common.fmt_num(d)}" for m, d in diffs.items()))
    print(f"settings: {args.overrides or 'defaults'}; concurrency {args.concurrency}; Ray {args.actors} actors; "
          f"{common.describe_environment(env)}")
    config = {"bundle": str(bundle), "videos": len(videos), "size": [args.width, args.height, args.frames],
              "prompt": args.prompt, "concurrency": args.concurrency, "actors": args.actors,
              "cpus_per_actor": ray_opts.cpus_per_actor if ray_opts else None, "ray_batch_size": args.ray_batch_size,
              "overrides": args.overrides, "repeats": args.repeats, "modes": modes}
    common.write_json(args.out, common.report("rescore", config, {"runs": runs, "medians": med, "load_s": loads,
                                                                  "max_score_diff": diffs}, env))
    return 0


if __name__ == "__main__":
    sys.exit(main())
