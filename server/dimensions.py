"""Dimensions: what a bundle can judge, declared in a TOML file users may edit.

A dimension is a question, where the answer starts, and a **head** that turns one
language-model operation into a result (heads.py):

- `level_token` (Q-Align, DESIGN.md 2.3): the prompt ends right before the level
  word; the next-token log-probabilities of the level words are softmaxed over
  those words only; the score is their expected value on the scale (best level =
  scale max, worst = scale min, evenly spaced between).
- `yes_no`: the same read of two words ("yes", "no"); the answer is the likelier
  one, the score is P(yes) on [0, 1].
- `regression`: an MLP (weights in the bundle, named in the manifest's `heads`) on
  the final-norm hidden state of the prompt's last token, times `output_scale`.
- `generate`: greedy text, parsed by `score_pattern` (a regular expression whose
  first group is the score); the text is returned as the rationale. Output that
  does not parse is asked again once with `retry_hint` appended to the question.

Example (`dimensions.toml` in a bundle):

    [[dimension]]
    name = "visual_quality"
    description = "Sharpness, noise, artefacts and smoothness."
    question = "How is the visual quality of this video?"
    answer_prefix = "The quality of the video is"
    levels = ["excellent", "good", "fair", "poor", "bad"]
    scale = [1.0, 5.0]

    [[dimension]]
    name = "qa"
    head = "yes_no"
    question = "{question} Answer yes or no."

Placeholders in the question: `{prompt}` is the request's generation prompt;
`{question}` is a per-dimension input the request carries (the QA question).
A dimension with a placeholder requires that input. Each level word, preceded
by `level_prefix`, must be a single token of the bundle's tokenizer; the loader
checks it and records the ids. `adapter` names a LoRA adapter of the bundle.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

PROMPT_FIELD = "{prompt}"
# Inputs a request can carry per dimension (proto: DimensionInput's fields).
REQUEST_INPUTS = ("question",)
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
_NAME = r"^[a-z][a-z0-9_.]{0,63}$"
HEADS = ("level_token", "yes_no", "regression", "generate", "chain", "group_chain")

Encode = Callable[[str], list[int]]  # text -> token ids, no special tokens added


class DimensionFileError(ValueError):
    pass


class _Dimension(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME)
    description: str = ""
    question: str = Field(min_length=1)
    answer_prefix: str = ""
    scale: tuple[float, float] = (1.0, 5.0)
    adapter: str | None = None

    @field_validator("scale")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not v[0] < v[1]:
            raise ValueError("scale must be [min, max] with min < max")
        return v

    @field_validator("question")
    @classmethod
    def _known_placeholders(cls, v: str) -> str:
        unknown = sorted({m for m in _PLACEHOLDER.findall(v) if m != "prompt" and m not in REQUEST_INPUTS})
        if unknown:
            raise ValueError(f"unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)} in the question "
                             f"(known: {{prompt}}, {', '.join('{' + i + '}' for i in REQUEST_INPUTS)})")
        return v

    @property
    def scale_min(self) -> float:
        return self.scale[0]

    @property
    def scale_max(self) -> float:
        return self.scale[1]

    @property
    def requires_prompt(self) -> bool:
        return PROMPT_FIELD in self.question

    @property
    def level_names(self) -> tuple[str, ...]:
        """The words whose probabilities the head reads (level_token, yes_no); none for the others."""
        return ()

    @property
    def inputs(self) -> tuple[str, ...]:
        """Per-dimension request inputs this dimension needs (e.g. ("question",))."""
        return tuple(i for i in REQUEST_INPUTS if "{" + i + "}" in self.question)

    def render_question(self, prompt: str, inputs: dict[str, str] | None = None) -> str:
        # str.replace, not str.format: user prompts and questions may contain braces.
        q = self.question.replace(PROMPT_FIELD, prompt or "")
        for key, value in (inputs or {}).items():
            if key in REQUEST_INPUTS:
                q = q.replace("{" + key + "}", value)
        return q

    def resolve(self, encode: Encode, where: str) -> "_Dimension":
        """Check what depends on the tokenizer; returns the dimension with token ids recorded."""
        return self


class _WordsDimension(_Dimension):
    """Heads that read the next-token log-probabilities of a few words."""

    levels: tuple[str, ...]
    level_prefix: str = " "
    level_token_ids: tuple[int, ...] | None = None

    @field_validator("levels")
    @classmethod
    def _levels(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if len(v) < 2 or not all(v):
            raise ValueError("levels must list at least two words, best first")
        if len(set(v)) != len(v):
            raise ValueError("levels has duplicates")
        return v

    def resolve(self, encode: Encode, where: str) -> "_WordsDimension":
        ids = []
        for w in self.levels:
            tokens = encode(self.level_prefix + w)
            if len(tokens) != 1:
                raise DimensionFileError(
                    f"{where}: level word {self.level_prefix + w!r} is not a single token of this bundle's "
                    "tokenizer; pick another word or change level_prefix")
            ids.append(tokens[0])
        if self.level_token_ids is not None and list(self.level_token_ids) != ids:
            raise DimensionFileError(f"{where}: level_token_ids {list(self.level_token_ids)} do not match the "
                                     f"tokenizer ({ids}); the file was written for another tokenizer")
        return self.model_copy(update={"level_token_ids": tuple(ids)})

    @property
    def level_names(self) -> tuple[str, ...]:
        return self.levels

    @property
    def level_values(self) -> np.ndarray:
        """Scale value of each level, best first: scale_max ... scale_min."""
        return np.linspace(self.scale_max, self.scale_min, len(self.levels))


class LevelTokenDimension(_WordsDimension):
    head: Literal["level_token"] = "level_token"
    answer_prefix: str = Field(min_length=1)
    levels: tuple[str, ...] = ("excellent", "good", "fair", "poor", "bad")

    @model_validator(mode="before")
    @classmethod
    def _default_scale(cls, data: Any) -> Any:
        # Without a scale, the levels count 1 (worst) .. n (best).
        if isinstance(data, dict) and "scale" not in data and isinstance(data.get("levels"), list):
            data = {**data, "scale": [1.0, float(len(data["levels"]))]}
        return data

    def score(self, level_logprobs: np.ndarray) -> tuple[float, np.ndarray]:
        """Expected value and level probabilities from the level words' log-probs (or logits)."""
        x = np.asarray(level_logprobs, dtype=np.float64)
        p = np.exp(x - x.max())
        p /= p.sum()
        return float(p @ self.level_values), p


class YesNoDimension(_WordsDimension):
    head: Literal["yes_no"] = "yes_no"
    levels: tuple[str, ...] = ("yes", "no")  # the positive word first
    scale: tuple[float, float] = (0.0, 1.0)

    @model_validator(mode="after")
    def _two_words(self) -> "YesNoDimension":
        if len(self.levels) != 2:
            raise ValueError("a yes_no dimension has exactly two levels: the positive word first")
        return self


class RegressionDimension(_Dimension):
    head: Literal["regression"] = "regression"
    weights: str = Field(min_length=1, description="the manifest's `heads` entry holding the MLP")
    output_scale: float = 1.0  # score = mlp(hidden) * output_scale (LOVE: MOS 0-100 = 100 x head output)
    scale: tuple[float, float] = (0.0, 1.0)


class GenerateDimension(_Dimension):
    head: Literal["generate"] = "generate"
    score_pattern: str = Field(min_length=1)
    max_tokens: int = Field(256, ge=1, le=8192)
    stop: tuple[str, ...] = ()
    retry_hint: str = " Finish with the result line in exactly the format asked for."

    @field_validator("score_pattern")
    @classmethod
    def _one_group(cls, v: str) -> str:
        try:
            groups = re.compile(v).groups
        except re.error as e:
            raise ValueError(f"score_pattern is not a valid regular expression: {e}") from None
        if groups < 1:
            raise ValueError("score_pattern needs a group capturing the score, e.g. 'Score: ([1-5])'")
        return v

    def parse(self, text: str) -> float | None:
        """The score the text states (last match wins), or None when it states none on the scale."""
        matches = list(re.finditer(self.score_pattern, text))
        for m in reversed(matches):
            try:
                value = float(m.group(1))
            except (TypeError, ValueError):
                continue
            if self.scale_min <= value <= self.scale_max:
                return value
        return None


class ChainStep(BaseModel):
    """One call of a chain: a chat turn (system, user parts, the answer's start) answered greedily.

    User parts are texts, where `{name}` is the request's `prompt`, a `texts` entry of the dimension, or
    an earlier step's kept answer, or one of these placeholders standing alone as a part:
    `{frames}` (the judged video's frames), `{first_frame}` (its first frame), `{references}` (the first
    frame of every other video of the group, each labelled "This example is from model K"),
    `{all_videos}` (every video of the group, each labelled "N frames from GENERATOR")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    system: str | None = None
    user: tuple[str, ...] = Field(min_length=1)
    answer_prefix: str = ""
    keep: str | None = Field(None, pattern=r"^[a-z][a-z0-9_]*$")  # keep the answer under this name
    extract: str | None = None  # a regex whose group 1 is kept instead of the whole answer (when it matches)
    max_tokens: int = Field(512, ge=1, le=8192)


_PARSERS = ("last_match", "first_match", "evaluation_result", "scores_before_because")


class ChainDimension(_Dimension):
    head: Literal["chain"] = "chain"
    question: str = ""  # unused by chains: the steps hold the text
    texts: dict[str, str] = Field(default_factory=dict)
    step: tuple[ChainStep, ...] = Field(min_length=1)
    parser: Literal["last_match", "first_match", "evaluation_result"] = "last_match"
    score_pattern: str = r"([0-9]+)"
    retry_hint: str = "\nEnd with the result line in exactly the format asked for."

    @property
    def requires_prompt(self) -> bool:
        texts = [t for st in self.step for t in (*st.user, st.system or "", st.answer_prefix)] + list(self.texts.values())
        return any(PROMPT_FIELD in t for t in texts)

    def parse(self, text: str) -> float | None:
        from vidjudge.server.parsers import parse_score

        return parse_score(self.parser, text, self.score_pattern, self.scale_min, self.scale_max)


class GroupChainDimension(ChainDimension):
    """One chain for a whole group of videos (Video-Bench's dynamic quality): the last answer holds one score
    per video, in the order the videos were shown."""

    head: Literal["group_chain"] = "group_chain"  # type: ignore[assignment]
    parser: Literal["scores_before_because"] = "scores_before_because"  # type: ignore[assignment]

    def parse_all(self, text: str) -> list[float]:
        from vidjudge.server.parsers import scores_before_because

        return scores_before_because(text)


Dimension = Annotated[Union[LevelTokenDimension, YesNoDimension, RegressionDimension, GenerateDimension,
                            ChainDimension, GroupChainDimension],
                      Field(discriminator="head")]
_ADAPTER: TypeAdapter = TypeAdapter(Dimension)


def parse_dimensions(text: str, encode: Encode, source: str = "dimensions.toml") -> dict[str, Any]:
    """Parse and check a dimension file against the bundle's tokenizer (`encode`: text -> ids)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise DimensionFileError(f"{source}: not valid TOML: {e}") from e
    entries = doc.get("dimension")
    if not isinstance(entries, list) or not entries:
        raise DimensionFileError(f"{source}: expected one or more [[dimension]] tables")
    out: dict[str, Any] = {}
    for i, raw in enumerate(entries):
        label = raw.get("name", f"#{i + 1}") if isinstance(raw, dict) else f"#{i + 1}"
        where = f"{source}: dimension '{label}'"
        head = raw.get("head", "level_token")
        if head not in HEADS:
            raise DimensionFileError(f"{where}: head '{head}' is not one of {HEADS}")
        try:
            dim = _ADAPTER.validate_python({**raw, "head": head})
        except ValidationError as e:
            raise DimensionFileError(f"{where}: {'; '.join(_explain(err) for err in e.errors())}") from None
        if dim.name in out:
            raise DimensionFileError(f"{where}: defined twice")
        out[dim.name] = dim.resolve(encode, where)
    return out


def _explain(err: dict) -> str:
    """One pydantic error in the words of the dimension file."""
    loc = ".".join(str(x) for x in err["loc"][1:]) or "dimension"
    if err["type"] == "extra_forbidden":
        return f"unknown keys ['{loc}'] for head '{err['loc'][0]}'"
    if err["type"] == "string_pattern_mismatch" and loc == "name":
        return f"name must be lower_snake_case (dots allowed), got {err['input']!r}"
    return f"{loc}: {err['msg']}"


def load_dimensions(path: Path, encode: Encode) -> dict[str, Any]:
    return parse_dimensions(path.read_text(), encode, source=str(path))


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to a dimension file")


def dimensions_text(tables: list[dict[str, Any]]) -> str:
    """Dimension tables (plain dicts, as the parser takes them) written as a dimension file: nested
    `texts` as a [dimension.texts] table and `step` as [[dimension.step]] tables."""
    blocks = []
    for table in tables:
        fields = {k: v for k, v in table.items() if v is not None}
        steps, texts = fields.pop("step", ()), fields.pop("texts", {})
        order = ["name", "head", "description", "question", "answer_prefix"]
        keys = [k for k in order if k in fields] + sorted(k for k in fields if k not in order)
        lines = ["[[dimension]]"] + [f"{k} = {_toml_value(fields[k])}" for k in keys]
        if texts:
            lines += ["", "[dimension.texts]"] + [f"{k} = {_toml_value(v)}" for k, v in texts.items()]
        for st in steps:
            lines += ["", "[[dimension.step]]"] + [f"{k} = {_toml_value(v)}" for k, v in st.items() if v is not None]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def render_dimensions(dims: list[Any]) -> str:
    """Write parsed dimensions back as a dimension file (the exporters do), with their token ids recorded."""
    header = ("# Dimensions this bundle judges. Edit freely: add a [[dimension]] table (name, head, question, ...;\n"
              "# see the README's dimension file section) and restart the server. Token ids are checked against\n"
              "# the tokenizer; leave them out for new dimensions.\n\n")
    return header + dimensions_text([d.model_dump(exclude_none=True) for d in dims])


# The built-in dimensions every exported bundle starts with.
BUILTIN: list[dict[str, Any]] = [
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


def builtin_dimensions_text(extra: list[dict[str, Any]] = ()) -> str:
    """The built-in dimensions (and `extra` ones) as a dimension file, ready for parse_dimensions."""
    return dimensions_text([*BUILTIN, *extra])
