"""gRPC load generator for a vidjudge server, with options named like Triton's perf_analyzer.

    python -m vidjudge.benchmarks.loadgen --start-server --concurrency-range 1:16:3
    python -m vidjudge.benchmarks.loadgen --server 127.0.0.1:50051 --request-rate-range 2:10:2 --out rate.json

Two kinds of load, one level at a time:

- closed loop (``--concurrency-range start:end:step``): N clients each keep exactly one
  request outstanding (send, wait for the answer, send the next);
- open loop (``--request-rate-range``): requests arrive at R per second with Poisson
  (exponential) gaps or constant gaps, whether or not earlier ones were answered.

Each level: warm-up requests first (``--warmup`` completions, excluded), then a measurement
window of ``--measurement-interval`` seconds (or until ``--requests`` completions). As in
perf_analyzer, the window counts the requests that *complete* inside it: videos/s = OK
answers in the window / window length; latency percentiles are over those OK answers;
OK, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED and other errors are counted separately. The load
is kept up until the window closes, then no new request is sent and every request already
sent is awaited (each has a deadline, ``--timeout``), so ``sent == ok + errors`` for the
whole level (reported under ``all``). Requests are never retried (RESOURCE_EXHAUSTED is
counted, not hidden).

When the server runs in this process (``--start-server``) or its Prometheus endpoint is given
(``--metrics-url``), each level also reports the server's mean batch sizes and how busy each
batched stage was (backend seconds / level seconds), which shows where the bottleneck is.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import random
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vidjudge.benchmarks import common

OK = "OK"
STAGES = ("queue", "decode", "preprocess", "encode", "llm", "total")


# --------------------------------------------------------------------------- plan and records


@dataclass
class LoadPlan:
    """How each level is run (all limits apply to every level)."""

    measurement_interval_s: float = 10.0
    requests: int | None = None  # count mode: close the window after this many completions
    warmup: int = 8  # completions before the window opens (excluded)
    warmup_max_s: float = 60.0  # the window opens after this long even if warm-up is not done
    timeout_s: float = 60.0  # per-request deadline (the client's gRPC deadline)
    max_window_s: float = 600.0  # count mode: the window closes after this long anyway
    percentiles: tuple[float, ...] = (50.0, 95.0, 99.0)
    distribution: str = "poisson"  # open loop: poisson | constant
    max_outstanding: int = 4096  # open loop: sends wait when this many are unanswered
    seed: int = 0


@dataclass
class _Record:
    sent: float
    done: float | None = None
    code: str | None = None
    timings: dict | None = None


def _code_of(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    name = getattr(code, "name", None)
    if isinstance(name, str):
        return name
    return f"CLIENT_{type(exc).__name__}"


# --------------------------------------------------------------------------- server-side statistics


MetricsSnapshot = dict[str, float]


def snapshot_from_families(families: Iterator) -> MetricsSnapshot:
    """The counters the load generator diffs per level, from prometheus_client metric families."""
    snap: MetricsSnapshot = {}
    for fam in families:
        for s in fam.samples:
            stage = s.labels.get("stage")
            if s.name in ("vidjudge_batch_size_sum", "vidjudge_batch_size_count", "vidjudge_batch_seconds_sum",
                          "vidjudge_stage_seconds_sum", "vidjudge_stage_seconds_count") and stage:
                snap[f"{s.name}:{stage}"] = float(s.value)
            elif s.name == "vidjudge_shared_video_joins":
                snap[s.name] = float(s.value)
            elif s.name in ("vidjudge_rejections_total",):
                snap[f"{s.name}:{s.labels.get('reason', '')}"] = float(s.value)
    return snap


def registry_snapshot(registry) -> Callable[[], MetricsSnapshot]:
    return lambda: snapshot_from_families(registry.collect())


def http_snapshot(url: str) -> Callable[[], MetricsSnapshot]:
    def fetch() -> MetricsSnapshot:
        from prometheus_client.parser import text_string_to_metric_families

        with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - an operator-given metrics URL
            return snapshot_from_families(text_string_to_metric_families(r.read().decode()))
    return fetch


def server_stats(before: MetricsSnapshot, after: MetricsSnapshot, seconds: float, decode_workers: int | None) -> dict:
    """Per batched stage: batches, mean batch size, mean backend seconds per batch, busy fraction; decode
    stage seconds per video and per worker, and the decode-bound ceiling (workers / mean decode
    seconds: the most videos/s the decoders allow); requests that joined another's decode of the
    same video (their throughput is not the decoders'); server-side rejections by reason."""
    def d(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    out: dict[str, Any] = {}
    for stage in ("encode", "llm"):
        n = d(f"vidjudge_batch_size_count:{stage}")
        if n <= 0:
            continue
        busy = d(f"vidjudge_batch_seconds_sum:{stage}")
        out[stage] = {"batches": int(n), "mean_batch": d(f"vidjudge_batch_size_sum:{stage}") / n,
                      "mean_batch_s": busy / n, "busy_fraction": busy / seconds if seconds > 0 else None}
    n = d("vidjudge_stage_seconds_count:decode")
    if n > 0:
        busy = d("vidjudge_stage_seconds_sum:decode")
        out["decode"] = {"videos": int(n), "mean_s": busy / n,
                         "busy_fraction": busy / (seconds * decode_workers) if seconds > 0 and decode_workers
                         else None,
                         "ceiling_videos_per_s": decode_workers / (busy / n) if decode_workers and busy > 0 else None}
    if "vidjudge_shared_video_joins" in after:
        out["shared_joins"] = int(d("vidjudge_shared_video_joins"))
    prefix = "vidjudge_rejections_total:"
    rejected = {k[len(prefix):]: int(d(k)) for k in after if k.startswith(prefix) and d(k) > 0}
    if rejected:
        out["rejections_by_reason"] = rejected
    return out


# --------------------------------------------------------------------------- one level


class _Level:
    """Runs one load level and collects its records. Every wait is bounded."""

    def __init__(self, client, requests: Sequence[Any], plan: LoadPlan, progress: common.Progress, label: str):
        self.client = client
        self.requests = requests
        self.plan = plan
        self.progress = progress
        self.label = label
        self.records: list[_Record] = []
        self.sending = True
        self.completed = 0
        self.in_window = 0
        self.t_start = time.monotonic()
        self.t0: float | None = None
        self.t1: float | None = None
        self._changed = asyncio.Event()  # set on every completion and when sending stops
        self._stop = asyncio.Event()  # set once, when sending stops
        self._pick = itertools.count()
        self.tasks: set[asyncio.Task] = set()
        self.send_lags: list[float] = []
        self.waited_for_slot = 0

    def _next_request(self):
        return self.requests[next(self._pick) % len(self.requests)]

    async def one(self) -> None:
        rec = _Record(sent=time.monotonic())
        self.records.append(rec)
        try:
            r = await self.client.score_request(self._next_request(), timeout=self.plan.timeout_s)
            rec.code, rec.timings = OK, r.timings
        except asyncio.CancelledError:
            rec.code = "CLIENT_CANCELLED"
            raise
        except Exception as e:  # noqa: BLE001 - every outcome is counted
            rec.code = _code_of(e)
        finally:
            rec.done = time.monotonic()
            self.completed += 1
            if self.t0 is not None and self.t1 is None and rec.done >= self.t0:
                self.in_window += 1
            self._changed.set()
            self.progress.update(f"{self.label}: {self.completed} answered, {len(self.records)} sent")

    async def _wait_until(self, cond: Callable[[], bool], deadline: float) -> bool:
        while not cond():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=min(left, 1.0))
        return True

    async def phases(self) -> None:
        p = self.plan
        if p.warmup > 0:
            await self._wait_until(lambda: self.completed >= p.warmup, self.t_start + p.warmup_max_s)
        self.t0 = time.monotonic()
        if p.requests:
            await self._wait_until(lambda: self.in_window >= p.requests, self.t0 + p.max_window_s)
        else:
            await asyncio.sleep(p.measurement_interval_s)
        self.t1 = time.monotonic()
        self.stop()

    def stop(self) -> None:
        self.sending = False
        self._stop.set()
        self._changed.set()

    async def drain(self, workers: Sequence[asyncio.Task]) -> None:
        """Wait for everything already sent; each call has its own deadline, so this ends."""
        pending = set(workers) | set(self.tasks)
        if pending:
            _, late = await asyncio.wait(pending, timeout=self.plan.timeout_s + 15)
            for t in late:  # only if a call outlived its own deadline
                t.cancel()
            if late:
                await asyncio.wait(late, timeout=5)
        for r in self.records:
            if r.code is None:
                r.code, r.done = "CLIENT_UNANSWERED", time.monotonic()

    # -- the two kinds of load ------------------------------------------------------------
    async def closed_loop(self, concurrency: int) -> None:
        async def worker() -> None:
            while self.sending:
                await self.one()

        workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
        try:
            await self.phases()
        finally:
            self.stop()
            await self.drain(workers)

    async def open_loop(self, rate: float) -> None:
        rng = random.Random(self.plan.seed)
        poisson = self.plan.distribution == "poisson"

        async def dispatch() -> None:
            next_t = time.monotonic()
            while self.sending:
                next_t += rng.expovariate(rate) if poisson else 1.0 / rate
                delay = next_t - time.monotonic()
                if delay > 0:
                    with contextlib.suppress(asyncio.TimeoutError):
                        # Wakes early only when the level stops.
                        await asyncio.wait_for(self._stop.wait(), timeout=delay)
                if not self.sending:
                    return
                if len(self.tasks) >= self.plan.max_outstanding:
                    self.waited_for_slot += 1
                    while len(self.tasks) >= self.plan.max_outstanding and self.sending:
                        self._changed.clear()
                        with contextlib.suppress(asyncio.TimeoutError):
                            await asyncio.wait_for(self._changed.wait(), timeout=1.0)
                    if not self.sending:
                        return
                self.send_lags.append(max(0.0, time.monotonic() - next_t))
                task = asyncio.create_task(self.one())
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)

        dispatcher = asyncio.create_task(dispatch())
        try:
            await self.phases()
        finally:
            self.stop()
            await self.drain([dispatcher])

    # -- results ------------------------------------------------------------------------
    def summary(self) -> dict:
        assert self.t0 is not None and self.t1 is not None
        window = max(self.t1 - self.t0, 1e-9)
        measured = [r for r in self.records if r.done is not None and self.t0 <= r.done < self.t1]
        ok = [r for r in measured if r.code == OK]
        lat = sorted(r.done - r.sent for r in ok)  # type: ignore[operator]
        out: dict[str, Any] = {
            "window_s": window,
            "videos_per_s": len(ok) / window,
            "answers_per_s": len(measured) / window,
            **_counts(measured),
            "latency_ms": {
                "mean": 1000 * sum(lat) / len(lat) if lat else None,
                "min": 1000 * lat[0] if lat else None,
                "max": 1000 * lat[-1] if lat else None,
                **{f"p{_pname(p)}": (None if not lat else 1000 * common.percentile(lat, p))
                   for p in self.plan.percentiles},
            },
            "server_timings_ms": _mean_timings(ok),
            "all": {"sent": len(self.records), **_counts(self.records),
                    "unanswered": sum(1 for r in self.records if r.code in ("CLIENT_UNANSWERED", "CLIENT_CANCELLED")),
                    "level_s": (max((r.done or 0) for r in self.records) - self.t_start) if self.records else 0.0},
        }
        if self.send_lags:
            lags = sorted(self.send_lags)
            out["send_lag_ms"] = {"p50": 1000 * common.percentile(lags, 50), "p99": 1000 * common.percentile(lags, 99),
                                  "max": 1000 * lags[-1]}
            out["sends_waited_for_slot"] = self.waited_for_slot
        return out


def _pname(p: float) -> str:
    return f"{p:g}".replace(".", "_")


def _counts(records: Sequence[_Record]) -> dict:
    c = Counter(r.code for r in records)
    other = {k: v for k, v in c.items() if k not in (OK, "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED")}
    return {"ok": c.get(OK, 0), "resource_exhausted": c.get("RESOURCE_EXHAUSTED", 0),
            "deadline_exceeded": c.get("DEADLINE_EXCEEDED", 0), "other_errors": sum(other.values()),
            "other_by_code": dict(sorted(other.items()))}


def _mean_timings(ok: Sequence[_Record]) -> dict:
    rows = [r.timings for r in ok if r.timings]
    if not rows:
        return {}
    return {s: 1000 * sum(t.get(f"{s}_s", 0.0) for t in rows) / len(rows) for s in STAGES}


# --------------------------------------------------------------------------- driver


def build_requests(videos: Sequence[Path], *, prompt: str, dimensions: Sequence[str], model: str = "",
                   server_path: bool = False) -> list:
    """One ScoreRequest per video, built once (inline bytes read once, or server-side paths)."""
    from vidjudge.client import build_request

    return [build_request(str(v.resolve()) if server_path else v.read_bytes(), prompt=prompt,
                          dimensions=dimensions, model=model, server_path=server_path) for v in videos]


def run_levels(target: str, requests: Sequence[Any], *, concurrencies: Sequence[int] = (),
               rates: Sequence[float] = (), plan: LoadPlan | None = None,
               stats: Callable[[], MetricsSnapshot] | None = None, decode_workers: int | None = None,
               progress: common.Progress | None = None,
               on_level: Callable[[dict], None] | None = None) -> list[dict]:
    """Run every level against `target` (host:port) and return one summary per level."""
    if bool(concurrencies) == bool(rates):
        raise ValueError("give either concurrencies or rates")
    if not requests:
        raise ValueError("no requests to send")
    plan = plan or LoadPlan()
    progress = progress or common.Progress()

    async def main() -> list[dict]:
        from vidjudge.client import NO_RETRY, AsyncJudgeClient

        results = []
        async with AsyncJudgeClient(target, timeout=plan.timeout_s, retry=NO_RETRY) as client:
            levels = [("concurrency", c) for c in concurrencies] + [("request_rate", r) for r in rates]
            for kind, value in levels:
                label = f"{kind} {value:g}"
                level = _Level(client, requests, plan, progress, label)
                before = _safe(stats)
                t = time.monotonic()
                if kind == "concurrency":
                    await level.closed_loop(int(value))
                else:
                    await level.open_loop(float(value))
                after = _safe(stats)
                progress.done()
                row = {kind: value, **level.summary()}
                if before is not None and after is not None:
                    row["server"] = server_stats(before, after, time.monotonic() - t, decode_workers)
                    decode = row["server"].get("decode", {})
                    if decode.get("ceiling_videos_per_s"):
                        decode["of_ceiling"] = row["videos_per_s"] / decode["ceiling_videos_per_s"]
                results.append(row)
                if on_level:
                    on_level(row)
        return results

    return asyncio.run(main())


def _safe(fn: Callable[[], MetricsSnapshot] | None) -> MetricsSnapshot | None:
    if fn is None:
        return None
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - statistics are optional; the load test goes on
        common.note(f"(server metrics unavailable: {e})")
        return None


DEFAULT_SERVER_SETTINGS: dict[str, Any] = {"server.port": 0, "server.host": "127.0.0.1"}


@contextlib.contextmanager
def started_server(bundle: Path, overrides: dict[str, Any] | None = None,
                   allowed_dirs: Sequence[Path] = ()) -> Iterator[tuple[str, Any, dict]]:
    """A real server in this process (ServerThread) on a free loopback port.

    Yields (address, ServerThread, effective config as a dict)."""
    from vidjudge.server.app import ServerThread
    from vidjudge.server.config import load_config

    settings = {**DEFAULT_SERVER_SETTINGS, "server.bundles": [str(bundle)],
                "limits.allowed_dirs": [str(Path(d).resolve()) for d in allowed_dirs], **(overrides or {})}
    cfg = load_config(env={}, overrides=settings)
    with ServerThread(cfg) as s:
        yield s.address, s, json.loads(cfg.model_dump_json())


def server_backends(srv) -> dict[str, dict[str, str]]:
    """Which encoder and scorer each loaded model really runs on (after the server's fallbacks)."""
    return {name: {"encoders": {n: e.name for n, e in r.encoders.items()}, "scorer": r.llm.name}
            for name, r in srv.server.pipeline.runners.items()}


def wait_ready(target: str, timeout: float = 60.0) -> None:
    from vidjudge.client import JudgeClient

    with JudgeClient(target) as c:
        c.wait_ready(timeout=timeout)


# --------------------------------------------------------------------------- printing


def level_table(rows: Sequence[dict], percentiles: Sequence[float], title: str | None = None) -> str:
    flat = []
    for r in rows:
        kind = "concurrency" if "concurrency" in r else "request_rate"
        f = {"level": f"{'c' if kind == 'concurrency' else 'r'}={r[kind]:g}", "videos_per_s": r["videos_per_s"],
             "ok": r["ok"], "re": r["resource_exhausted"], "de": r["deadline_exceeded"], "other": r["other_errors"],
             "sent": r["all"]["sent"], "answered": r["all"]["sent"] - r["all"]["unanswered"]}
        for p in percentiles:
            f[f"p{_pname(p)}"] = r["latency_ms"].get(f"p{_pname(p)}")
        srv = r.get("server", {})
        for stage in ("encode", "llm"):
            if stage in srv:
                f[f"{stage}_batch"] = srv[stage]["mean_batch"]
                f[f"{stage}_busy"] = srv[stage]["busy_fraction"]
        if "decode" in srv:
            f["decode_busy"] = srv["decode"]["busy_fraction"]
            f["ceiling"] = srv["decode"].get("ceiling_videos_per_s")
            f["of_ceiling"] = srv["decode"].get("of_ceiling")
        f["joins"] = srv.get("shared_joins")
        flat.append(f)
    cols = [("level", "level"), ("videos_per_s", "videos/s")]
    cols += [(f"p{_pname(p)}", f"p{_pname(p)} ms") for p in percentiles]
    cols += [("ok", "OK"), ("re", "RES_EXH"), ("de", "DEADLINE"), ("other", "other"), ("sent", "sent (all)"),
             ("answered", "answered")]
    if any("encode_batch" in f for f in flat):
        cols += [("encode_batch", "enc batch"), ("encode_busy", "enc busy"), ("llm_batch", "llm batch"),
                 ("llm_busy", "llm busy"), ("decode_busy", "dec busy")]
    if any(f.get("ceiling") for f in flat):
        cols += [("ceiling", "decode ceiling videos/s"), ("of_ceiling", "of ceiling"), ("joins", "shared joins")]
    return common.table(flat, cols, title)


def timings_table(rows: Sequence[dict]) -> str:
    flat = []
    for r in rows:
        kind = "concurrency" if "concurrency" in r else "request_rate"
        flat.append({"level": f"{'c' if kind == 'concurrency' else 'r'}={r[kind]:g}", **r["server_timings_ms"]})
    return common.table(flat, [("level", "level")] + [(s, f"{s} ms") for s in STAGES],
                        "server-side stage times per OK request (means, from the responses)")


# --------------------------------------------------------------------------- CLI


def add_video_args(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("videos")
    g.add_argument("--videos", metavar="DIR|GLOB|FILE",
                   help="Videos to send (a directory, a glob such as 'clips/**/*.mp4', or one file). "
                        "Default: generated sample clips (see --sample-*), cached under $VIDJUDGE_BENCH_HOME "
                        "(default ~/.cache/vidjudge/benchmarks).")
    g.add_argument("--sample-count", type=int, default=4, help="Generated clips: how many (default 4).")
    g.add_argument("--sample-size", default="320x240", metavar="WxH", help="Generated clips: frame size.")
    g.add_argument("--sample-frames", type=int, default=48, help="Generated clips: frames each (default 48).")
    g.add_argument("--sample-fps", type=float, default=24.0, help="Generated clips: frame rate (default 24).")


def videos_from_args(args) -> list[Path]:
    w, h = (int(v) for v in args.sample_size.lower().split("x"))
    return common.resolve_videos(args.videos, count=args.sample_count, width=w, height=h,
                                 num_frames=args.sample_frames, fps=args.sample_fps)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m vidjudge.benchmarks.loadgen",
        description=__doc__.split("\n\n", 1)[0] + " Measures videos/s, latency percentiles and error counts "
                    "per concurrency or request-rate level.",
        epilog="Examples:\n"
               "  %(prog)s --start-server --concurrency-range 1:16:3\n"
               "  %(prog)s --start-server --bundle bundles/qwen7b --set decode.workers=8 "
               "--concurrency-range 16:64:16 --measurement-interval 30 --out c.json\n"
               "  %(prog)s --server 10.0.0.5:50051 --request-rate-range 5:25:5 --metrics-url "
               "http://10.0.0.5:9400/metrics\n\n"
               "Counting: a level's window counts the requests that complete inside it (as perf_analyzer); "
               "videos/s = OK answers in the window / window seconds. Everything sent is awaited before the "
               "next level, so 'sent (all)' = OK + errors over the whole level. RESOURCE_EXHAUSTED is what "
               "vidjudge answers when full (Triton answers UNAVAILABLE); it is counted, never retried.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    t = ap.add_argument_group("target")
    t.add_argument("-u", "--server", metavar="HOST:PORT", help="Address of a running server.")
    t.add_argument("--start-server", action="store_true",
                   help="Start a server in this process on a free loopback port (needs the server extra).")
    t.add_argument("--bundle", help="Bundle for --start-server (default: the tiny random bundle, built on first use).")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="Config override for --start-server, as `vidjudge serve --set` (repeatable), "
                        "e.g. --set decode.workers=4 --set scorer.max_batch=32.")
    t.add_argument("--metrics-url", help="Prometheus endpoint of a running server (http://host:port/metrics): "
                                         "per-level batch sizes and stage busy fractions.")
    load = ap.add_argument_group("load (perf_analyzer names)")
    m = load.add_mutually_exclusive_group()
    m.add_argument("--concurrency-range", metavar="START:END:STEP",
                   help="Closed loop: outstanding requests per level, end inclusive (default 1:1:1 ... "
                        "i.e. one level at concurrency 1 unless --request-rate-range is given).")
    m.add_argument("--request-rate-range", metavar="START:END:STEP",
                   help="Open loop: requests per second per level (floats allowed), arrivals per "
                        "--request-distribution.")
    load.add_argument("--request-distribution", choices=("poisson", "constant"), default="poisson",
                      help="Open-loop arrival process (default poisson: exponential gaps).")
    load.add_argument("--measurement-interval", type=float, default=10.0, metavar="SECONDS",
                      help="Window length per level in seconds (default 10). perf_analyzer takes milliseconds "
                           "for -p; this takes seconds.")
    load.add_argument("--requests", "--measurement-request-count", dest="requests", type=int, metavar="N",
                      help="Count mode: close each window after N completions instead of after a time "
                           "(bounded by --max-window).")
    load.add_argument("--max-window", type=float, default=600.0, metavar="SECONDS",
                      help="Count mode: the window closes after this long anyway (default 600).")
    load.add_argument("--warmup", type=int, default=8, metavar="N",
                      help="Completions per level before the window opens, excluded (default 8).")
    load.add_argument("--warmup-max", type=float, default=60.0, metavar="SECONDS",
                      help="The window opens after this long even if warm-up is not done (default 60).")
    load.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                      help="Per-request gRPC deadline (default 60); a late answer counts as DEADLINE_EXCEEDED.")
    load.add_argument("--max-outstanding", type=int, default=4096,
                      help="Open loop: unanswered requests at most; later sends wait (counted).")
    load.add_argument("--percentile", type=float, action="append", metavar="P",
                      help="Latency percentile to report (repeatable; default 50, 95, 99).")
    load.add_argument("--seed", type=int, default=0, help="Seed of the Poisson arrivals.")
    r = ap.add_argument_group("requests")
    r.add_argument("--prompt", default=common.DEFAULT_PROMPT,
                   help="Generation prompt sent with every video ('' for none: prompt dimensions are then skipped).")
    r.add_argument("--dimensions", default="", metavar="A,B",
                   help="Comma-separated dimensions (default: every dimension the request can be scored on).")
    r.add_argument("--model", default="", help="Model name (default: the server's default model).")
    r.add_argument("--server-path", action="store_true",
                   help="Send server-side paths instead of inline bytes (the server must allow the directory; "
                        "--start-server allows the videos' directories).")
    add_video_args(ap)
    ap.add_argument("--out", metavar="FILE", help="Write the results as JSON.")
    return ap


def plan_from_args(args) -> LoadPlan:
    return LoadPlan(measurement_interval_s=args.measurement_interval, requests=args.requests, warmup=args.warmup,
                    warmup_max_s=args.warmup_max, timeout_s=args.timeout, max_window_s=args.max_window,
                    percentiles=tuple(args.percentile or (50.0, 95.0, 99.0)),
                    distribution=args.request_distribution, max_outstanding=args.max_outstanding, seed=args.seed)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if bool(args.server) == bool(args.start_server):
        raise SystemExit("give exactly one of --server HOST:PORT or --start-server")
    common.quiet_libraries()
    try:
        overrides = common.parse_overrides(args.overrides)
        if args.request_rate_range:
            concurrencies, rates = [], common.parse_range(args.request_rate_range, float)
        else:
            concurrencies, rates = common.parse_range(args.concurrency_range or "1"), []
    except ValueError as e:
        raise SystemExit(str(e))
    plan = plan_from_args(args)
    videos = videos_from_args(args)
    dims = [d.strip() for d in args.dimensions.split(",") if d.strip()]
    requests = build_requests(videos, prompt=args.prompt, dimensions=dims, model=args.model,
                              server_path=args.server_path)
    env = common.environment()

    def show(row: dict) -> None:
        print(level_table([row], plan.percentiles), flush=True)

    with contextlib.ExitStack() as stack:
        server_config = None
        stats = http_snapshot(args.metrics_url) if args.metrics_url else None
        workers = None
        if args.start_server:
            bundle = common.resolve_bundle(args.bundle)
            common.note(f"starting a server on {bundle} ...")
            t = time.perf_counter()
            dirs = sorted({v.resolve().parent for v in videos})
            target, srv, server_config = stack.enter_context(started_server(bundle, overrides, dirs))
            stats = registry_snapshot(srv.server.pipeline.metrics.registry)
            workers = server_config["decode"]["workers"]
            server_config["backends_in_use"] = server_backends(srv)
            common.note(f"server up on {target} in {time.perf_counter() - t:.1f}s; overrides: {overrides or 'none'}; "
                        f"backends: {server_config['backends_in_use']}")
        else:
            target = args.server
            try:
                wait_ready(target, timeout=30)
            except Exception as e:  # noqa: BLE001 - say what is wrong, no traceback
                raise SystemExit(f"no vidjudge server answering health checks at {target}: {e}")
        common.note(f"{len(requests)} distinct videos; {common.describe_environment(env)}")
        rows = run_levels(target, requests, concurrencies=concurrencies, rates=rates, plan=plan, stats=stats,
                          decode_workers=workers, on_level=show)
    print()
    print(level_table(rows, plan.percentiles, "summary"))
    print()
    print(timings_table(rows))
    base = rows[0]["videos_per_s"]
    if len(rows) > 1 and base:
        kind = "concurrency" if "concurrency" in rows[0] else "request_rate"
        print("\nvideos/s relative to the first level (" + f"{kind} {rows[0][kind]:g}): " +
              ", ".join(f"{r[kind]:g}: {common.fmt_num(common.ratio(r['videos_per_s'], base))}x" for r in rows))
    config = {"target": "in-process server" if args.start_server else target, "plan": asdict(plan),
              "prompt": args.prompt, "dimensions": dims, "model": args.model, "server_path": args.server_path,
              "videos": [str(v) for v in videos], "overrides": overrides, "server_config": server_config}
    common.write_json(args.out, common.report("loadgen", config, rows, env))
    return 0


if __name__ == "__main__":
    sys.exit(main())
