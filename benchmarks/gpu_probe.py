"""What a machine offers vidjudge's GPU paths: torch/CUDA, the GPU, NVDEC through PyAV, the runtimes.

    python -m vidjudge.benchmarks.gpu_probe --out env.json

Prints a table and writes JSON. Every probe is independent: a missing library or a failing
probe is recorded with its reason, never fatal (this runs first in benchmarks/gpu/check.sh on a
machine we only see for minutes). NVDEC is probed the way decode workers probe it (a tiny H.264
clip decoded with `hwaccel=cuda`), then a real clip is decoded both ways and compared.
"""

from __future__ import annotations

import argparse
import importlib
import json
import tempfile
import sys
import time
from pathlib import Path


def _versions() -> dict:
    out = {"python": sys.version.split()[0]}
    for name in ("torch", "transformers", "onnxruntime", "av", "vllm", "tensorrt", "numpy", "grpc", "peft"):
        try:
            out[name] = getattr(importlib.import_module(name), "__version__", "?")
        except Exception as e:  # noqa: BLE001 - absent or broken: say which
            out[name] = f"unavailable ({type(e).__name__}: {str(e)[:120]})"
    return out


def _gpu() -> dict:
    try:
        import torch
    except ImportError as e:
        return {"available": False, "reason": str(e)}
    if not torch.cuda.is_available():
        return {"available": False, "reason": "torch sees no CUDA device"}
    p = torch.cuda.get_device_properties(0)
    t0 = time.perf_counter()
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    torch.cuda.synchronize()
    t1 = time.perf_counter()
    for _ in range(20):
        a @ a
    torch.cuda.synchronize()
    dt = time.perf_counter() - t1
    return {"available": True, "name": p.name, "capability": f"{p.major}.{p.minor}",
            "memory_gib": round(p.total_memory / 2**30, 1), "count": torch.cuda.device_count(),
            "cuda": torch.version.cuda, "bf16_matmul_tflops": round(20 * 2 * 8192**3 / dt / 1e12, 1),
            "first_alloc_s": round(t1 - t0, 2)}


def _nvdec() -> dict:
    try:
        import av  # noqa: F401
    except ImportError as e:
        return {"available": False, "reason": f"PyAV is not installed ({e})"}
    from vidjudge.server.decode.pyav_decoder import cuda_unavailable_reason, probe_hwaccel

    ok = probe_hwaccel("cuda")
    out: dict = {"available": ok, "reason": None if ok else cuda_unavailable_reason()}
    if not ok:
        return out
    # A real clip both ways: NVDEC must give the frames software decoding gives (same bitstream).
    import numpy as np

    from vidjudge.export.samples import write_video
    from vidjudge.server.decode import decode_video
    from vidjudge.server.decode.sampling import SegmentCentres
    from vidjudge.server.decode.transforms import Native
    from vidjudge.server.types import DecodeLimits, DecodeRequest, VideoSource, ViewSpec

    with tempfile.TemporaryDirectory() as d:
        clip = write_video(Path(d) / "probe.mp4", width=1280, height=720, num_frames=48, fps=24, pattern="scene")
        req = DecodeRequest((ViewSpec("frames", SegmentCentres(8), Native()),))
        times = {}
        frames = {}
        for mode in ("cuda", "none"):
            t = time.perf_counter()
            v = decode_video(VideoSource(path=clip), req, DecodeLimits(), hwaccel=mode)
            times[mode] = time.perf_counter() - t
            frames[mode] = (v.views["frames"].frames, v.info.decoder)
    diff = np.abs(frames["cuda"][0].astype(int) - frames["none"][0].astype(int))
    out.update(decoder_used=frames["cuda"][1], max_abs_diff=int(diff.max()), mean_abs_diff=float(diff.mean()),
               nvdec_s=round(times["cuda"], 3), software_s=round(times["none"], 3))
    return out


def _onnxruntime() -> dict:
    try:
        import onnxruntime as ort
    except ImportError as e:
        return {"providers": [], "reason": str(e)}
    return {"providers": ort.get_available_providers()}


def probe() -> dict:
    result: dict = {"versions": _versions()}
    for name, fn in (("gpu", _gpu), ("nvdec", _nvdec), ("onnxruntime", _onnxruntime)):
        try:
            result[name] = fn()
        except Exception as e:  # noqa: BLE001 - record and go on
            result[name] = {"error": f"{type(e).__name__}: {e}"}
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vidjudge.benchmarks.gpu_probe", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", metavar="FILE", help="Write the results as JSON.")
    args = ap.parse_args(argv)
    result = probe()
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
