"""The manifest: which videos to score, in CSV, JSON lines or Parquet, from a path or a URI.

Columns:
  path        required; a local path (relative paths are taken from the manifest's folder) or a URI
  id          optional; default: the path as written in the manifest
  prompt      optional; the generation prompt (dimensions that need one are skipped without it)
  generator   optional; the model that made the video (the leaderboard groups by it)
  question    optional; a per-dimension input, passed to the dimensions that take it
  DIM.NAME    optional; input NAME for dimension DIM only (e.g. `love_qa.question`)

`normalize` turns any such table into the canonical columns (id, path, prompt, generator, inputs as
JSON); it is the same function the local reader and the Ray reader apply.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import pyarrow as pa
import pyarrow.compute as pc

from vidjudge.client.rescore import sources
from vidjudge.client.rescore.types import Item, JudgeInfo

KNOWN = ("path", "id", "prompt", "generator")
DEFAULT_INPUTS = ("question",)
FORMATS = ("csv", "jsonl", "parquet")


class ManifestError(ValueError):
    """The manifest cannot be used; the message says what to fix."""


def detect_format(path: str) -> str:
    name = path.lower()
    for suffix in (".gz", ".bz2", ".zst", ".lz4"):
        name = name.removesuffix(suffix)
    if name.endswith((".csv", ".tsv")):
        return "csv"
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    raise ManifestError(f"cannot tell the format of {path} from its name: use .csv, .jsonl or .parquet, "
                        "or pass --format")


def read_raw(path: str, fmt: str | None = None) -> pa.Table:
    """The manifest file as an Arrow table, every column as written."""
    import pyarrow.csv as pcsv
    import pyarrow.json as pjson
    import pyarrow.parquet as pq

    fmt = fmt or detect_format(path)
    fs, inner = sources.filesystem(path)
    try:
        if fmt == "parquet":
            return pq.read_table(inner, filesystem=fs)
        with fs.open_input_stream(inner) as f:  # compression detected from the extension
            if fmt == "csv":
                delimiter = "\t" if path.lower().split(".gz")[0].endswith(".tsv") else ","
                return pcsv.read_csv(f, parse_options=pcsv.ParseOptions(delimiter=delimiter),
                                     convert_options=pcsv.ConvertOptions(strings_can_be_null=True))
            return pjson.read_json(f)
    except FileNotFoundError:
        raise ManifestError(f"no such manifest: {path}") from None
    except (pa.ArrowInvalid, OSError) as e:
        raise ManifestError(f"cannot read {path} as {fmt}: {e}") from None


def input_columns(names: list[str], plain_inputs: tuple[str, ...] = DEFAULT_INPUTS) -> list[str]:
    return [n for n in names if n not in KNOWN and (n in plain_inputs or "." in n)]


def _strings(table: pa.Table, name: str) -> pa.Array:
    col = table.column(name)
    if col.type != pa.string():
        col = pc.cast(col, pa.string())
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def normalize(table: pa.Table, base: str | None = None, plain_inputs: tuple[str, ...] = DEFAULT_INPUTS) -> pa.Table:
    """Canonical columns: id, path (resolved against `base`), prompt, generator, inputs (JSON object)."""
    if "path" not in table.column_names:
        raise ManifestError(f"the manifest has no `path` column (columns: {', '.join(table.column_names)})")
    raw_path = _strings(table, "path").to_pylist()
    missing = [i for i, p in enumerate(raw_path) if not p]
    if missing:
        raise ManifestError(f"manifest rows {', '.join(map(str, missing[:10]))} have no path")
    ids = _strings(table, "id").to_pylist() if "id" in table.column_names else [None] * len(raw_path)
    ids = [i if i not in (None, "") else p for i, p in zip(ids, raw_path)]

    def optional(name: str) -> list[str]:
        if name not in table.column_names:
            return [""] * len(raw_path)
        return [v or "" for v in _strings(table, name).to_pylist()]

    cols = input_columns(table.column_names, plain_inputs)
    values = {c: _strings(table, c).to_pylist() for c in cols}
    inputs = [json.dumps({c: values[c][i] for c in cols if values[c][i] not in (None, "")}, sort_keys=True)
              for i in range(len(raw_path))]
    return pa.table({"id": ids, "path": [sources.resolve(p, base) for p in raw_path],
                     "prompt": optional("prompt"), "generator": optional("generator"), "inputs": inputs},
                    schema=pa.schema([("id", pa.string()), ("path", pa.string()), ("prompt", pa.string()),
                                      ("generator", pa.string()), ("inputs", pa.string())]))


def read_manifest(path: str, fmt: str | None = None, plain_inputs: tuple[str, ...] = DEFAULT_INPUTS) -> pa.Table:
    table = normalize(read_raw(path, fmt), sources.parent(path), plain_inputs)
    check_unique_ids(table.column("id").to_pylist())
    return table


def check_unique_ids(ids: list[str]) -> None:
    """Each id is one video: a repeated id would make two rows for one (id, dimension)."""
    seen, dup = set(), []
    for i in ids:
        if i in seen:
            dup.append(i)
        seen.add(i)
    if dup:
        raise ManifestError(f"{len(dup)} id(s) appear more than once in the manifest, e.g. {', '.join(dup[:3])}: "
                            "give each video its own `id`")


def dimension_inputs(flat: Mapping[str, str], dims: tuple[str, ...], judge: JudgeInfo) -> dict[str, dict[str, str]]:
    """Spread the manifest's input columns over the dimensions: DIM.NAME to DIM only, a plain NAME to
    every dimension that takes it."""
    out: dict[str, dict[str, str]] = {}
    for col, value in flat.items():
        if "." in col:
            dim, name = col.rsplit(".", 1)  # dimension names may hold dots (love.qa.question)
            targets = [dim] if dim in dims else []
        else:
            name = col
            targets = [d for d in dims if (spec := judge.dimensions.get(d)) is not None
                       and name in spec.inputs]
        for d in targets:
            out.setdefault(d, {})[name] = value
    return out


def plan(table: pa.Table, judge: JudgeInfo, requested: tuple[str, ...],
         committed: set[tuple[str, str]]) -> tuple[list[Item], int]:
    """Items with work left, and how many manifest rows had none (every dimension committed)."""
    items, skipped = [], 0
    cols = {n: table.column(n).to_pylist() for n in ("id", "path", "prompt", "generator", "inputs")}
    for i in range(table.num_rows):
        vid, prompt = cols["id"][i], cols["prompt"][i]
        flat = json.loads(cols["inputs"][i]) if cols["inputs"][i] else {}
        wanted = judge.wanted(requested, bool(prompt), dimension_inputs(flat, tuple(judge.dimensions), judge))
        left = tuple(d for d in wanted if (vid, d) not in committed)
        if not left:
            skipped += 1
            continue
        items.append(Item(id=vid, path=cols["path"][i], prompt=prompt, generator=cols["generator"][i],
                          dimensions=left, inputs=dimension_inputs(flat, left, judge)))
    return items, skipped

