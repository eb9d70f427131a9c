"""Dimensions: what a bundle can judge, declared in a TOML file users may edit.

A dimension is a question, an answer prefix, level words (best first) and a
scale. Level-token scoring (Q-Align, DESIGN.md 2.3): the prompt ends right
before the level word; the next-token log-probabilities of the level words are
softmaxed over those words only and the score is their expected value on the
scale, best level = scale max, worst = scale min, evenly spaced between.

Example (`dimensions.toml` in a bundle):

    [[dimension]]
    name = "visual_quality"
    description = "Sharpness, noise, artefacts and smoothness."
    question = "How is the visual quality of this video?"
    answer_prefix = "The quality of the video is"
    levels = ["excellent", "good", "fair", "poor", "bad"]
    scale = [1.0, 5.0]

`{prompt}` in the question is replaced by the request's generation prompt and
makes the dimension require one. Each level word, preceded by `level_prefix`
(default " "), must be a single token of the bundle's tokenizer; the loader
checks it and records the ids.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PROMPT_FIELD = "{prompt}"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
HEADS = ("level_token",)


class DimensionFileError(ValueError):
    pass


@dataclass(frozen=True)
class Dimension:
    name: str
    question: str
    answer_prefix: str
    levels: tuple[str, ...]  # best first
    level_token_ids: tuple[int, ...]
    scale_min: float = 1.0
    scale_max: float = 5.0
    description: str = ""
    head: str = "level_token"

    @property
    def requires_prompt(self) -> bool:
        return PROMPT_FIELD in self.question

    @property
    def level_values(self) -> np.ndarray:
        """Scale value of each level, best first: scale_max ... scale_min."""
        return np.linspace(self.scale_max, self.scale_min, len(self.levels))

    def score(self, level_logprobs: np.ndarray) -> tuple[float, np.ndarray]:
        """Expected value and level probabilities from the level words' log-probs (or logits)."""
        x = np.asarray(level_logprobs, dtype=np.float64)
        p = np.exp(x - x.max())
        p /= p.sum()
        return float(p @ self.level_values), p


def _one_token(tokenizer, text: str) -> int | None:
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    return ids[0] if len(ids) == 1 else None


def parse_dimensions(text: str, tokenizer, source: str = "dimensions.toml") -> dict[str, Dimension]:
    """Parse and check a dimension file against the bundle's tokenizer (a `tokenizers.Tokenizer`)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise DimensionFileError(f"{source}: not valid TOML: {e}") from e
    entries = doc.get("dimension")
    if not isinstance(entries, list) or not entries:
        raise DimensionFileError(f"{source}: expected one or more [[dimension]] tables")
    out: dict[str, Dimension] = {}
    for i, d in enumerate(entries):
        where = f"{source}: dimension #{i + 1}"
        unknown = set(d) - {"name", "description", "question", "answer_prefix", "levels", "scale",
                            "head", "level_prefix", "level_token_ids"}
        if unknown:
            raise DimensionFileError(f"{where}: unknown keys {sorted(unknown)}")
        name = d.get("name", "")
        if not isinstance(name, str) or not _NAME.match(name):
            raise DimensionFileError(f"{where}: name must be lower_snake_case, got {name!r}")
        where = f"{source}: dimension '{name}'"
        if name in out:
            raise DimensionFileError(f"{where}: defined twice")
        for key in ("question", "answer_prefix"):
            if not isinstance(d.get(key), str) or not d[key].strip():
                raise DimensionFileError(f"{where}: '{key}' must be a non-empty string")
        levels = d.get("levels")
        if not isinstance(levels, list) or len(levels) < 2 or not all(isinstance(w, str) and w for w in levels):
            raise DimensionFileError(f"{where}: 'levels' must list at least two words, best first")
        if len(set(levels)) != len(levels):
            raise DimensionFileError(f"{where}: 'levels' has duplicates")
        scale = d.get("scale", [1.0, float(len(levels))])
        if not (isinstance(scale, list) and len(scale) == 2 and all(isinstance(v, (int, float)) for v in scale)
                and scale[0] < scale[1]):
            raise DimensionFileError(f"{where}: 'scale' must be [min, max] with min < max")
        head = d.get("head", "level_token")
        if head not in HEADS:
            raise DimensionFileError(f"{where}: head '{head}' is not one of {HEADS}")
        prefix = d.get("level_prefix", " ")
        ids = []
        for w in levels:
            tid = _one_token(tokenizer, prefix + w)
            if tid is None:
                raise DimensionFileError(
                    f"{where}: level word {prefix + w!r} is not a single token of this bundle's tokenizer; "
                    "pick another word or change level_prefix"
                )
            ids.append(tid)
        recorded = d.get("level_token_ids")
        if recorded is not None and list(recorded) != ids:
            raise DimensionFileError(
                f"{where}: level_token_ids {recorded} do not match the tokenizer ({ids}); "
                "the file was written for another tokenizer"
            )
        out[name] = Dimension(
            name=name, question=d["question"], answer_prefix=d["answer_prefix"], levels=tuple(levels),
            level_token_ids=tuple(ids), scale_min=float(scale[0]), scale_max=float(scale[1]),
            description=d.get("description", ""), head=head,
        )
    return out


def load_dimensions(path: Path, tokenizer) -> dict[str, Dimension]:
    return parse_dimensions(path.read_text(), tokenizer, source=str(path))


def render_dimensions(dims: list[Dimension]) -> str:
    """Write dimensions back as TOML (used by the exporter), with their token ids recorded."""
    def q(s: str) -> str:
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

    blocks = []
    for d in dims:
        blocks.append("\n".join([
            "[[dimension]]",
            f"name = {q(d.name)}",
            f"description = {q(d.description)}",
            f"question = {q(d.question)}",
            f"answer_prefix = {q(d.answer_prefix)}",
            "levels = [" + ", ".join(q(w) for w in d.levels) + "]",
            f"scale = [{d.scale_min}, {d.scale_max}]",
            f"head = {q(d.head)}",
            "level_token_ids = [" + ", ".join(str(i) for i in d.level_token_ids) + "]",
        ]))
    header = ("# Dimensions this bundle judges. Edit freely: add a [[dimension]] table with a question,\n"
              "# answer prefix, level words (best first, each one token) and a scale; restart the server.\n"
              "# level_token_ids are checked against the tokenizer; leave them out for new dimensions.\n\n")
    return header + "\n\n".join(blocks) + "\n"


# The two built-in dimensions every exported bundle starts with.
BUILTIN = [
    dict(name="visual_quality",
         description="Overall visual quality: sharpness, noise, compression artefacts, flicker, motion smoothness.",
         question="How is the visual quality of this video?",
         answer_prefix="The quality of the video is",
         levels=["excellent", "good", "fair", "poor", "bad"], scale=[1.0, 5.0]),
    dict(name="text_alignment",
         description="How well the video shows what its generation prompt asks for.",
         question="How well does this video match its prompt? Prompt: {prompt}",
         answer_prefix="The alignment of the video with the prompt is",
         levels=["excellent", "good", "fair", "poor", "bad"], scale=[1.0, 5.0]),
]
