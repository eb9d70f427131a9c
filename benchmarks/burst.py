"""Burst: how fast a full server says no, and that it loses nothing.

    python -m vidjudge.benchmarks.burst                       # 640 calls at a limit of 64, 3 repeats
    python -m vidjudge.benchmarks.burst --limit 16 --calls 160 --repeats 5 --out burst.json

Each run starts a real server in its own process (the tiny bundle unless --bundle; the
transformers scorer unless --set says otherwise), scores one video to warm it up, then a
separate client process fires every call at once: ``--calls`` Score calls (default 10x the
admission limit ``--limit``), each carrying an inline video of 100-300 KB, split over
``--clients`` processes (``--channels`` connections each) that start together. Every call is
timed as its client sees it, from just before it is issued to its status (recorded in gRPC's
completion callback). The server then has to come back to 0 requests in flight.

Two servers take turns, run for run: ``edge``, the server as built (admission reserved at
the gRPC edge, server/edge_admission.py), and ``baseline``, the same server with that
interceptor passed through (admission in the pipeline after the request was received and
parsed: the server before it). A third, ``floor``
(``--modes baseline,edge,floor``), is no vidjudge at all: a bare grpc.aio server whose Score
handler refuses every call at once without reading it, i.e. what refusing costs gRPC itself
with the same clients on the same cores and the edge's transport options (the HTTP/2 window an
unread call gets, ``server.unread_window_kb``), the least any gRPC-Python server can do. Printed:
per run the answers by code, refusal and OK latency percentiles, calls left unanswered; then
the medians per server, baseline / edge and edge / floor.
Goal: edge refusal p99 <= 250 ms, every call answered OK or RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vidjudge.benchmarks import common

MODES = ("baseline", "edge")
FLOOR = "floor"
SIZE_RANGE = (100_000, 300_000)


# --------------------------------------------------------------------------- inputs


def burst_videos(home: Path) -> list[Path]:
    """Four generated clips of 100-300 KB (what a generation service sends inline)."""
    from vidjudge.export.samples import write_video

    out = home / "videos" / "burst"
    out.mkdir(parents=True, exist_ok=True)
    specs = [("scene", 640, 360, 48, {"crf": "23"}), ("scene", 854, 480, 24, {"crf": "26"}),
             ("noise", 320, 240, 6, {"crf": "30"}), ("noise", 320, 240, 10, {"crf": "30"})]
    clips = []
    for pattern, w, h, n, opts in specs:
        p = out / f"{pattern}_{w}x{h}_{n}f.mp4"
        if not p.is_file():
            write_video(p, width=w, height=h, num_frames=n, fps=8, pattern=pattern, options=opts)
        clips.append(p)
    return clips


# --------------------------------------------------------------------------- the server process


class _PassThrough:
    """The edge interceptor, disabled: every call goes straight to its handler (the baseline)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    async def intercept_service(self, continuation, handler_call_details):
        return await continuation(handler_call_details)


async def _terminated() -> None:
    """Return once this server process gets SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def serve_floor(unread_window_kb: int) -> int:
    """The floor: a bare grpc.aio server refusing every Score call unread, as the edge does, with the
    edge's transport options (the window an unread call gets decides how much of it is sent anyway)."""
    import grpc

    from vidjudge.errors import REASON_METADATA_KEY
    from vidjudge.server.edge_admission import unread_window_options

    async def refuse(request_iterator, context):
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "full",
                            trailing_metadata=((REASON_METADATA_KEY, "too_many_requests"),))

    async def main() -> None:
        server = grpc.aio.server(options=unread_window_options(unread_window_kb))
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
            "vidjudge.v1.Judge", {"Score": grpc.stream_unary_rpc_method_handler(refuse)})])
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        print(json.dumps({"port": port, "metrics_port": None}), flush=True)
        await _terminated()
        await server.stop(grace=1)

    asyncio.run(main())
    return 0


def serve(mode: str, bundle: str, overrides: dict[str, Any]) -> int:
    """Run a server until SIGTERM; print one JSON line with its ports once it serves."""
    import grpc

    from vidjudge.server.config import load_config

    cfg = load_config(env={}, overrides={"server.port": 0, "server.host": "127.0.0.1", "server.metrics_port": 0,
                                         "server.bundles": [bundle], **overrides})
    if mode == FLOOR:
        return serve_floor(cfg.server.unread_window_kb)
    from vidjudge.server import app

    if mode == "baseline":
        app.EdgeAdmission = type("PassThrough", (_PassThrough, grpc.aio.ServerInterceptor), {})
    common.quiet_libraries()

    async def main() -> None:
        server = app.JudgeServer(cfg)
        port = await server.start()
        print(json.dumps({"port": port, "metrics_port": server.metrics_port,
                          "config": json.loads(cfg.model_dump_json())}), flush=True)
        await _terminated()
        await server.stop(grace=5)

    asyncio.run(main())
    return 0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server_process(mode: str, bundle: Path, overrides: dict[str, Any]):
    overrides = {**overrides, "server.metrics_port": _free_port()}
    cmd = [sys.executable, "-m", "vidjudge.benchmarks.burst", "--serve", mode, "--bundle", str(bundle),
           "--overrides-json", json.dumps(overrides)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line:
            raise RuntimeError(f"the {mode} server did not start (exit {proc.wait(10)})")
        yield json.loads(line)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def in_flight(metrics_port: int) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:  # noqa: S310
            for line in r.read().decode().splitlines():
                if line.startswith("vidjudge_in_flight "):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


# --------------------------------------------------------------------------- the client processes


def fire(target: str, videos: Sequence[str], calls: int, channels: int, deadline_s: float) -> dict:
    """Connect, say "ready", wait for "go" on stdin, then issue `calls` Score calls back to back.

    Each call is timed from just before it is issued to the moment its status arrives, recorded
    in gRPC's completion callback: independent of how busy this process is issuing the others
    (an asyncio client would add its own queueing to every call)."""
    import threading

    import grpc

    from vidjudge.errors import REASON_METADATA_KEY
    from vidjudge.v1 import judge_pb2 as pb

    payloads = [pb.ScoreRequest(video=pb.Video(data=Path(v).read_bytes())).SerializeToString() for v in videos]
    chans = [grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 64 << 20)])
             for _ in range(channels)]
    for c in chans:
        grpc.channel_ready_future(c).result(timeout=30)
    stubs = [c.unary_unary("/vidjudge.v1.Judge/Score") for c in chans]
    results: list[list | None] = [None] * calls
    answered = threading.Semaphore(0)

    def on_done(i: int, t0: float):
        def record(fut) -> None:
            seconds = time.perf_counter() - t0
            try:
                err = fut.exception()
                if err is None:
                    results[i] = ["OK", "", seconds]
                else:
                    reason = dict(err.trailing_metadata() or ()).get(REASON_METADATA_KEY, "")
                    results[i] = [err.code().name, reason, seconds]
            except Exception as e:  # noqa: BLE001 - counted as lost, never hidden
                results[i] = [f"LOST:{type(e).__name__}", str(e), seconds]
            answered.release()
        return record

    print("ready", flush=True)
    sys.stdin.readline()  # "go": every client process starts at once
    t_start = time.perf_counter()
    for i in range(calls):
        t0 = time.perf_counter()
        stubs[i % channels].future(payloads[i % len(payloads)], timeout=deadline_s).add_done_callback(on_done(i, t0))
    issued_s = time.perf_counter() - t_start
    for _ in range(calls):
        if not answered.acquire(timeout=deadline_s + 60):
            break
    wall = time.perf_counter() - t_start
    for c in chans:
        c.close()
    return {"calls": [r if r is not None else ["LOST:unanswered", "", None] for r in results], "wall_s": wall,
            "issue_s": issued_s}


def fire_processes(target: str, videos: Sequence[Path], calls: int, clients: int, channels: int,
                   deadline_s: float) -> dict:
    """`calls` spread over `clients` processes that all start firing at the same moment."""
    shares = [calls // clients + (1 if k < calls % clients else 0) for k in range(clients)]
    procs = []
    for n in shares:
        cmd = [sys.executable, "-m", "vidjudge.benchmarks.burst", "--fire", target, "--calls", str(n),
               "--channels", str(channels), "--deadline", str(deadline_s), "--videos", *map(str, videos)]
        procs.append(subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    try:
        for p in procs:
            if (p.stdout.readline() if p.stdout else "").strip() != "ready":
                raise RuntimeError(f"a client process failed to start: {p.stderr.read()[-2000:] if p.stderr else ''}")
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        docs = []
        for p in procs:
            out, err = p.communicate(timeout=deadline_s + 120)
            if p.returncode != 0:
                raise RuntimeError(f"a client process failed: {err[-2000:]}")
            docs.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return {"calls": [c for d in docs for c in d["calls"]], "wall_s": max(d["wall_s"] for d in docs),
            "issue_s": max(d["issue_s"] for d in docs)}


# --------------------------------------------------------------------------- one run, summaries


def summarize(mode: str, run: int, fired: dict, after_in_flight: float | None) -> dict:
    calls = fired["calls"]
    by_code: dict[str, int] = {}
    for code, _, _ in calls:
        by_code[code] = by_code.get(code, 0) + 1
    refused = sorted(s for code, _, s in calls if code == "RESOURCE_EXHAUSTED")
    ok = sorted(s for code, _, s in calls if code == "OK" and s is not None)
    lost = sum(n for code, n in by_code.items() if code not in ("OK", "RESOURCE_EXHAUSTED"))

    def ms(values: list[float], p: float) -> float | None:
        v = common.percentile(values, p)
        return None if v is None else 1000 * v

    return {"mode": mode, "run": run, "calls": len(calls), "ok": by_code.get("OK", 0),
            "resource_exhausted": len(refused), "other": lost, "by_code": by_code,
            "reasons": sorted({r for code, r, _ in calls if code == "RESOURCE_EXHAUSTED"}),
            "refusal_p50_ms": ms(refused, 50), "refusal_p99_ms": ms(refused, 99), "refusal_max_ms": ms(refused, 100),
            "ok_p50_ms": ms(ok, 50), "ok_p99_ms": ms(ok, 99), "wall_s": fired["wall_s"], "issue_s": fired["issue_s"],
            "in_flight_after": after_in_flight}


def _median(rows: list[dict], key: str) -> float | None:
    vals = sorted(r[key] for r in rows if r.get(key) is not None)
    return common.percentile(vals, 50) if vals else None


def run_bursts(bundle: Path, videos: Sequence[Path], *, limit: int, calls: int, clients: int, channels: int,
               repeats: int, deadline_s: float, overrides: dict[str, Any],
               modes: Sequence[str] = MODES) -> list[dict]:
    rows = []
    for r in range(repeats):
        order = list(modes) if r % 2 == 0 else list(reversed(modes))  # neither always goes first
        for mode in order:
            common.note(f"run {r + 1}/{repeats}: {mode} server ...")
            with server_process(mode, bundle, {**overrides, "admission.max_in_flight": limit}) as srv:
                target = f"127.0.0.1:{srv['port']}"
                warm = fire_processes(target, videos[:1], 1, 1, 1, deadline_s)
                if warm["calls"][0][0] != ("RESOURCE_EXHAUSTED" if mode == FLOOR else "OK"):
                    raise RuntimeError(f"warm-up call failed: {warm['calls'][0]}")
                fired = fire_processes(target, videos, calls, clients, channels, deadline_s)
                left = None
                end = time.monotonic() + 60
                while mode != FLOOR and time.monotonic() < end:
                    left = in_flight(srv["metrics_port"])
                    if left == 0:
                        break
                    time.sleep(0.1)
                rows.append(summarize(mode, r + 1, fired, left))
            common.note(f"  {rows[-1]['ok']} OK, {rows[-1]['resource_exhausted']} RESOURCE_EXHAUSTED, "
                        f"{rows[-1]['other']} other; refusal p50/p99 "
                        f"{common.fmt_num(rows[-1]['refusal_p50_ms'])}/{common.fmt_num(rows[-1]['refusal_p99_ms'])} ms")
    return rows


def medians(rows: list[dict]) -> list[dict]:
    out = []
    for mode in dict.fromkeys(r["mode"] for r in rows):
        mine = [r for r in rows if r["mode"] == mode]
        out.append({"mode": mode, "runs": len(mine), **{k: _median(mine, k) for k in (
            "refusal_p50_ms", "refusal_p99_ms", "ok_p50_ms", "ok_p99_ms", "wall_s")},
            "lost": sum(r["other"] for r in mine), "in_flight_after": max((r["in_flight_after"] or 0) for r in mine)})
    by = {m["mode"]: m for m in out}
    if "baseline" in by and "edge" in by:
        for k in ("refusal_p50_ms", "refusal_p99_ms"):
            by["edge"][f"{k}_baseline_over_edge"] = common.ratio(by["baseline"][k], by["edge"][k])
    if FLOOR in by and "edge" in by:
        for k in ("refusal_p50_ms", "refusal_p99_ms"):
            by["edge"][f"{k}_edge_over_floor"] = common.ratio(by["edge"][k], by[FLOOR][k])
    return out


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m vidjudge.benchmarks.burst", description=__doc__.split("\n\n")[0],
                                 epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", help="Bundle to serve (default: the tiny random bundle, built on first use).")
    ap.add_argument("--limit", type=int, default=64, help="admission.max_in_flight (default 64, the server default).")
    ap.add_argument("--calls", type=int, default=0, help="Calls in the burst (default 10x --limit).")
    ap.add_argument("--clients", type=int, default=4,
                    help="Client processes firing at once, the calls split between them (default 4).")
    ap.add_argument("--channels", type=int, default=4, help="Connections per client process (default 4).")
    ap.add_argument("--repeats", type=int, default=3, help="Runs per server (default 3); medians are reported.")
    ap.add_argument("--deadline", type=float, default=300.0, help="Per-call deadline, seconds (default 300).")
    ap.add_argument("--modes", default=",".join(MODES),
                    help="Servers to run, of baseline, edge and floor (default baseline,edge).")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                    help="Server config override (repeatable); default scorer.backend=transformers.")
    ap.add_argument("--videos", nargs="*", help="Inline videos to send (default: four generated 100-300 KB clips).")
    ap.add_argument("--out", metavar="FILE", help="Write the results as JSON.")
    # Internal: the server and client processes run this module too.
    ap.add_argument("--serve", choices=(*MODES, FLOOR), help=argparse.SUPPRESS)
    ap.add_argument("--overrides-json", default="{}", help=argparse.SUPPRESS)
    ap.add_argument("--fire", metavar="TARGET", help=argparse.SUPPRESS)
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.serve:
        return serve(args.serve, args.bundle, json.loads(args.overrides_json))
    if args.fire:
        print(json.dumps(fire(args.fire, args.videos or [], args.calls, args.channels, args.deadline)))
        return 0
    common.quiet_libraries()
    env = common.environment()
    bundle = common.resolve_bundle(args.bundle)
    videos = [Path(v) for v in args.videos] if args.videos else burst_videos(common.default_home())
    sizes = [v.stat().st_size for v in videos]
    calls = args.calls or 10 * args.limit
    overrides = {"scorer.backend": "transformers", **common.parse_overrides(args.set)}
    modes = [m for m in args.modes.split(",") if m]
    if unknown := set(modes) - {*MODES, FLOOR}:
        ap.error(f"unknown mode(s) {', '.join(sorted(unknown))}: choose from baseline, edge, floor")
    common.note(f"{calls} calls at admission limit {args.limit} from {args.clients} processes x {args.channels} "
                f"connections; videos "
                f"{min(sizes) // 1000}-{max(sizes) // 1000} KB; {common.describe_environment(env)}")
    rows = run_bursts(bundle, videos, limit=args.limit, calls=calls, clients=args.clients, channels=args.channels,
                      repeats=args.repeats, deadline_s=args.deadline, overrides=overrides, modes=modes)
    cols = [("mode", "server"), ("run", "run"), ("calls", "calls"), ("ok", "OK"), ("resource_exhausted", "REFUSED"),
            ("other", "other/lost"), ("refusal_p50_ms", "refusal p50 ms"), ("refusal_p99_ms", "refusal p99 ms"),
            ("ok_p50_ms", "OK p50 ms"), ("ok_p99_ms", "OK p99 ms"), ("issue_s", "issuing s"), ("wall_s", "burst s"),
            ("in_flight_after", "in flight after")]
    print(common.table(rows, cols, f"burst of {calls} Score calls, admission limit {args.limit}"))
    print()
    summary = medians(rows)
    print(common.table(summary, [("mode", "server"), ("runs", "runs"), ("refusal_p50_ms", "refusal p50 ms"),
                                 ("refusal_p99_ms", "refusal p99 ms"), ("ok_p50_ms", "OK p50 ms"),
                                 ("ok_p99_ms", "OK p99 ms"), ("lost", "lost"), ("in_flight_after", "in flight after"),
                                 ("refusal_p50_ms_baseline_over_edge", "p50 baseline/edge"),
                                 ("refusal_p99_ms_baseline_over_edge", "p99 baseline/edge"),
                                 ("refusal_p50_ms_edge_over_floor", "p50 edge/floor"),
                                 ("refusal_p99_ms_edge_over_floor", "p99 edge/floor")], "medians over runs"))
    config = {"limit": args.limit, "calls": calls, "clients": args.clients, "channels": args.channels,
              "repeats": args.repeats,
              "deadline_s": args.deadline, "modes": modes, "overrides": overrides, "bundle": str(bundle),
              "videos": [str(v) for v in videos], "video_bytes": sizes}
    common.write_json(args.out, common.report("burst", config, {"runs": rows, "medians": summary}, env))
    return 0


if __name__ == "__main__":
    sys.exit(main())
