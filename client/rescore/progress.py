"""The progress bar (rich; only on a terminal) and the end-of-run summary (a table, or JSON)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text


@dataclass
class Summary:
    """What a run did. Counts of videos (manifest rows) unless named rows."""

    manifest_videos: int = 0
    skipped_done: int = 0  # every dimension already committed by an earlier run
    to_score: int = 0
    scored: int = 0  # committed this run (OK or failed)
    deduplicated: int = 0  # of `scored`: the result of an identical video was reused
    calls: int = 0  # calls to the judge
    retries: int = 0  # calls a server refused (RESOURCE_EXHAUSTED / UNAVAILABLE) and that were sent again
    left_for_next_run: int = 0  # transient failures (server full or away): not committed, redone next time
    rows_ok: int = 0
    rows_failed: Counter = field(default_factory=Counter)  # "STATUS/reason" -> rows
    transient: Counter = field(default_factory=Counter)  # "STATUS/reason" -> videos left
    parts: int = 0
    rows_committed: int = 0
    interrupted: bool = False
    mode: str = ""
    bundle: str = ""
    bundle_sha256: str = ""
    out: str = ""
    elapsed_s: float = 0.0  # the whole run, model loading included
    scoring_s: float = 0.0  # from the first video started to the last one done
    recovered: dict = field(default_factory=dict)

    @property
    def videos_per_s(self) -> float:
        return self.scored / self.scoring_s if self.scoring_s > 0 else 0.0

    def to_dict(self) -> dict:
        return {"out": self.out, "mode": self.mode, "bundle": self.bundle, "bundle_sha256": self.bundle_sha256,
                "manifest_videos": self.manifest_videos, "skipped_done": self.skipped_done,
                "to_score": self.to_score, "scored": self.scored, "deduplicated": self.deduplicated,
                "calls": self.calls, "retries": self.retries, "left_for_next_run": self.left_for_next_run,
                "rows_ok": self.rows_ok,
                "rows_failed": sum(self.rows_failed.values()), "failed_by_reason": dict(self.rows_failed),
                "transient_by_reason": dict(self.transient), "parts_committed": self.parts,
                "rows_committed": self.rows_committed, "interrupted": self.interrupted,
                "elapsed_s": round(self.elapsed_s, 3), "scoring_s": round(self.scoring_s, 3),
                "videos_per_s": round(self.videos_per_s, 3),
                "recovered": self.recovered}


class _Rate(ProgressColumn):
    """videos/s over the run so far (rich's own speed column is per second of any unit, unlabelled)."""

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.1f} videos/s" if speed else "- videos/s", style="progress.data.speed")


class Reporter:
    """Advances the bar as videos are committed or left; silent when stderr is not a terminal."""

    def __init__(self, console: Console, enabled: bool):
        self.console = console
        self.enabled = enabled and console.is_terminal
        self._progress: Progress | None = None
        self._task = None
        self.started = time.monotonic()

    def start(self, total: int, description: str = "rescoring") -> None:
        self.started = time.monotonic()
        if not self.enabled:
            return
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _Rate(),
                                  TextColumn("ETA"), TimeRemainingColumn(), console=self.console, transient=True)
        self._progress.start()
        self._task = self._progress.add_task(description, total=total)

    def advance(self, n: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def describe(self, text: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=text)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def print_summary(s: Summary, console: Console) -> None:
    t = Table(title=f"rescore: {s.out}", show_header=False, title_justify="left")
    t.add_column("what")
    t.add_column("count", justify="right")
    t.add_row("judge", f"{s.bundle} ({s.bundle_sha256[:12]}), {s.mode}")
    t.add_row("videos in the manifest", str(s.manifest_videos))
    t.add_row("skipped, already done", str(s.skipped_done))
    t.add_row("done this run", f"{s.scored} ({s.deduplicated} reused from identical videos)")
    if s.retries:
        t.add_row("calls refused by a full server, retried", str(s.retries))
    t.add_row("rows OK", str(s.rows_ok))
    t.add_row("rows failed", str(sum(s.rows_failed.values())))
    for reason, n in sorted(s.rows_failed.items(), key=lambda kv: -kv[1]):
        t.add_row(f"  {reason}", str(n))
    if s.left_for_next_run:
        t.add_row("[yellow]left for the next run[/yellow]", str(s.left_for_next_run))
        for reason, n in sorted(s.transient.items(), key=lambda kv: -kv[1]):
            t.add_row(f"  {reason}", str(n))
    t.add_row("parts committed", f"{s.parts} ({s.rows_committed} rows)")
    t.add_row("time", f"{s.elapsed_s:.1f} s ({s.scoring_s:.1f} s scoring), {s.videos_per_s:.2f} videos/s")
    if s.interrupted:
        t.add_row("[yellow]interrupted[/yellow]", "run the same command to continue")
    console.print(t)
