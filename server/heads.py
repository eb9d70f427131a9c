"""Scoring heads: a dimension's head is a small program over LLM operations that yields its result.

    await head.run(judge)       -> DimensionScore (with `error` set when this dimension alone failed)

The simple heads ask one question about the video and read one answer:

    head.operation()            -> the LlmOp to run on the dimension's prompt
    head.result(output)         -> DimensionScore

Heads know nothing of models or backends: the family lays the prompt out, the LLM backend runs
the operation (judging.py's `Judge` is all a head sees), the head reads the answer. One head per
dimension, built once per bundle (`build_heads`), so the regression MLP's weights are read from
the bundle once. Multi-call chains and group heads (Video-Bench) live in heads_chain.py.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from vidjudge.errors import InternalError, JudgeOutputError
from vidjudge.server.dimensions import (ChainDimension, GenerateDimension, GroupChainDimension,
                                        LevelTokenDimension, RegressionDimension, YesNoDimension)
from vidjudge.server.types import (DimensionScore, Generate, GeneratedText, HiddenState, LastHiddenState, LlmOp,
                                   LlmOutput, NextTokenLogprobs, TokenLogprobs)


def _expect(output: LlmOutput, kind: type, dim: str):
    if not isinstance(output, kind):
        raise InternalError(f"dimension {dim}: the LLM returned {type(output).__name__}, expected {kind.__name__}",
                            reason="llm_output_mismatch")
    return output


_erf = np.vectorize(math.erf, otypes=[np.float64])


def _softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    p = np.exp(x - x.max())
    return p / p.sum()


class Head(ABC):
    group = False  # a group head judges every video of a group in one go (`run_group`)

    def __init__(self, dim):
        self.dim = dim

    async def run(self, judge) -> DimensionScore:
        """Ask the dimension's question about the video once (twice when `retry` says so), read the answer."""
        d = self.dim
        question = judge.question(d)
        # The adapter goes to the family too: its embeddings may depend on the fine-tune (LOVE's per-skill
        # vision encoders), not only the LLM's weights.
        output = await judge.ask(judge.family.prompt(question, d.answer_prefix, judge.video, d.adapter),
                                 self.operation(), d.adapter)
        again = self.retry(question, output)
        if again is not None:
            output = await judge.ask(judge.family.prompt(again, d.answer_prefix, judge.video, d.adapter),
                                     self.operation(), d.adapter)
        return self.result(output)

    @abstractmethod
    def operation(self) -> LlmOp: ...

    @property
    def engine(self) -> str:
        """The vLLM engine its operations need: "pooling" (hidden states) or "generate" (the rest)."""
        return "pooling" if isinstance(self.operation(), LastHiddenState) else "generate"

    def sizing(self) -> tuple[list[tuple[str, str]], int]:
        """For the engine's max_model_len: the texts its prompts hold ((question, answer prefix) pairs) and
        how many tokens its answers may add to later prompts."""
        op = self.operation()
        return [(self.dim.render_question(""), self.dim.answer_prefix)], (op.max_tokens if isinstance(op, Generate)
                                                                          else 0)

    @abstractmethod
    def result(self, output: LlmOutput) -> DimensionScore: ...

    def retry(self, question: str, output: LlmOutput) -> str | None:
        """A question to ask once more when `output` cannot be read (None: no retry, the default)."""
        return None

    def failed(self, error: Exception, rationale: str = "") -> DimensionScore:
        """This dimension alone failed: no score, the typed error (and what the judge said, if anything)."""
        d = self.dim
        return DimensionScore(d.name, float("nan"), d.scale_min, d.scale_max, head=d.head, rationale=rationale,
                              error=error)

    def _score(self, score: float, **extra) -> DimensionScore:
        d = self.dim
        return DimensionScore(d.name, float(score), d.scale_min, d.scale_max, head=d.head, **extra)


class LevelTokenHead(Head):
    dim: LevelTokenDimension

    def operation(self) -> LlmOp:
        return NextTokenLogprobs(tuple(self.dim.level_token_ids))

    def result(self, output: LlmOutput) -> DimensionScore:
        lp = _expect(output, TokenLogprobs, self.dim.name).values
        value, probs = self.dim.score(lp)
        return self._score(value, levels=list(self.dim.levels), probabilities=[float(p) for p in probs])


class YesNoHead(Head):
    """P(yes) over {yes, no} at the answer position; the answer is the likelier word."""

    dim: YesNoDimension

    def operation(self) -> LlmOp:
        return NextTokenLogprobs(tuple(self.dim.level_token_ids))

    def result(self, output: LlmOutput) -> DimensionScore:
        p = _softmax(_expect(output, TokenLogprobs, self.dim.name).values)
        yes, no = self.dim.levels
        answer, prob = (yes, p[0]) if p[0] >= p[1] else (no, p[1])
        return self._score(p[0], levels=list(self.dim.levels), probabilities=[float(x) for x in p],
                           answer=answer, answer_probability=float(prob))


class Mlp:
    """Linear layers with an activation after each (LOVE's mlpscore has ReLU after every layer, the
    last too: `final_activation`). Weights `fc{i}.weight` [out, in] / `fc{i}.bias` [out], i = 1.."""

    def __init__(self, weights: list[tuple[np.ndarray, np.ndarray]], activation: str = "relu",
                 final_activation: bool = True):
        if activation not in ("relu", "gelu", "none"):
            raise ValueError(f"unknown activation {activation!r}")
        for i, (w, b) in enumerate(weights):
            if w.ndim != 2 or b.shape != (w.shape[0],):
                raise ValueError(f"layer {i + 1}: weight {w.shape} and bias {b.shape} do not fit")
            if i and w.shape[1] != weights[i - 1][0].shape[0]:
                raise ValueError(f"layer {i + 1} takes {w.shape[1]} inputs, layer {i} gives {weights[i - 1][0].shape[0]}")
        if not weights or weights[-1][0].shape[0] != 1:
            raise ValueError("the last layer must have one output")
        self.weights = [(w.astype(np.float64), b.astype(np.float64)) for w, b in weights]
        self.activation = activation
        self.final_activation = final_activation

    @property
    def in_features(self) -> int:
        return self.weights[0][0].shape[1]

    def _act(self, x: np.ndarray) -> np.ndarray:
        if self.activation == "relu":
            return np.maximum(x, 0.0)
        if self.activation == "gelu":  # exact (erf) GELU, torch's default
            return 0.5 * x * (1.0 + _erf(x / np.sqrt(2.0)))
        return x

    def __call__(self, x: np.ndarray) -> float:
        h = np.asarray(x, dtype=np.float64)
        for i, (w, b) in enumerate(self.weights):
            h = h @ w.T + b
            if i + 1 < len(self.weights) or self.final_activation:
                h = self._act(h)
        return float(h.reshape(-1)[0])

    @classmethod
    def load(cls, path: Path, activation: str = "relu", final_activation: bool = True) -> "Mlp":
        from safetensors.numpy import load_file

        tensors = load_file(str(path))
        layers = []
        i = 1
        while f"fc{i}.weight" in tensors:
            layers.append((tensors[f"fc{i}.weight"], tensors[f"fc{i}.bias"]))
            i += 1
        if not layers or len(layers) * 2 != len(tensors):
            raise ValueError(f"{path}: expected tensors fc1.weight, fc1.bias, ... fcN.bias, got {sorted(tensors)}")
        return cls(layers, activation=activation, final_activation=final_activation)


class RegressionHead(Head):
    dim: RegressionDimension

    def __init__(self, dim: RegressionDimension, mlp: Mlp):
        super().__init__(dim)
        self.mlp = mlp

    def operation(self) -> LlmOp:
        return LastHiddenState()

    def result(self, output: LlmOutput) -> DimensionScore:
        h = _expect(output, HiddenState, self.dim.name).vector
        if h.shape[-1] != self.mlp.in_features:
            raise InternalError(f"dimension {self.dim.name}: hidden size {h.shape[-1]}, the MLP takes "
                                f"{self.mlp.in_features}", reason="head_mismatch")
        return self._score(self.mlp(h) * self.dim.output_scale)


class GenerateHead(Head):
    dim: GenerateDimension

    def operation(self) -> LlmOp:
        return Generate(max_tokens=self.dim.max_tokens, stop=tuple(self.dim.stop))

    def retry(self, question: str, output: LlmOutput) -> str | None:
        # Greedy decoding repeats itself: ask again with the reminder appended, once.
        if self.dim.parse(_expect(output, GeneratedText, self.dim.name).text) is None:
            return question + self.dim.retry_hint
        return None

    def result(self, output: LlmOutput) -> DimensionScore:
        text = _expect(output, GeneratedText, self.dim.name).text
        value = self.dim.parse(text)
        if value is None:
            # This dimension alone failed: never a default score. The text still goes back, to show why.
            d = self.dim
            return self.failed(JudgeOutputError(
                f"dimension {d.name}: the judge's answer has no score matching {d.score_pattern!r} on "
                f"[{d.scale_min:g}, {d.scale_max:g}] (asked twice)"), rationale=text)
        return self._score(value, rationale=text)


def build_heads(dimensions: dict, head_weights: dict[str, Mlp]) -> dict[str, Head]:
    """One head per dimension; `head_weights`: the bundle's MLPs by manifest name."""
    heads: dict[str, Head] = {}
    for name, d in dimensions.items():
        if isinstance(d, LevelTokenDimension):
            heads[name] = LevelTokenHead(d)
        elif isinstance(d, YesNoDimension):
            heads[name] = YesNoHead(d)
        elif isinstance(d, RegressionDimension):
            if d.weights not in head_weights:
                raise ValueError(f"dimension {name}: head weights '{d.weights}' are not in the bundle "
                                 f"(manifest heads: {', '.join(head_weights) or 'none'})")
            heads[name] = RegressionHead(d, head_weights[d.weights])
        elif isinstance(d, GroupChainDimension):
            from vidjudge.server.heads_chain import GroupChainHead

            heads[name] = GroupChainHead(d)
        elif isinstance(d, ChainDimension):
            from vidjudge.server.heads_chain import ChainHead

            heads[name] = ChainHead(d)
        elif isinstance(d, GenerateDimension):
            heads[name] = GenerateHead(d)
        else:  # pragma: no cover - the dimension parser admits only the heads above
            raise ValueError(f"dimension {name}: no head for {type(d).__name__}")
    return heads
