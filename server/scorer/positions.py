"""3-D rotary (mRoPE) position ids for prompts holding videos, Qwen2.5-VL's original rule.

Layout: text prefix | video tokens (t, h, w grid after spatial merge) | text suffix, and
the same for every further video span (`span_positions`).
- Prefix text: 0..P-1 on all three axes.
- Video: t axis = P + floor(group * second_per_grid_t * tokens_per_second),
  h axis = P + row, w axis = P + column.
- Suffix text starts at max(all video positions) + 1.

The last point is the original model's (and vLLM's) rule. transformers 5.19
instead starts the suffix at P + max(h, w); the two agree only when the video
has one temporal group (DESIGN.md §5). We follow the original model, so the
transformers reference is run with these explicit position ids.
"""

from __future__ import annotations

import numpy as np


def video_positions(start: int, grid_thw: tuple[int, int, int], merge: int,
                    second_per_grid_t: float, tokens_per_second: float) -> np.ndarray:
    t, h, w = grid_thw[0], grid_thw[1] // merge, grid_thw[2] // merge
    # float64 then truncation, as torch's `(arange * interval).long()` on positive values.
    tt = (np.arange(t, dtype=np.float64) * (second_per_grid_t * tokens_per_second)).astype(np.int64)
    T, H, W = np.meshgrid(tt, np.arange(h), np.arange(w), indexing="ij")
    return np.stack([T.ravel(), H.ravel(), W.ravel()]) + start


def mrope_positions(prefix_len: int, grid_thw: tuple[int, int, int], merge: int,
                    second_per_grid_t: float, tokens_per_second: float, suffix_len: int) -> np.ndarray:
    """(3, prefix_len + video_tokens + suffix_len) int64 position ids."""
    pre = np.broadcast_to(np.arange(prefix_len, dtype=np.int64), (3, prefix_len))
    vid = video_positions(prefix_len, grid_thw, merge, second_per_grid_t, tokens_per_second)
    start = int(vid.max()) + 1 if vid.size else prefix_len
    suf = np.broadcast_to(np.arange(start, start + suffix_len, dtype=np.int64), (3, suffix_len))
    return np.concatenate([pre, vid, suf], axis=1)


def span_positions(parts: list[tuple[int, tuple[int, int, int] | None, float]], merge: int,
                   tokens_per_second: float) -> np.ndarray:
    """(3, total) position ids of a prompt given as parts, in order: (n_text, None, 0) for n text tokens,
    (n_tokens, grid_thw, second_per_grid_t) for a video span. Each part starts after the previous one's
    largest position (text continues at +1 per token; a video starts at the current position)."""
    out = []
    cur = 0
    for n, grid, sec in parts:
        if grid is None:
            out.append(np.broadcast_to(np.arange(cur, cur + n, dtype=np.int64), (3, n)))
            cur += n
        else:
            vid = video_positions(cur, grid, merge, sec, tokens_per_second)
            if vid.shape[1] != n:
                raise ValueError(f"a span of {n} tokens does not fit grid {grid} with merge {merge}")
            out.append(vid)
            cur = int(vid.max()) + 1 if vid.size else cur
    return np.concatenate(out, axis=1) if out else np.zeros((3, 0), np.int64)
