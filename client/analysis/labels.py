"""Human labels in the layouts people have, as one table: key, dimension, mos, answer, generator.

- LOVE annotation JSON lines (DESIGN.md 2.1): `{"video", "conversations", "mos"}` per line. A line
  with `mos` is a score label; a line without one is a QA label whose answer is the last `gpt` turn
  (judged by "yes"/"no" substring, as LOVE's eval_qa.py does). The file does not name its dimension:
  `--dimension` does, else the file's stem.
- Video-Bench `human_anno/<dim>.json` (DESIGN.md 2.2): a list of `{"prompt_en", "videos": {model:
  path}, "human_anno": {model: [ratings]}}`; mos = mean of the ratings, generator = model, the
  dimension is the file's stem. A directory means every `*.json` in it.
- Plain CSV: `id`, `dimension`, `mos` (optional `answer`, `generator`).

`key` is what the label calls the video (an id or a path); evaluate.py matches it to result ids.
"""

from __future__ import annotations

import json
from pathlib import Path

LABEL_COLUMNS = ["key", "dimension", "mos", "answer", "generator"]
# Video-Bench's file name for what its suite calls overall_consistency (DESIGN.md 2.2).
VIDEOBENCH_ALIASES = {"video-text consistency": "overall_consistency"}
FORMATS = ("love", "videobench", "csv")


class LabelsError(ValueError):
    """The labels cannot be read; the message says what was expected."""


def yes_no(text) -> str | None:
    """LOVE's rule: 'yes' anywhere -> Yes, else 'no' anywhere -> No, else the text unjudged (None)."""
    if text is None:
        return None
    t = str(text).lower()
    return "Yes" if "yes" in t else "No" if "no" in t else None


def detect(path: Path) -> str:
    if path.is_dir():
        return "videobench"
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "love"
    if suffix == ".json":
        head = path.read_text()[:4096].lstrip()
        return "videobench" if head.startswith("[") else "love"
    raise LabelsError(f"cannot tell the label format of {path}: use --labels-format {'|'.join(FORMATS)}")


def read_labels(path: str | Path, fmt: str | None = None, dimension: str | None = None):
    import pandas as pd

    p = Path(path)
    if not p.exists():
        raise LabelsError(f"no labels at {p}")
    fmt = fmt or detect(p)
    if fmt == "love":
        rows = _love(p, dimension or p.stem)
    elif fmt == "videobench":
        files = sorted(p.glob("*.json")) if p.is_dir() else [p]
        if not files:
            raise LabelsError(f"{p} has no <dimension>.json files")
        rows = [r for f in files for r in _videobench(f, dimension if len(files) == 1 else None)]
    elif fmt == "csv":
        rows = _csv(p, dimension)
    else:
        raise LabelsError(f"unknown label format {fmt!r} (one of {', '.join(FORMATS)})")
    df = pd.DataFrame(rows, columns=LABEL_COLUMNS)
    if df.empty:
        raise LabelsError(f"{p} holds no labels")
    df["mos"] = pd.to_numeric(df["mos"], errors="coerce")
    dup = df.duplicated(["key", "dimension"], keep=False)
    if dup.any():
        sample = df[dup].head(3)[["key", "dimension"]].values.tolist()
        raise LabelsError(f"{int(dup.sum())} labels repeat a (video, dimension), e.g. {sample}")
    return df


def _love(p: Path, dimension: str) -> list[dict]:
    rows = []
    for n, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            raise LabelsError(f"{p}:{n}: not JSON: {e}") from None
        if "video" not in d:
            raise LabelsError(f"{p}:{n}: no `video` field (LOVE annotation lines have video, conversations, mos)")
        answer = None
        if d.get("mos") is None:
            turns = [t for t in d.get("conversations", []) if t.get("from") == "gpt"]
            answer = yes_no(turns[-1].get("value")) if turns else None
        rows.append({"key": str(d["video"]), "dimension": dimension, "mos": d.get("mos"), "answer": answer,
                     "generator": d.get("model") or d.get("generator")})
    return rows


def _videobench(p: Path, dimension: str | None) -> list[dict]:
    try:
        entries = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise LabelsError(f"{p}: not JSON: {e}") from None
    if not isinstance(entries, list) or (entries and "human_anno" not in entries[0]):
        raise LabelsError(f"{p}: not a Video-Bench human_anno file (a list of prompt_en, videos, human_anno)")
    dim = dimension or VIDEOBENCH_ALIASES.get(p.stem, p.stem)
    rows = []
    for e in entries:
        for model, ratings in e["human_anno"].items():
            video = e.get("videos", {}).get(model)
            values = [float(r) for r in ratings if isinstance(r, (int, float))]
            if video is None or not values:
                continue
            rows.append({"key": video, "dimension": dim, "mos": sum(values) / len(values), "answer": None,
                         "generator": model})
    return rows


def _csv(p: Path, dimension: str | None) -> list[dict]:
    import pandas as pd

    df = pd.read_csv(p, dtype={"id": str, "dimension": str, "answer": str, "generator": str})
    missing = [c for c in ("id", "mos") if c not in df.columns]
    if "dimension" not in df.columns and not dimension:
        missing.append("dimension")
    if missing and not (missing == ["mos"] and "answer" in df.columns):
        raise LabelsError(f"{p}: missing column(s) {', '.join(missing)} (expected id, dimension, mos)")
    return [{"key": r["id"], "dimension": dimension or r["dimension"], "mos": r.get("mos"),
             "answer": yes_no(r["answer"]) if isinstance(r.get("answer"), str) else None,
             "generator": r.get("generator") if isinstance(r.get("generator"), str) else None}
            for r in df.to_dict("records")]
