"""`vidjudge suite SUITE.json VIDEOS --out DIR`: a Video-Bench-style prompt suite, scored per generator.

Inputs in Video-Bench's layouts (DESIGN.md 2.2): the suite is a JSON list of `{"prompt", "dimension":
[tags]}` (its `VideoBench_full.json`), and the videos are `<VIDEOS>/<generator>/<prompt>_<seed>.mp4`.
For every prompt and seed, the generators' videos go to the server together (ScoreGroup), so static
quality sees the others' first frames as references and dynamic quality judges them all in one call.

Outputs in its results layout: `results_<dim>_score_results.json` = `{"average_scores": {generator:
mean}, "scores": {i: {"prompt_en": ..., generator: score | "Error"}}}` (one `i` per prompt and seed),
plus `leaderboard.md` / `leaderboard.csv` (mean per generator and dimension) and a table on screen.
`--mode fast` scores the `<dim>.fast` dimensions (one forward each) instead of the faithful chains.
"""

from __future__ import annotations

import asyncio
import csv
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".avi")


@dataclass(frozen=True)
class SuiteGroup:
    index: int
    prompt: str
    seed: int
    dimensions: tuple[str, ...]
    videos: tuple[tuple[str, Path], ...]  # (generator, path)


def find_video(folder: Path, prompt: str, seed: int) -> Path | None:
    for suffix in VIDEO_SUFFIXES:
        p = folder / f"{prompt}_{seed}{suffix}"
        if p.is_file():
            return p
    return None


def plan(suite: list[dict], videos: Path, seeds: tuple[int, ...], only: tuple[str, ...] = ()) -> list[SuiteGroup]:
    generators = sorted(p for p in videos.iterdir() if p.is_dir())
    if not generators:
        raise ValueError(f"{videos} holds no generator folders (<videos>/<generator>/<prompt>_<seed>.mp4)")
    groups = []
    for entry in suite:
        prompt, dims = entry["prompt"], tuple(d for d in entry.get("dimension", []) if not only or d in only)
        if not dims:
            continue
        for seed in seeds:
            found = tuple((g.name, v) for g in generators if (v := find_video(g, prompt, seed)) is not None)
            if found:
                groups.append(SuiteGroup(len(groups), prompt, seed, dims, found))
    return groups


async def score_all(target: str, groups: list[SuiteGroup], *, fast: bool, concurrency: int, model: str = "",
                    progress=None) -> dict[str, dict]:
    """Per dimension, Video-Bench's results document."""
    from vidjudge.client import AsyncJudgeClient

    results: dict[str, dict] = {}
    slots = asyncio.Semaphore(concurrency)

    async def one(client, g: SuiteGroup) -> None:
        names = [f"{d}.fast" if fast else d for d in g.dimensions]
        async with slots:
            items = await client.score_group([(gen, gen, p) for gen, p in g.videos], prompt=g.prompt,
                                             dimensions=names, model=model)
        for dim, name in zip(g.dimensions, names):
            row = results.setdefault(dim, {"scores": {}})["scores"].setdefault(str(g.index), {"prompt_en": g.prompt})
            for it in items:
                s = it.result.scores.get(name) if it.ok else None
                row[it.generator] = s.score if s is not None and s.ok else "Error"
        if progress:
            progress()

    async with AsyncJudgeClient(target, timeout=3600) as client:
        await asyncio.gather(*(one(client, g) for g in groups))
    for doc in results.values():
        per: dict[str, list[float]] = {}
        for row in doc["scores"].values():
            for gen, v in row.items():
                if gen != "prompt_en" and v != "Error":
                    per.setdefault(gen, []).append(float(v))
        doc["average_scores"] = {gen: statistics.fmean(v) for gen, v in sorted(per.items())}
    return results


def write_outputs(out: Path, results: dict[str, dict]) -> list[dict]:
    """The per-dimension JSON files and the leaderboard; returns the leaderboard rows."""
    out.mkdir(parents=True, exist_ok=True)
    for dim, doc in results.items():
        ordered = {"average_scores": doc["average_scores"],
                   "scores": dict(sorted(doc["scores"].items(), key=lambda kv: int(kv[0])))}
        (out / f"results_{dim}_score_results.json").write_text(json.dumps(ordered, indent=2) + "\n")
    dims = sorted(results)
    gens = sorted({g for doc in results.values() for g in doc["average_scores"]})
    rows = [{"generator": g, **{d: results[d]["average_scores"].get(g) for d in dims}} for g in gens]
    with open(out / "leaderboard.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["generator", *dims])
        w.writeheader()
        w.writerows(rows)
    md = ["| generator | " + " | ".join(dims) + " |", "| --- |" + " ---: |" * len(dims)]
    md += ["| " + r["generator"] + " | " + " | ".join("-" if r[d] is None else f"{r[d]:.3f}" for d in dims) + " |"
           for r in rows]
    (out / "leaderboard.md").write_text("\n".join(md) + "\n")
    return rows
