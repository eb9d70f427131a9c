"""Server configurations for tests (tests/ is on sys.path via the root conftest)."""

from __future__ import annotations

from pathlib import Path

# Scores of the same video may differ by float summation order when the batch around it differs
# (~1e-6 measured; rounding to 6 decimals flipped on some CPUs). Comparisons of served scores use this.
BATCH_TOL = 1e-5


def make_config(bundle: Path, allowed: Path, **overrides):
    from vidjudge.server.config import load_config

    base = {"server.port": 0, "server.bundles": [str(bundle)], "limits.allowed_dirs": [str(allowed)],
            "decode.workers": 2, "encoder.max_wait_ms": 20, "scorer.max_wait_ms": 20,
            # The reference scorer unless a test asks for vLLM: an engine per test server would cost ~15 s each.
            "scorer.backend": "transformers"}
    base.update(overrides)
    return load_config(env={}, overrides=base)
