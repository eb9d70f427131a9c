"""The language-model scorer interface: one small seam, backends chosen by name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from vidjudge.server.bundle import PromptIds
from vidjudge.server.seam_shim import EncodedVideo


@dataclass(frozen=True)
class ScoreJob:
    """One (video, dimension) prompt to score: prefix + video tokens + suffix, then the level word."""

    prompt: PromptIds
    video: EncodedVideo
    level_token_ids: tuple[int, ...]


class Scorer(Protocol):
    name: str

    def score(self, jobs: list[ScoreJob]) -> list[np.ndarray]:
        """Exact next-token log-probabilities (full vocabulary) of each job's level token ids."""
        ...

    def close(self) -> None: ...
