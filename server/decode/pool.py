"""Crash-safe decoding: worker processes the server can lose and replace.

FFmpeg can segfault on hostile or truncated input and when NVDEC fails to start
(DESIGN.md 4); no try/except catches that. Each decode therefore runs in a
worker process (multiprocessing "spawn" context, one task at a time over a Pipe),
managed by one dispatcher thread in the parent:

- a worker that dies mid-task (segfault, abort, os._exit, SIGKILL, the OOM killer)
  is replaced, and its video is decoded again, first in the queue, on the next free
  worker: a worker killed from outside is not the file's fault. A video during which
  two workers die fails, and only its own task, with
  ``InvalidVideo(reason="decoder_crashed")``; both deaths count as restarts;
- a task running past ``limits.timeout_s`` has its worker killed, fails with
  ``InvalidVideo(reason="decode_timeout")``, and the worker is replaced;
- exceptions raised by ``decode_fn`` come back as the same type, message and reason;
- a future cancelled before dispatch is never decoded;
- workers that keep dying before they are ready (e.g. NVDEC crashing at start-up)
  make the pool fall back to software decoding, then, if that fails too, mark the
  pool broken: its futures fail with ``Unavailable(reason="decoder_unavailable")``.

`concurrent.futures.ProcessPoolExecutor` is not used on purpose: one dead worker
breaks that whole pool.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from vidjudge.errors import InternalError, InvalidVideo, Unavailable, VidjudgeError
from vidjudge.server.decode.memory import retain_freed_memory
from vidjudge.server.decode.pyav_decoder import decode_video
from vidjudge.server.priority import DECODE_WORKER_NICENESS, lower_this_process
from vidjudge.server.types import DecodedVideo, DecodeLimits, DecodeRequest, VideoSource

log = logging.getLogger(__name__)

DecodeFn = Callable[[VideoSource, DecodeRequest, DecodeLimits, str], DecodedVideo]

# Workers dying before they report ready this many times in a row: give up on hwaccel, then on the pool.
_MAX_START_FAILURES = 3
# Workers that may die while decoding one video before the video is blamed (the first may have
# been killed from outside: OOM killer, an operator's kill -9).
_DEATHS_PER_VIDEO = 2


# --------------------------------------------------------------------------- messages over the Pipe


@dataclass(frozen=True)
class _Ready:
    """Worker -> parent: started (imports done, NVDEC probed), waiting for a task."""

    pid: int


@dataclass(frozen=True)
class _Job:
    """Parent -> worker: decode one video. `None` instead asks the worker to exit."""

    task_id: int
    source: VideoSource
    request: DecodeRequest


@dataclass(frozen=True)
class _Reply:
    """Worker -> parent: the outcome of one `_Job`: a result or the exception it raised."""

    task_id: int
    result: DecodedVideo | None = None
    error: BaseException | None = None


# --------------------------------------------------------------------------- worker side


def _portable(exc: BaseException) -> BaseException:
    """`exc` if it survives a pickle round trip (with the worker traceback as a note), else an InternalError."""
    if not isinstance(exc, VidjudgeError):
        try:
            exc.add_note("decode worker traceback:\n" + "".join(traceback.format_exception(exc)).rstrip())
        except Exception:  # noqa: BLE001
            pass
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - unpicklable exception: keep its text
        return InternalError(f"decode failed: {type(exc).__name__}: {exc}", reason="decode_failed")


def _worker_main(conn, limits: DecodeLimits, hwaccel: str, decode_fn: DecodeFn, log_level: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when workers stop
    # Below the server's priority: when decoding saturates the cores, the event loop (admission,
    # refusals, dispatch) and the stages finishing admitted work run first (priority.py).
    lower_this_process(DECODE_WORKER_NICENESS)
    retain_freed_memory()  # frame buffers reused video to video, not faulted in afresh (memory.py)
    logging.basicConfig(level=log_level,
                        format="%(asctime)s %(levelname)s [decode-worker %(process)d] %(name)s: %(message)s")
    if hwaccel != "none":
        from vidjudge.server.decode.pyav_decoder import probe_hwaccel

        probe_hwaccel(hwaccel)  # if NVDEC segfaults, it does so here, before the worker takes a task
    conn.send(_Ready(os.getpid()))
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if job is None:
            return
        try:
            t0 = time.perf_counter()
            result = decode_fn(job.source, job.request, limits, hwaccel)
            # The caller sees queue + decode; this is the decode alone (StageTimings splits them).
            result.decode_s = time.perf_counter() - t0
            reply = _Reply(job.task_id, result=result)
        except Exception as e:  # noqa: BLE001 - every failure goes back to the caller
            reply = _Reply(job.task_id, error=_portable(e))
        try:
            conn.send(reply)
        except (pickle.PicklingError, TypeError, AttributeError) as e:
            conn.send(_Reply(job.task_id, error=InternalError(f"decode result could not be sent back: {e}",
                                                              reason="decode_failed")))
        except OSError:
            return  # the parent is gone
        del reply, job


# --------------------------------------------------------------------------- parent side


@dataclass
class _Task:
    future: Future
    source: VideoSource
    request: DecodeRequest
    name: str
    started: bool = False
    deaths: list[str] = field(default_factory=list)  # how each worker that held this task died


@dataclass
class _Worker:
    proc: Any
    conn: Any
    started_at: float
    ready: bool = False
    task: _Task | None = None
    task_id: int = 0
    deadline: float = 0.0
    tasks_done: int = 0
    dead: bool = field(default=False)


def _describe_source(source: VideoSource) -> str:
    if source.path is not None:
        return str(source.path)
    return f"an inline video of {len(source.data or b'')} bytes"


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class DecodePool:
    """Decode videos in `workers` crash-safe processes; `submit` returns a Future[DecodedVideo].

    `decode_fn(source, request, limits, hwaccel)` must be a picklable top-level function.
    `max_tasks_per_worker` (optional) recycles workers after that many tasks, bounding
    any memory a decoder leaks. `start_timeout_s` bounds a worker's start-up.
    """

    def __init__(
        self,
        workers: int,
        limits: DecodeLimits,
        hwaccel: str = "auto",
        decode_fn: DecodeFn = decode_video,
        *,
        max_tasks_per_worker: int | None = None,
        start_timeout_s: float = 120.0,
    ):
        if workers < 1:
            raise ValueError("a decode pool needs at least one worker")
        if hwaccel not in ("auto", "cuda", "none"):
            raise ValueError(f"hwaccel must be auto, cuda or none, got {hwaccel!r}")
        self._limits = limits
        self._hwaccel = hwaccel
        self._decode_fn = decode_fn
        self._max_tasks = max_tasks_per_worker
        self._start_timeout_s = start_timeout_s
        self._ctx = multiprocessing.get_context("spawn")
        self._log_level = logging.getLogger().getEffectiveLevel()

        self._lock = threading.Lock()
        self._queue: deque[_Task] = deque()
        self._closed = False
        self._broken: str | None = None
        self._close_deadline = 0.0
        self._busy = 0
        self._restarts = 0
        self._recycled = 0
        self._start_failures = 0
        self._ids = itertools.count(1)

        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._workers: list[_Worker] = [self._spawn() for _ in range(workers)]
        self._thread = threading.Thread(target=self._run, name="decode-dispatcher", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ public API

    def submit(self, source: VideoSource, request: DecodeRequest) -> Future:
        """Queue one decode; the future resolves to a DecodedVideo or raises (InvalidVideo, ...)."""
        fut: Future = Future()
        with self._lock:
            if self._closed:
                raise Unavailable("the decode pool is closed (server shutting down)", reason="shutting_down")
            if self._broken:
                raise Unavailable(self._broken, reason="decoder_unavailable")
            self._queue.append(_Task(fut, source, request, _describe_source(source)))
            self._wake()  # under the lock: close() cannot have closed the pipe yet
        return fut

    def close(self, timeout: float = 10.0) -> None:
        """Stop: queued tasks fail at once; running ones get `timeout` s to finish, then are killed."""
        with self._lock:
            already = self._closed
            if not already:
                self._closed = True
                self._close_deadline = time.monotonic() + max(timeout, 0.0)
                queued = list(self._queue)
                self._queue.clear()
        if already:
            self._thread.join()
            return
        for task in queued:
            _fail(task.future, Unavailable("the decode pool was closed before this video was decoded",
                                           reason="shutting_down"))
        self._wake()
        self._thread.join()
        with self._lock:
            os.close(self._wake_r)
            os.close(self._wake_w)

    def __enter__(self) -> DecodePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pending(self) -> int:
        """Tasks queued and not yet given to a worker."""
        with self._lock:
            return len(self._queue)

    @property
    def busy(self) -> int:
        """Workers decoding right now."""
        with self._lock:
            return self._busy

    @property
    def restarts(self) -> int:
        """Workers replaced after a crash, a timeout or a failed start."""
        with self._lock:
            return self._restarts

    @property
    def recycled(self) -> int:
        """Workers retired after `max_tasks_per_worker` tasks (not failures)."""
        with self._lock:
            return self._recycled

    @property
    def workers(self) -> int:
        """Worker processes, started or starting."""
        return len(self._workers)

    @property
    def ready(self) -> int:
        """Workers that finished starting (idle or busy); 0 right after construction."""
        return sum(1 for w in list(self._workers) if w.ready and not w.dead)

    @property
    def worker_pids(self) -> list[int]:
        """PIDs of the current worker processes (for tests and diagnostics)."""
        return [w.proc.pid for w in list(self._workers) if w.proc.pid is not None]

    @property
    def hwaccel(self) -> str:
        """The hwaccel mode new workers start with ("none" after NVDEC kept crashing them)."""
        return self._hwaccel

    @property
    def broken(self) -> str | None:
        """Why the pool gave up (workers cannot start), or None while it works."""
        with self._lock:
            return self._broken

    # ------------------------------------------------------------------ dispatcher thread

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass  # already awake (pipe full) or closing

    def _spawn(self) -> _Worker:
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(
            target=_worker_main,
            args=(child_conn, self._limits, self._hwaccel, self._decode_fn, self._log_level),
            name="vidjudge-decode",
            daemon=True,
        )
        proc.start()
        child_conn.close()  # the parent keeps one end only, so a dead child reads as EOF
        return _Worker(proc=proc, conn=parent_conn, started_at=time.monotonic())

    def _run(self) -> None:
        try:
            self._loop()
        except Exception:  # noqa: BLE001 - never leave futures hanging
            log.exception("decode dispatcher failed")
            with self._lock:
                self._broken = "the decode dispatcher failed; see the server log"
                queued = list(self._queue)
                self._queue.clear()
            for task in queued:
                _fail(task.future, Unavailable(self._broken, reason="decoder_unavailable"))
        finally:
            self._shutdown_workers()

    def _loop(self) -> None:
        while True:
            with self._lock:
                closed = self._closed
            if closed and (not any(w.task for w in self._workers) or time.monotonic() >= self._close_deadline):
                return
            if not closed:
                self._dispatch()
            waitables: list[Any] = [self._wake_r]
            for w in self._workers:
                waitables += [w.conn, w.proc.sentinel]
            ready = multiprocessing.connection.wait(waitables, timeout=self._next_timeout(closed))
            if self._wake_r in ready:
                try:
                    while os.read(self._wake_r, 4096):
                        pass
                except (BlockingIOError, OSError):
                    pass
            for w in list(self._workers):
                if w.conn in ready:
                    self._on_readable(w)
                elif w.proc.sentinel in ready:
                    self._on_death(w)
            self._check_deadlines()

    def _next_timeout(self, closed: bool) -> float | None:
        now = time.monotonic()
        deadlines = [w.deadline for w in self._workers if w.task is not None]
        deadlines += [w.started_at + self._start_timeout_s for w in self._workers if not w.ready]
        if closed:
            deadlines.append(self._close_deadline)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - now) + 0.001

    def _dispatch(self) -> None:
        for w in self._workers:
            if not w.ready or w.task is not None or w.dead:
                continue
            task = self._next_task()
            if task is None:
                return
            task_id = next(self._ids)
            try:
                w.conn.send(_Job(task_id, task.source, task.request))
            except (pickle.PicklingError, TypeError, AttributeError) as e:
                _fail(task.future, InternalError(f"could not send the video to a decode worker: {e}",
                                                 reason="decode_failed"))
                continue
            except (OSError, EOFError, ValueError):
                # The worker died before taking the task: the task never ran, so requeue it.
                with self._lock:
                    self._queue.appendleft(task)
                self._on_death(w)
                return  # the worker list changed; the loop comes back here
            w.task, w.task_id = task, task_id
            w.deadline = time.monotonic() + self._limits.timeout_s
            with self._lock:
                self._busy += 1

    def _next_task(self) -> _Task | None:
        while True:
            with self._lock:
                if not self._queue:
                    return None
                task = self._queue.popleft()
            if task.started or task.future.set_running_or_notify_cancel():
                task.started = True
                return task
            # cancelled before dispatch: skipped, never decoded

    def _finish(self, w: _Worker) -> _Task | None:
        task, w.task = w.task, None
        if task is not None:
            with self._lock:
                self._busy -= 1
        return task

    def _on_readable(self, w: _Worker) -> None:
        try:
            msg = w.conn.recv()
        except (EOFError, OSError):
            self._on_death(w)
            return
        except Exception as e:  # noqa: BLE001 - a reply the parent cannot unpickle
            task = self._finish(w)
            if task is not None:
                _fail(task.future, InternalError(f"could not read the decode result: {e}", reason="decode_failed"))
            self._replace(w, count_restart=True)
            return
        if isinstance(msg, _Ready):
            w.ready = True
            self._start_failures = 0
            return
        if not isinstance(msg, _Reply) or msg.task_id != w.task_id or w.task is None:
            log.warning("decode worker %s sent an unexpected message; ignored", w.proc.pid)
            return
        task = self._finish(w)
        assert task is not None
        if msg.error is not None:
            _fail(task.future, msg.error)
        else:
            _resolve(task.future, msg.result)
        w.tasks_done += 1
        if self._max_tasks and w.tasks_done >= self._max_tasks and not self._closed:
            with self._lock:
                self._recycled += 1
            self._retire(w)
            self._workers[self._workers.index(w)] = self._spawn()

    def _on_death(self, w: _Worker) -> None:
        if w.dead:
            return
        w.proc.join(timeout=5)
        how = _describe_exit(w.proc.exitcode)
        task = self._finish(w)
        pid = w.proc.pid
        if task is None and not w.ready:
            self._start_failed(w, how)  # first: it may switch the replacement to software decoding
        elif task is None:
            log.warning("idle decode worker %s died (%s)", pid, how)
        # Replaced (and counted) before the task's caller hears of it.
        self._replace(w, count_restart=True)
        if task is not None:
            self._after_death_during(task, pid, how)

    def _after_death_during(self, task: _Task, pid: int | None, how: str) -> None:
        """Retry the video once (at the head of the queue); blame it when a second worker dies on it."""
        task.deaths.append(how)
        with self._lock:
            stopping = self._closed or self._broken
            retry = len(task.deaths) < _DEATHS_PER_VIDEO and not stopping
            if retry:
                self._queue.appendleft(task)
        if stopping and len(task.deaths) < _DEATHS_PER_VIDEO:
            _fail(task.future, Unavailable(f"a decode worker died while decoding {task.name} and the pool is "
                                           f"stopping", reason="shutting_down"))
            return
        if retry:
            log.warning("decode worker %s died (%s) while decoding %s; decoding it again on another worker",
                        pid, how, task.name)
            return
        log.warning("decode worker %s died (%s) while decoding %s, the video's %d. worker death; refusing it",
                    pid, how, task.name, len(task.deaths))
        _fail(task.future, InvalidVideo(
            f"the video decoder crashed while decoding {task.name}, {len(task.deaths)} times "
            f"({'; '.join(task.deaths)}); the file is probably corrupt or hostile", reason="decoder_crashed"))

    def _start_failed(self, w: _Worker, how: str) -> None:
        self._start_failures += 1
        log.warning("decode worker %s failed to start (%s), %d time(s) in a row", w.proc.pid, how,
                    self._start_failures)
        if self._start_failures < _MAX_START_FAILURES:
            return
        if self._hwaccel != "none":
            log.warning("decode workers keep dying at start-up with hwaccel=%s; using software decoding",
                        self._hwaccel)
            self._hwaccel = "none"
            self._start_failures = 0
            return
        reason = f"decode workers cannot start ({how}, {self._start_failures} times in a row)"
        with self._lock:
            self._broken = reason
            queued = list(self._queue)
            self._queue.clear()
        for task in queued:
            _fail(task.future, Unavailable(reason, reason="decoder_unavailable"))

    def _replace(self, w: _Worker, *, count_restart: bool) -> None:
        self._kill(w)
        i = self._workers.index(w)
        with self._lock:
            closed, broken = self._closed, self._broken
            if count_restart and not closed and not broken:
                self._restarts += 1
        if closed or broken:
            self._workers.pop(i)
        else:
            self._workers[i] = self._spawn()

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        for w in list(self._workers):
            if w.task is not None and now >= w.deadline:
                task = self._finish(w)
                assert task is not None
                log.warning("decoding %s exceeded %.3g s; killing worker %s", task.name, self._limits.timeout_s,
                            w.proc.pid)
                self._kill(w)
                _fail(task.future, InvalidVideo(
                    f"decoding {task.name} took longer than the server's {self._limits.timeout_s:g} s limit "
                    f"and was stopped", reason="decode_timeout"))
                self._replace(w, count_restart=True)
            elif not w.ready and not w.dead and now >= w.started_at + self._start_timeout_s:
                self._kill(w)
                self._start_failed(w, f"not ready after {self._start_timeout_s:g} s")
                self._replace(w, count_restart=True)

    def _kill(self, w: _Worker) -> None:
        if w.dead:
            return
        w.dead = True
        if w.proc.is_alive():
            w.proc.kill()
        w.proc.join(timeout=5)
        try:
            w.conn.close()
        except OSError:
            pass

    def _retire(self, w: _Worker) -> None:
        """Ask an idle worker to exit; kill it if it does not."""
        if w.dead:
            return
        try:
            w.conn.send(None)
        except (OSError, ValueError):
            pass
        w.proc.join(timeout=5)
        self._kill(w)

    def _shutdown_workers(self) -> None:
        for w in self._workers:
            task = self._finish(w)
            if task is not None:
                _fail(task.future, Unavailable(
                    f"the decode pool was closed while decoding {task.name}", reason="shutting_down"))
                self._kill(w)
            else:
                try:
                    w.conn.send(None)
                except (OSError, ValueError):
                    pass
        deadline = time.monotonic() + 5
        for w in self._workers:
            if not w.dead:
                w.proc.join(timeout=max(0.0, deadline - time.monotonic()))
                self._kill(w)
        self._workers = []
        # Anything still queued (only when the dispatcher died) must not hang.
        with self._lock:
            queued = list(self._queue)
            self._queue.clear()
        for task in queued:
            _fail(task.future, Unavailable("the decode pool stopped", reason="shutting_down"))


def _resolve(fut: Future, value: Any) -> None:
    try:
        fut.set_result(value)
    except Exception:  # noqa: BLE001 - cancelled meanwhile: nobody is waiting
        pass


def _fail(fut: Future, exc: BaseException) -> None:
    try:
        if not fut.done():
            fut.set_exception(exc)
    except Exception:  # noqa: BLE001 - cancelled meanwhile
        pass


__all__ = ["DecodePool"]
