"""Reading a score out of a judge's text, the ways the methods we serve write it.

- last_match / first_match: a regular expression whose group 1 is the score; the last (first) match on
  the dimension's scale wins.
- evaluation_result: Video-Bench's alignment judgement (its VideoTextAlignment.py): in the text after
  "Evaluation Result", the last single digit before the first "because".
- scores_before_because: Video-Bench's dynamic quality (one answer for every video of a group): for each
  "because", the number right before it, in order.
Each returns None (or a short list) when the text does not say; the head then asks once more and, failing
that, reports a typed error for that video and dimension: never a default score.
"""

from __future__ import annotations

import re


def _on_scale(value: float, lo: float, hi: float) -> float | None:
    return value if lo <= value <= hi else None


def parse_score(kind: str, text: str, pattern: str, lo: float, hi: float) -> float | None:
    if kind in ("last_match", "first_match"):
        matches = list(re.finditer(pattern, text))
        for m in (reversed(matches) if kind == "last_match" else matches):
            try:
                value = _on_scale(float(m.group(1)), lo, hi)
            except (TypeError, ValueError, IndexError):
                continue
            if value is not None:
                return value
        return None
    if kind == "evaluation_result":
        at = text.find("Evaluation Result")
        if at < 0:
            return None
        rest = text[at + len("Evaluation Result"):]
        because = rest.find("because")
        if because < 0:
            return None
        digits = [c for c in rest[:because] if c.isdigit()]
        return _on_scale(float(digits[-1]), lo, hi) if digits else None
    raise ValueError(f"unknown score parser {kind!r}")


def scores_before_because(text: str) -> list[float]:
    out = []
    for m in re.finditer(r"because", text):
        before = re.search(r"(\d+)\D*$", text[:m.start()])
        if before:
            out.append(float(before.group(1)))
    return out
