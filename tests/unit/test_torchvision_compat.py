"""torchvision_compat: stubs torchvision's ops only when its compiled ops cannot load.

Each case runs in a fresh interpreter against a fake `torchvision` package placed first on the path,
so it behaves the same in every venv and never touches the real torch op registry of the test process.
The fake reproduces the real failure: its `_C` extension does not load and its import registers a
fake kernel for `torchvision::nms`, as torchvision/_meta_registrations.py does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from importlib.machinery import EXTENSION_SUFFIXES

import pytest

FAKE_INIT = """
import torch

@torch.library.register_fake("torchvision::nms")
def _meta_nms(dets, scores, iou_threshold):
    return dets.new_empty(0, dtype=torch.long)

__version__ = "0.0.fake"
"""


@pytest.fixture()
def fake_path(tmp_path):
    pkg = tmp_path / "fake" / "torchvision"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(FAKE_INIT)
    (pkg / ("_C" + EXTENSION_SUFFIXES[0])).write_bytes(b"not a shared library")  # dlopen fails
    return pkg.parent


def run(code: str, path, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    # A clean interpreter: the venv's opt-in .pth (make test) stays off unless a test turns it on.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(str(p) for p in path), VIDJUDGE_TORCHVISION_STUB="0")
    env.update(extra_env or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True,
                          text=True, timeout=120)


def test_broken_ops_are_stubbed_and_only_then(fake_path):
    # Without the hook the fake fails like the real CUDA torchvision next to CPU torch.
    r = run("import torchvision", [fake_path])
    assert r.returncode != 0 and "torchvision::nms" in r.stderr
    r = run("""
        from vidjudge.server.scorer import torchvision_compat as tc
        tc.install(); tc.install()  # idempotent
        assert tc.status() == "waiting", tc.status()
        import torchvision, torch
        assert tc.status().startswith("stubbed: OSError"), tc.status()
        assert hasattr(torch.ops.torchvision, "nms") and hasattr(torch.ops.torchvision, "qnms")
        tc.install()
        assert tc.status().startswith("stubbed"), tc.status()  # already imported: nothing more to do
        print("ok")
    """, [fake_path])
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_nothing_is_stubbed_when_the_ops_load(fake_path):
    # As on a GPU machine with a matching CUDA build: loading the library registers the ops.
    r = run("""
        import torch
        def load_library(path, _lib=[]):
            _lib.append(torch.library.Library("torchvision", "DEF"))
            _lib[0].define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        torch.ops.load_library = load_library
        from vidjudge.server.scorer import torchvision_compat as tc
        tc.install()
        import torchvision
        assert tc.status() == "ops loaded" and tc._library is None, tc.status()
        assert not hasattr(torch.ops.torchvision, "qnms")  # no stub was defined
        print("ok")
    """, [fake_path])
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_harmless_when_torchvision_is_absent_or_already_imported(tmp_path):
    r = run(f"""
        import sys
        from vidjudge.server.scorer import torchvision_compat as tc
        # Importing vidjudge.server installed the hook already; start from a process that has none.
        tc._uninstall()
        tc._status = "not installed"
        sys.modules["torchvision"] = type(sys)("torchvision")  # already imported: nothing to do
        tc.install()
        assert tc.status() == "skipped: torchvision was already imported", tc.status()
        assert not any(isinstance(f, tc._TorchvisionFinder) for f in sys.meta_path)
        del sys.modules["torchvision"]
        tc.install()
        # Not installed: the lookup (here on an empty path) finds nothing and the hook steps aside.
        hook = next(f for f in sys.meta_path if isinstance(f, tc._TorchvisionFinder))
        assert hook.find_spec("torchvision", [{str(tmp_path)!r}]) is None
        assert tc.status() == "skipped: torchvision is not installed", tc.status()
        assert not any(isinstance(f, tc._TorchvisionFinder) for f in sys.meta_path)
        assert "torch" not in sys.modules  # the hook never imported torch for nothing
        print("ok")
    """, [tmp_path])
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_the_opt_in_pth_gives_every_process_of_the_environment_the_hook(fake_path, tmp_path):
    """`python -m ...torchvision_compat install SITE` writes a .pth; any interpreter reading that site dir
    (vLLM's spawned children included) then imports the broken torchvision without help."""
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    from vidjudge.server.scorer import torchvision_compat as tc

    assert tc.main(["install", str(site_dir)]) == 0
    assert (site_dir / tc.PTH_NAME).is_file()
    code = f"import site; site.addsitedir({str(site_dir)!r}); import torchvision; print(torchvision.__version__)"
    on = run(code, [fake_path], {"VIDJUDGE_TORCHVISION_STUB": "1"})
    assert on.returncode == 0 and on.stdout.strip() == "0.0.fake", on.stderr
    off = run(code, [fake_path])  # VIDJUDGE_TORCHVISION_STUB=0: the .pth does nothing
    assert off.returncode != 0 and "torchvision::nms" in off.stderr
    assert tc.main(["uninstall", str(site_dir)]) == 0 and not (site_dir / tc.PTH_NAME).exists()


def test_importing_vidjudge_patches_nothing(tmp_path):
    """Production imports leave the interpreter alone: no import hook, no files written."""
    r = run(f"""
        import os, sys, tempfile
        tempfile.tempdir = {str(tmp_path)!r}
        before = [type(f).__name__ for f in sys.meta_path]
        import vidjudge.server, vidjudge.export, vidjudge.server.app, vidjudge.export.hf, vidjudge.cli
        assert [type(f).__name__ for f in sys.meta_path] == before, sys.meta_path
        assert os.listdir({str(tmp_path)!r}) == [], os.listdir({str(tmp_path)!r})
        print("ok")
    """, [])
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_a_lookup_without_import_keeps_the_decision(fake_path):
    """transformers' is_torchvision_available() only runs find_spec: the stubs it causes are not 'loaded ops'."""
    r = run("""
        import importlib.util, sys
        from vidjudge.server.scorer import torchvision_compat as tc
        tc._uninstall()
        tc._status = "not installed"
        tc.install()
        assert importlib.util.find_spec("torchvision") is not None  # runs the hook, imports nothing
        assert "torchvision" not in sys.modules
        first = tc.status()
        tc.install()  # e.g. create_scorer_for calls it again
        import torchvision
        assert tc.status() == first, (first, tc.status())
        assert tc.needs_stubs() == first.startswith("stubbed")
        print("ok")
    """, [fake_path])
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
