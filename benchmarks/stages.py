"""Stage benchmarks: decode, visual encoder and LLM prefill, each against a baseline measured in the same run.

    python -m vidjudge.benchmarks.stages                     # all three on the tiny bundle
    python -m vidjudge.benchmarks.stages decode --videos clips/ --out decode.json
    python -m vidjudge.benchmarks.stages encoder --bundle bundles/qwen7b --batch-sizes 1,8,32
    python -m vidjudge.benchmarks.stages llm --llm-batch-sizes 1,2,4,8,16,32

decode   vidjudge's sampled decode (8 frames at segment centres as upright RGB, what the decoder
         delivers; 1 decoder thread) against decoding every frame with PyAV (1 thread, no RGB
         conversion; and the same converting the 8 frames vidjudge returns: equal output) and, when an ffmpeg binary is on PATH, ``ffmpeg -threads 1 -i F -f null -``,
         on generated-video shapes written on first use (textured, panning, moving shapes): 10 s
         1080p30, 5 s 720p24, 6 s 480p8 and 2 s 320p8 H.264 with x264's defaults (B-frames,
         b-pyramid), 5 s 720p24 HEVC (x265 defaults) and VP9 (libvpx "good"). Also: the same with
         a 448x448 PIL-bicubic Resize view (a Qwen-style transform, run in the decode worker);
         vidjudge without skipping non-reference frames, and without seeking either (every packet
         up to the last target); optionally DecodePool. Columns: ms per video, frames decoded,
         ratios of videos/s against each baseline.
encoder  videos/s (and images/s = frames/s) of the visual encoder per backend (onnxruntime on the
         bundle's ONNX, torch reference) and batch size, on random pixels of the bundle's
         grid; ratio against batch 1 of the same backend and against torch at the same batch.
llm      prefills/s of the transformers scorer (one prompt of the bundle's length with visual
         embeddings, last-position LM head) per batch size; ratio against batch 1 and against
         the reference way (the HF model's forward with logits at every position, batch 1).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidjudge.benchmarks import common

STAGES = ("decode", "encoder", "llm")


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


# --------------------------------------------------------------------------- decode


@dataclass(frozen=True)
class ClipShape:
    """A generated-video shape: what text-to-video services return, encoded as they encode it."""

    name: str
    width: int
    height: int
    fps: int
    frames: int
    codec: str
    suffix: str
    options: tuple[tuple[str, str], ...]  # the encoder's defaults, as the tools that write these files use them

    @property
    def file_name(self) -> str:
        return f"scene_{self.name}{self.suffix}"


X264_DEFAULTS = (("preset", "medium"), ("crf", "23"))  # x264's own defaults: B-frames, b-pyramid, keyint 250
X265_DEFAULTS = (("preset", "medium"), ("crf", "28"), ("x265-params", "log-level=error"))
VP9_WEB = (("deadline", "good"), ("cpu-used", "4"), ("crf", "32"), ("b", "0"))  # libvpx's "good" with alt-refs

DECODE_SHAPES = (
    ClipShape("1080p30_10s_h264", 1920, 1080, 30, 300, "libx264", ".mp4", X264_DEFAULTS),
    ClipShape("720p24_5s_h264", 1280, 720, 24, 120, "libx264", ".mp4", X264_DEFAULTS),
    ClipShape("480p8_6s_h264", 854, 480, 8, 48, "libx264", ".mp4", X264_DEFAULTS),
    ClipShape("320p8_2s_h264", 568, 320, 8, 16, "libx264", ".mp4", X264_DEFAULTS),
    ClipShape("720p24_5s_hevc", 1280, 720, 24, 120, "libx265", ".mp4", X265_DEFAULTS),
    ClipShape("720p24_5s_vp9", 1280, 720, 24, 120, "libvpx-vp9", ".webm", VP9_WEB),
)


def generated_clips(home: Path, shapes: Sequence[ClipShape] = DECODE_SHAPES) -> list[Path]:
    """The shapes as files (``pattern="scene"``: textured background, camera pan, moving shapes),
    written once under `home`/videos and reused."""
    from vidjudge.export.samples import write_video

    out = home / "videos"
    out.mkdir(parents=True, exist_ok=True)
    clips = []
    for shape in shapes:
        p = out / shape.file_name
        if not p.is_file():
            common.note(f"writing {p} ...")
            tmp = out / (".tmp-" + shape.file_name)
            write_video(tmp, codec=shape.codec, width=shape.width, height=shape.height, num_frames=shape.frames,
                        fps=shape.fps, pattern="scene", options=dict(shape.options))
            tmp.replace(p)
        clips.append(p)
    return clips


def count_frames(path: Path) -> int:
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return sum(1 for p in c.demux(s) if p.size)


def _every_frame(path: Path, threads: int) -> Iterator:
    """Every frame of the first video stream, decoded with PyAV at `threads` decoder threads."""
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.codec_context.thread_type = "AUTO"
        s.codec_context.thread_count = threads
        yield from c.decode(s)


def _pyav_decode_all(path: Path, threads: int) -> int:
    """Every frame decoded, nothing converted: the practical limit of any decoder on these libraries."""
    return sum(1 for _ in _every_frame(path, threads))


def _pyav_decode_all_keep(path: Path, threads: int, keep: frozenset[int]) -> np.ndarray:
    """Every frame decoded, and the frames numbered `keep` (presentation order) converted to RGB
    through one reused reformatter and stacked: decode-all giving the sampled decode's output.
    (A stream without timestamps gives vidjudge no frame numbers: `keep` is empty and nothing is
    converted, i.e. the plain decode-all.)"""
    from av.video.reformatter import VideoReformatter

    reformatter = VideoReformatter()
    kept = [reformatter.reformat(frame, format="rgb24").to_ndarray()
            for i, frame in enumerate(_every_frame(path, threads)) if i in keep]
    return np.stack(kept) if kept else np.empty((0,), np.uint8)


def _ffmpeg(path: Path, threads: int, binary: str) -> None:
    subprocess.run([binary, "-nostdin", "-v", "error", "-threads", str(threads), "-i", str(path), "-map", "0:v:0",
                    "-f", "null", "-"], check=True, capture_output=True, timeout=600)


METHOD_OURS = "vidjudge sampled, upright RGB"
METHOD_OURS_RESIZED = "vidjudge sampled + Resize"
METHOD_PYAV = "pyav decode-all, no conversion"
METHOD_PYAV_SAME = "pyav decode-all, same frames to RGB"
METHOD_FFMPEG = "ffmpeg -f null"


def bench_decode(clips: Sequence[Path], *, num_frames: int = 8, size: tuple[int, int] = (448, 448), threads: int = 1,
                 min_time_s: float = 2.0, rounds: int = 5, pool_workers: Sequence[int] = (),
                 progress: common.Progress | None = None) -> dict:
    """vidjudge's sampled decode (`num_frames` at segment centres, as upright RGB: what the decoder
    delivers) against decoding every frame (PyAV, no conversion) and ``ffmpeg -f null``, all at
    `threads` decoder threads; also with the Resize(`size` = (h, w)) transform a Qwen-style view adds
    (PIL bicubic, in the worker), and without the decoder's savings. Every method on every clip,
    interleaved in rounds (fair on a shared machine). Runs in a process set up as a decode
    worker's for memory (`retain_freed_memory`), so that the in-process decode is the served one."""
    from vidjudge.server.decode import DecodePool, Native, Resize, SegmentCentres, decode_video
    from vidjudge.server.decode.memory import retain_freed_memory
    from vidjudge.server.types import DecodeLimits, DecodeRequest, VideoSource, ViewSpec

    progress = progress or common.Progress()
    retain_freed_memory()
    ffmpeg = shutil.which("ffmpeg")
    limits = DecodeLimits()
    native = DecodeRequest(views=(ViewSpec("frames", SegmentCentres(num_frames), Native()),))
    resized = DecodeRequest(views=(ViewSpec("frames", SegmentCentres(num_frames), Resize(*size)),))
    fns: dict[str, Callable[[], object]] = {}
    info: dict[tuple[str, str], dict] = {}
    with contextlib.ExitStack() as stack:
        pools = {w: stack.enter_context(DecodePool(w, limits, hwaccel="none")) for w in pool_workers}
        for clip in clips:
            total = count_frames(clip)
            src = VideoSource(path=clip)

            def ours(request=native, src=src, **kw) -> Callable[[], int]:
                return lambda: decode_video(src, request, limits, hwaccel="none", threads=threads,
                                            **kw).info.frames_decoded

            def pooled(pool, n: int, src=src) -> Callable[[], int]:
                def fn() -> int:
                    for f in [pool.submit(src, resized) for _ in range(n)]:
                        f.result(timeout=120)
                    return n  # videos per call: the pool is kept full
                return fn

            methods: list[tuple[str, Callable[[], object]]] = []
            if ffmpeg:
                methods.append((METHOD_FFMPEG, lambda clip=clip: _ffmpeg(clip, threads, ffmpeg)))
            sampled = decode_video(src, native, limits, hwaccel="none", threads=threads).views["frames"]
            keep = frozenset(int(i) for i in sampled.indices) if sampled.indices is not None else frozenset()
            methods += [
                (METHOD_PYAV, lambda clip=clip: _pyav_decode_all(clip, threads)),
                (METHOD_PYAV_SAME, lambda clip=clip, keep=keep: _pyav_decode_all_keep(clip, threads, keep)),
                (METHOD_OURS, ours()),
                (METHOD_OURS_RESIZED, ours(resized)),
                ("vidjudge sampled, no non-reference skipping", ours(skip_nonref=False)),
                ("vidjudge sampled, every packet up to the last target (no seek, no skip)",
                 ours(seek=False, skip_nonref=False)),
            ]
            for name, fn in methods:
                got = fn()  # warm-up; the frames this method decodes
                decoded = got if isinstance(got, int) else total
                info[(clip.name, name)] = {"frames_decoded": decoded, "frames_in_clip": total}
                fns[f"{clip.name}: {name}"] = (lambda fn=fn: (fn(), 1)[1])
            for w, pool in pools.items():
                name = f"vidjudge DecodePool, {w} worker(s)"
                fns[f"{clip.name}: {name}"] = pooled(pool, 2 * w)
                info[(clip.name, name)] = {"frames_decoded": info[(clip.name, METHOD_OURS)]["frames_decoded"],
                                           "frames_in_clip": total}
        timed = common.interleaved(fns, rounds=rounds, min_time_s=min_time_s, warmup=0, progress=progress)
    rows = []
    for (clip, method), meta in info.items():
        t = timed[f"{clip}: {method}"]
        per = t["s_per_unit"]
        rows.append({"clip": clip, "method": method, "videos_per_s": 1 / per, "ms_per_video": 1000 * per,
                     "decoded_frames_per_s": meta["frames_decoded"] / per, **meta,
                     "spread": t["max_s_per_unit"] / t["min_s_per_unit"], "calls": t["calls"]})
    for r in rows:
        same = {x["method"]: x for x in rows if x["clip"] == r["clip"]}
        r["vs_pyav_decode_all"] = common.ratio(r["videos_per_s"], same[METHOD_PYAV]["videos_per_s"])
        r["vs_pyav_same_output"] = common.ratio(r["videos_per_s"], same[METHOD_PYAV_SAME]["videos_per_s"])
        r["vs_ffmpeg"] = common.ratio(r["videos_per_s"], same[METHOD_FFMPEG]["videos_per_s"]) if ffmpeg else None
    return {"rows": rows, "ffmpeg": ffmpeg or None, "ffmpeg_version": _ffmpeg_version(ffmpeg), "threads": threads,
            "rounds": rounds, "frames": num_frames, "size": list(size)}


def _ffmpeg_version(binary: str | None) -> str | None:
    if not binary:
        return None
    try:
        out = subprocess.run([binary, "-version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0] if out else None


def decode_summary(result: dict) -> list[dict]:
    """One row per clip: vidjudge's sampled decode against both baselines."""
    out = []
    for clip in dict.fromkeys(r["clip"] for r in result["rows"]):
        same = {r["method"]: r for r in result["rows"] if r["clip"] == clip}
        ours, pyav, resized = same[METHOD_OURS], same[METHOD_PYAV], same[METHOD_OURS_RESIZED]
        ff = same.get(METHOD_FFMPEG)
        out.append({"clip": clip, "frames_in_clip": ours["frames_in_clip"], "frames_decoded": ours["frames_decoded"],
                    "ms_ours": ours["ms_per_video"], "ms_pyav": pyav["ms_per_video"],
                    "ms_ffmpeg": ff["ms_per_video"] if ff else None,
                    "ms_pyav_same_output": same[METHOD_PYAV_SAME]["ms_per_video"],
                    "vs_pyav_decode_all": ours["vs_pyav_decode_all"], "vs_ffmpeg": ours["vs_ffmpeg"],
                    "vs_pyav_same_output": ours["vs_pyav_same_output"],
                    "ms_resized": resized["ms_per_video"], "resized_vs_pyav": resized["vs_pyav_decode_all"],
                    "resized_vs_ffmpeg": resized["vs_ffmpeg"]})
    return out


# --------------------------------------------------------------------------- encoder


def _sync(out):
    """Wait for a GPU result (a CUDA tensor is returned before the kernels finish)."""
    if getattr(out, "is_cuda", False):
        import torch

        torch.cuda.synchronize()
    return out


def bench_encoder(bundle_dir: Path, *, backends: Sequence[str] = ("onnxruntime", "torch"),
                  batch_sizes: Sequence[int] = (1, 2, 4, 8, 16), threads: int = 0, min_time_s: float = 1.0,
                  rounds: int = 5, device: str = "auto", dtype: str = "auto",
                  progress: common.Progress | None = None) -> dict:
    """device/dtype: the torch backend's (auto: cuda in bfloat16 where a GPU is visible, else cpu float32)."""
    from vidjudge.server.bundle import load_bundle
    from vidjudge.server.encoder import create_encoder

    progress = progress or common.Progress()
    bundle = load_bundle(bundle_dir)
    spec = bundle.family.encoders()[0]  # the family's first (for qwen2_5_vl: only) encoder
    view = bundle.manifest.views[bundle.manifest.encoders[spec.name].view]
    frames = view.num_frames
    rng = np.random.default_rng(0)
    errors = []
    points: list[tuple[str, int]] = []
    timed: dict[str, dict] = {}
    shape = None
    # One backend at a time (batch sizes interleaved within it): two runtimes' thread pools
    # (onnxruntime spins its threads after each run; torch's OpenMP does too) would otherwise
    # take the cores from each other and measure the interference instead of the backend.
    for backend in backends:
        try:
            enc = create_encoder(backend, onnx_path=spec.onnx_path, torch_module=spec.torch_module,
                                 input_shape=spec.input_shape, output_shape=spec.output_shape, threads=threads or None,
                                 device=device, dtype=dtype)
        except Exception as e:  # noqa: BLE001 - report a backend that cannot run here, go on
            errors.append({"backend": backend, "error": f"{type(e).__name__}: {e}"})
            continue
        try:
            shape = enc.input_shape
            mine = {}
            for b in batch_sizes:
                x = rng.standard_normal((b, *enc.input_shape), dtype=np.float32)
                points.append((enc.name, b))
                mine[f"{enc.name} b={b}"] = (lambda enc=enc, x=x, b=b: (_sync(enc.encode(x)), b)[1])
            timed.update(common.interleaved(mine, rounds=rounds, min_time_s=min_time_s, warmup=1,
                                            progress=progress))
        finally:
            enc.close()
            mine = {}
            gc.collect()
    rows = []
    for (name, b) in points:
        t = timed[f"{name} b={b}"]
        per_video = t["s_per_unit"]
        rows.append({"backend": name, "batch": b, "ms_per_batch": 1000 * per_video * b, "videos_per_s": 1 / per_video,
                     "images_per_s": frames / per_video, "spread": t["max_s_per_unit"] / t["min_s_per_unit"],
                     "calls": t["calls"]})
    for r in rows:
        b1 = next((x for x in rows if x["backend"] == r["backend"] and x["batch"] == 1), None)
        r["vs_batch1"] = common.ratio(r["videos_per_s"], b1["videos_per_s"]) if b1 else None
        tr = next((x for x in rows if x["backend"].startswith("torch") and x["batch"] == r["batch"]), None)
        r["vs_torch"] = common.ratio(r["videos_per_s"], tr["videos_per_s"]) if tr else None
    return {"rows": rows, "errors": errors, "encoder": spec.name, "input_shape": list(shape) if shape else None,
            "frames_per_video": frames, "threads": threads, "rounds": rounds}


# --------------------------------------------------------------------------- llm


def bench_llm(bundle_dir: Path, *, batch_sizes: Sequence[int] = (1, 2, 4, 8, 16, 32), prompt: str,
              threads: int = 0, min_time_s: float = 1.0, rounds: int = 5, device: str = "auto", dtype: str = "auto",
              progress: common.Progress | None = None) -> dict:
    import torch

    from vidjudge.server.bundle import load_bundle
    from vidjudge.server.scorer.transformers_backend import TransformersLlm
    from vidjudge.server.types import LlmRequest, PreprocessedVideo

    progress = progress or common.Progress()
    bundle = load_bundle(bundle_dir)
    fam = bundle.family
    scorer = TransformersLlm(bundle.llm_path, fam.transformers_adapter(), fam.tokenizer, threads=threads,
                             device=device, dtype=dtype)
    rng = np.random.default_rng(0)
    dims = [d for d in bundle.dimensions.values()
            if d.head == "level_token" and (prompt or not d.requires_prompt)]
    (spec,) = fam.encoders()
    # Random visual embeddings of the encoder's output shape, one temporal step per second (2 fps).
    embeds = (0.2 * rng.standard_normal(spec.output_shape)).astype(np.float32)
    video = fam.encoded(PreprocessedVideo(inputs={}, seconds_per_t=1.0), {spec.name: embeds})
    jobs_all = [LlmRequest(fam.prompt(d.render_question(prompt), d.answer_prefix, video),
                           bundle.heads[d.name].operation()) for d in dims]
    lengths = [j.prompt.num_tokens for j in jobs_all]

    # Baseline, the reference way, on the scorer's own weights (no second copy of the model): the
    # decoder on the whole prompt, the LM head at every position (what HF's forward returns as
    # .logits by default), full-vocabulary log-softmax at the last position.
    emb0, pos0 = scorer.adapter.inputs(scorer.model, jobs_all[0].prompt)
    model = scorer.model

    def reference() -> int:
        with torch.inference_mode():
            hidden, _ = model.decoder(emb0[None], torch.ones(1, emb0.shape[0], dtype=torch.long, device=model.device),
                                      pos0[:, None, :])
            logits = model.lm_head(hidden)
            torch.log_softmax(logits[0, -1].double(), -1).cpu()  # .cpu(): wait for the GPU
        return 1

    fns: dict[str, Callable[[], int]] = {"reference": reference}
    for b in batch_sizes:
        jobs = [jobs_all[i % len(jobs_all)] for i in range(b)]
        fns[f"b={b}"] = (lambda jobs=jobs, b=b: (scorer.run_blocking(jobs), b)[1])
    try:
        timed = common.interleaved(fns, rounds=rounds, min_time_s=min_time_s, warmup=1, progress=progress)
    finally:
        scorer.close()
    ref_t = timed["reference"]
    rows = [{"method": "reference: full forward, LM head at every position", "batch": 1,
             "prefills_per_s": 1 / ref_t["s_per_unit"], "ms_per_batch": 1000 * ref_t["s_per_unit"],
             "spread": ref_t["max_s_per_unit"] / ref_t["min_s_per_unit"]}]
    for b in batch_sizes:
        t = timed[f"b={b}"]
        rows.append({"method": "vidjudge transformers scorer", "batch": b, "prefills_per_s": 1 / t["s_per_unit"],
                     "ms_per_batch": 1000 * t["s_per_unit"] * b, "spread": t["max_s_per_unit"] / t["min_s_per_unit"]})
    ref = rows[0]["prefills_per_s"]
    b1 = next((r["prefills_per_s"] for r in rows[1:] if r["batch"] == 1), None)
    for r in rows:
        r["tokens_per_s"] = r["prefills_per_s"] * (sum(lengths) / len(lengths))
        r["vs_batch1"] = common.ratio(r["prefills_per_s"], b1)
        r["vs_reference"] = common.ratio(r["prefills_per_s"], ref)
    return {"rows": rows, "prompt_tokens": lengths, "dimensions": [d.name for d in dims],
            "torch_threads": torch.get_num_threads(), "rounds": rounds}


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m vidjudge.benchmarks.stages",
                                 description=__doc__.split("\n\n", 1)[0],
                                 epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stages", nargs="*", metavar="STAGE",
                    help="Which stages: decode, encoder, llm (default: all three).")
    ap.add_argument("--bundle", help="Bundle directory (default: the tiny random bundle, built on first use).")
    ap.add_argument("--threads", type=int, default=0,
                    help="Threads for every runtime (FFmpeg decoder, onnxruntime, torch); 0: each one's default.")
    ap.add_argument("--min-time", type=float, default=2.0, metavar="SECONDS",
                    help="Time each measurement point for about this long in all (default 2), spread over "
                         "--rounds rounds that take turns between the points (fair on a shared machine).")
    ap.add_argument("--rounds", type=int, default=5,
                    help="Rounds per stage; each point's result is its median over rounds (default 5).")
    d = ap.add_argument_group("decode")
    d.add_argument("--videos", metavar="DIR|GLOB|FILE",
                   help="Clips to decode (default: the generated-video shapes, written on first use).")
    d.add_argument("--shapes", default="", metavar="NAME,NAME",
                   help=f"Only these generated shapes (default all: {', '.join(s.name for s in DECODE_SHAPES)}).")
    d.add_argument("--decode-frames", type=int, default=8, help="Frames sampled per video (default 8).")
    d.add_argument("--frame-size", default="448x448", metavar="HxW",
                   help="Size of the Resize view measured too (default 448x448).")
    d.add_argument("--decode-threads", type=int, default=1,
                   help="FFmpeg decoder threads for every decode method, ffmpeg -threads too (default 1: the "
                        "server's, one per decode worker).")
    d.add_argument("--pool-workers", default="", metavar="N,M",
                   help="Also measure DecodePool with these worker counts (default: none).")
    e = ap.add_argument_group("encoder")
    e.add_argument("--backends", default="onnxruntime,torch", help="Encoder backends (default onnxruntime,torch).")
    e.add_argument("--batch-sizes", default="1,2,4,8,16", help="Encoder batch sizes (default 1,2,4,8,16).")
    g = ap.add_argument_group("llm")
    g.add_argument("--llm-batch-sizes", default="1,2,4,8,16,32", help="Scorer batch sizes (default 1,2,4,8,16,32).")
    g.add_argument("--prompt", default=common.DEFAULT_PROMPT,
                   help="Generation prompt for prompt-dependent dimensions ('' to use only the others).")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                    help="torch encoder and LLM device (default auto: cuda where a GPU is visible).")
    ap.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"),
                    help="torch encoder and LLM dtype (default auto: float32 on CPU, bfloat16 on a GPU).")
    ap.add_argument("--out", metavar="FILE", help="Write the results as JSON.")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    bad = [s for s in args.stages if s not in STAGES]
    if bad:
        ap.error(f"unknown stage(s) {', '.join(bad)}; choose from {', '.join(STAGES)}")
    stages = list(dict.fromkeys(args.stages)) or list(STAGES)
    common.quiet_libraries()
    env = common.environment()
    # The decode stage needs no bundle: build or load one only for the model stages.
    bundle = common.resolve_bundle(args.bundle) if {"encoder", "llm"} & set(stages) else None
    common.note(f"stages {', '.join(stages)}{f' on {bundle}' if bundle else ''}; "
                f"{common.describe_environment(env)}")
    results: dict = {}
    if "decode" in stages:
        if args.videos:
            clips = common.resolve_videos(args.videos)
        else:
            wanted = [x for x in args.shapes.split(",") if x]
            unknown = set(wanted) - {s.name for s in DECODE_SHAPES}
            if unknown:
                ap.error(f"unknown shape(s) {', '.join(sorted(unknown))}")
            clips = generated_clips(common.default_home(),
                                    [s for s in DECODE_SHAPES if not wanted or s.name in wanted])
        h, w = (int(v) for v in args.frame_size.lower().split("x"))
        r = bench_decode(clips, num_frames=args.decode_frames, size=(h, w), threads=args.decode_threads,
                         min_time_s=args.min_time, rounds=args.rounds, pool_workers=_ints(args.pool_workers))
        results["decode"] = r
        print(common.table(r["rows"], [("clip", "clip"), ("method", "method"), ("ms_per_video", "ms/video"),
                                        ("videos_per_s", "videos/s"), ("frames_decoded", "frames decoded"),
                                        ("frames_in_clip", "frames in clip"), ("spread", "max/min"),
                                        ("vs_pyav_decode_all", "vs pyav decode-all"), ("vs_ffmpeg", "vs ffmpeg")],
                           f"decode {args.decode_frames} frames, {args.decode_threads} decoder thread(s)"))
        print()
        print(common.table(decode_summary(r), [("clip", "clip"), ("frames_in_clip", "frames"),
                                                ("frames_decoded", "decoded by vidjudge"),
                                                ("ms_ours", "vidjudge ms"), ("ms_pyav", "pyav decode-all ms"),
                                                ("ms_ffmpeg", "ffmpeg ms"), ("vs_pyav_decode_all", "vs pyav"),
                                                ("vs_ffmpeg", "vs ffmpeg"),
                                                ("ms_pyav_same_output", "pyav decode-all + same RGB ms"),
                                                ("vs_pyav_same_output", "vs that"), ("ms_resized", f"+ Resize {h}x{w} ms"),
                                                ("resized_vs_pyav", "vs pyav"), ("resized_vs_ffmpeg", "vs ffmpeg")],
                           f"summary: vidjudge's sampled decode ({args.decode_frames} frames at segment centres, "
                           f"upright RGB; then with a {h}x{w} PIL-bicubic view) vs decoding every frame "
                           f"(ratios of videos/s)"))
        if not r["ffmpeg"]:
            print("no ffmpeg binary on PATH: ffmpeg -f null not measured; the PyAV decode-all loop (same FFmpeg "
                  "libraries) is the practical limit")
        print()
    if "encoder" in stages:
        r = bench_encoder(bundle, backends=[b for b in args.backends.split(",") if b],
                          batch_sizes=_ints(args.batch_sizes), threads=args.threads, min_time_s=args.min_time,
                          rounds=args.rounds, device=args.device, dtype=args.dtype)
        results["encoder"] = r
        print(common.table(r["rows"], [("backend", "backend"), ("batch", "batch"), ("ms_per_batch", "ms/batch"),
                                ("videos_per_s", "videos/s"), ("images_per_s", "images/s"),
                                ("spread", "max/min"), ("vs_batch1", "vs batch 1"), ("vs_torch", "vs torch")],
                           f"visual encoder {r['encoder']}, input {tuple(r['input_shape'] or ())}, "
                           f"{r['frames_per_video']} frames per video"))
        for x in r["errors"]:
            print(f"{x['backend']}: not measured ({x['error']})")
        print()
    if "llm" in stages:
        r = bench_llm(bundle, batch_sizes=_ints(args.llm_batch_sizes), prompt=args.prompt, threads=args.threads,
                      min_time_s=args.min_time, rounds=args.rounds, device=args.device, dtype=args.dtype)
        results["llm"] = r
        print(common.table(r["rows"], [("method", "method"), ("batch", "batch"), ("ms_per_batch", "ms/batch"),
                                        ("prefills_per_s", "prefills/s"), ("tokens_per_s", "tokens/s"),
                                        ("spread", "max/min"), ("vs_batch1", "vs batch 1"),
                                        ("vs_reference", "vs reference")],
                           f"LLM prefill ({'/'.join(map(str, sorted(set(r['prompt_tokens']))))} tokens per prompt; "
                           f"dimensions {', '.join(r['dimensions'])}; torch threads {r['torch_threads']})"))
        print()
    config = {"stages": stages, "bundle": str(bundle) if bundle else None, "threads": args.threads,
              "min_time_s": args.min_time, "rounds": args.rounds, "batch_sizes": args.batch_sizes,
              "llm_batch_sizes": args.llm_batch_sizes, "videos": args.videos, "pool_workers": args.pool_workers,
              "shapes": args.shapes, "decode_frames": args.decode_frames, "frame_size": args.frame_size,
              "decode_threads": args.decode_threads}
    common.write_json(args.out, common.report("stages", config, results, env))
    return 0


if __name__ == "__main__":
    sys.exit(main())
