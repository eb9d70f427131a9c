"""Stage benchmarks: decode, visual encoder and LLM prefill, each against a baseline measured in the same run.

    python -m vidjudge.benchmarks.stages                     # all three on the tiny bundle
    python -m vidjudge.benchmarks.stages decode --videos clips/ --out decode.json
    python -m vidjudge.benchmarks.stages encoder --bundle bundles/qwen7b --batch-sizes 1,8,32
    python -m vidjudge.benchmarks.stages llm --llm-batch-sizes 1,2,4,8,16,32

decode   frames/s of vidjudge's decoder (its 8-frame sampled decode with seeking, and the
         same with seeking off, i.e. a full sequential decode up to the last sample), in
         process and through the crash-safe DecodePool workers, against the practical
         limit: a plain PyAV decode-all loop (without RGB conversion; with it through one
         swscale context per clip; with it through frame.to_ndarray, which builds a new swscale
         context for every frame, as vidjudge's decoder does) and, when an
         ffmpeg binary is on PATH, ``ffmpeg -f null`` on the same files. Default inputs are
         720p H.264 clips (5 s, 24 fps; one with the encoder's default GOP, one with a 1 s GOP).
         Columns: videos/s; decoded frames/s (frames the decoder actually produced); content
         frames/s (frames in the clip per second of work: what sampling buys); ratio of
         videos/s against PyAV decode-all.
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
import math
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from vidjudge.benchmarks import common

STAGES = ("decode", "encoder", "llm")


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


# --------------------------------------------------------------------------- decode


def default_clips(home: Path, size: tuple[int, int], frames: int, fps: float) -> list[Path]:
    """720p H.264 clips: one with libx264's default GOP (one keyframe), one with a keyframe every second."""
    from vidjudge.export.samples import write_video

    w, h = size
    out = home / "videos"
    out.mkdir(parents=True, exist_ok=True)
    clips = []
    for pattern, gop in (("gradient", None), ("checker", int(round(fps)))):
        name = f"{pattern}_{w}x{h}_{frames}f_{fps:g}fps_gop{gop or 'default'}_libx264.mp4"
        p = out / name
        if not p.is_file():
            common.note(f"writing {p} ...")
            tmp = out / (".tmp-" + name)
            write_video(tmp, codec="libx264", width=w, height=h, num_frames=frames, fps=fps, pattern=pattern,
                        gop_size=gop, faststart=True)
            tmp.replace(p)
        clips.append(p)
    return clips


def count_frames(path: Path) -> int:
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return sum(1 for p in c.demux(s) if p.size)


def _pyav_decode_all(path: Path, threads: int, rgb: str = "") -> int:
    """Decode every frame; rgb: '' (no conversion), 'shared' (one VideoReformatter for the clip, i.e.
    one swscale context) or 'per-frame' (frame.to_ndarray(format='rgb24'): a new context per frame)."""
    import av
    from av.video.reformatter import VideoReformatter

    n = 0
    reformatter = VideoReformatter()
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.codec_context.thread_type = "AUTO"
        s.codec_context.thread_count = threads
        for f in c.decode(s):
            if rgb == "shared":
                reformatter.reformat(f, format="rgb24").to_ndarray()
            elif rgb:
                f.to_ndarray(format="rgb24")
            n += 1
    return n


def _ffmpeg(path: Path, threads: int, binary: str) -> None:
    subprocess.run([binary, "-nostdin", "-v", "error", "-threads", str(threads), "-i", str(path), "-map", "0:v:0",
                    "-f", "null", "-"], check=True, capture_output=True, timeout=600)


def bench_decode(clips: Sequence[Path], *, frame_spec, threads: int = 0, min_time_s: float = 2.0,
                 rounds: int = 5, pool_workers: Sequence[int] = (1, 2),
                 progress: common.Progress | None = None) -> dict:
    """Every method on every clip, interleaved in rounds (fair on a shared machine)."""
    from vidjudge.server.decode import DecodePool, decode_video
    from vidjudge.server.types import DecodeLimits, VideoSource

    progress = progress or common.Progress()
    ffmpeg = shutil.which("ffmpeg")
    limits = DecodeLimits()
    fns: dict[tuple[str, str], Callable[[], int | None]] = {}
    info: dict[tuple[str, str], dict] = {}
    with contextlib.ExitStack() as stack:
        pools = {w: stack.enter_context(DecodePool(w, limits, hwaccel="none")) for w in pool_workers}
        for clip in clips:
            total = count_frames(clip)
            src = VideoSource(path=clip)

            def ours(seek: bool, src=src) -> Callable[[], None]:
                return lambda: decode_video(src, frame_spec.decode_request, limits, hwaccel="none", threads=threads,
                                            seek=seek, skip_nonref=seek).info.frames_decoded

            def pooled(pool, n: int, src=src) -> Callable[[], int]:
                def fn() -> int:
                    for f in [pool.submit(src, frame_spec.decode_request) for _ in range(n)]:
                        f.result(timeout=120)
                    return n  # videos per call: the pool is kept full
                return fn

            methods: list[tuple[str, Callable]] = []
            if ffmpeg:
                methods.append(("ffmpeg -f null", lambda clip=clip: _ffmpeg(clip, threads, ffmpeg)))
            methods += [
                ("pyav decode-all (no conversion)", lambda clip=clip: _pyav_decode_all(clip, threads)),
                ("pyav decode-all + rgb24, one swscale ctx",
                 lambda clip=clip: _pyav_decode_all(clip, threads, "shared")),
                ("pyav decode-all + rgb24, frame.to_ndarray",
                 lambda clip=clip: _pyav_decode_all(clip, threads, "per-frame")),
                ("vidjudge sampled, full sequential", ours(False)),
                ("vidjudge sampled, seeking (server default)", ours(True)),
            ]
            for name, fn in methods:
                got = fn()  # the number of frames this method decodes (warm-up too)
                decoded = got if name.startswith("pyav") or name.startswith("vidjudge") else total
                info[(clip.name, name)] = {"frames_decoded": decoded, "frames_in_clip": total}
                fns[(clip.name, name)] = (lambda fn=fn: (fn(), 1)[1])
            seeking = info[(clip.name, "vidjudge sampled, seeking (server default)")]["frames_decoded"]
            for w, pool in pools.items():
                name = f"vidjudge DecodePool, {w} worker(s)"
                fns[(clip.name, name)] = pooled(pool, 2 * w)
                info[(clip.name, name)] = {"frames_decoded": seeking, "frames_in_clip": total}
        timed = common.interleaved({f"{c}: {m}": fn for (c, m), fn in fns.items()}, rounds=rounds,
                                   min_time_s=min_time_s, warmup=1, progress=progress)
    rows = []
    for (clip, method), meta in info.items():
        t = timed[f"{clip}: {method}"]
        per = t["s_per_unit"]
        rows.append({"clip": clip, "method": method, "videos_per_s": 1 / per,
                     "decoded_frames_per_s": meta["frames_decoded"] / per,
                     "content_frames_per_s": meta["frames_in_clip"] / per, **meta, "ms_per_video": 1000 * per,
                     "spread": t["max_s_per_unit"] / t["min_s_per_unit"], "calls": t["calls"]})
    for r in rows:
        base = next(x for x in rows if x["clip"] == r["clip"] and x["method"].startswith("pyav decode-all (no"))
        r["vs_pyav_decode_all"] = common.ratio(r["videos_per_s"], base["videos_per_s"])
    return {"rows": rows, "ffmpeg": ffmpeg or None, "threads": threads, "rounds": rounds,
            "frame_spec": [frame_spec.num_frames, frame_spec.height, frame_spec.width]}


# --------------------------------------------------------------------------- encoder


def bench_encoder(bundle_dir: Path, *, backends: Sequence[str] = ("onnxruntime", "torch"),
                  batch_sizes: Sequence[int] = (1, 2, 4, 8, 16), threads: int = 0, min_time_s: float = 1.0,
                  rounds: int = 5, progress: common.Progress | None = None) -> dict:
    from vidjudge.server.bundle import load_bundle
    from vidjudge.server.encoder import create_encoder

    progress = progress or common.Progress()
    bundle = load_bundle(bundle_dir)
    grid = tuple(bundle.manifest.vision.grid_thw)
    frames = bundle.manifest.frames.num_frames
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
            enc = create_encoder(backend, onnx_path=bundle.encoder_path, checkpoint_dir=bundle.llm_path,
                                 grid_thw=grid, threads=threads or None)
        except Exception as e:  # noqa: BLE001 - report a backend that cannot run here, go on
            errors.append({"backend": backend, "error": f"{type(e).__name__}: {e}"})
            continue
        try:
            shape = enc.input_shape
            mine = {}
            for b in batch_sizes:
                x = rng.standard_normal((b, *enc.input_shape), dtype=np.float32)
                points.append((enc.name, b))
                mine[f"{enc.name} b={b}"] = (lambda enc=enc, x=x, b=b: (enc.encode(x), b)[1])
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
    return {"rows": rows, "errors": errors, "grid_thw": grid, "input_shape": list(shape) if shape else None,
            "frames_per_video": frames, "threads": threads, "rounds": rounds}


# --------------------------------------------------------------------------- llm


def bench_llm(bundle_dir: Path, *, batch_sizes: Sequence[int] = (1, 2, 4, 8, 16, 32), prompt: str,
              threads: int = 0, min_time_s: float = 1.0, rounds: int = 5,
              progress: common.Progress | None = None) -> dict:
    import torch

    from vidjudge.server.bundle import load_bundle
    from vidjudge.server.scorer.base import ScoreJob
    from vidjudge.server.scorer.positions import mrope_positions
    from vidjudge.server.scorer.transformers_backend import TransformersScorer
    from vidjudge.server.seam_shim import EncodedVideo

    progress = progress or common.Progress()
    bundle = load_bundle(bundle_dir)
    m = bundle.manifest
    scorer = TransformersScorer(bundle.llm_path, video_token_id=bundle.video_token_id,
                                merge_size=m.preprocess.merge_size, tokens_per_second=m.vision.tokens_per_second,
                                threads=threads)
    rng = np.random.default_rng(0)
    dims = [d for d in bundle.dimensions.values() if prompt or not d.requires_prompt]
    grid = tuple(m.vision.grid_thw)
    spgt = m.preprocess.temporal_patch_size / 2.0  # frames sampled at 2 fps
    embeds = (0.2 * rng.standard_normal((m.vision.num_tokens, m.vision.hidden_size))).astype(np.float32)
    video = EncodedVideo(embeds, grid, spgt)
    jobs_all = [ScoreJob(bundle.prompt_ids(d, prompt), video, d.level_token_ids) for d in dims]
    lengths = [len(j.prompt.prefix) + m.vision.num_tokens + len(j.prompt.suffix) for j in jobs_all]

    # Baseline, the reference way, on the scorer's own weights (no second copy of the model): the
    # decoder on the whole prompt, the LM head at every position (what HF's forward returns as
    # .logits by default), full-vocabulary log-softmax at the last position.
    j = jobs_all[0]
    p = len(j.prompt.prefix)
    ids = torch.tensor([*j.prompt.prefix, *[bundle.video_token_id] * m.vision.num_tokens, *j.prompt.suffix])
    pos = torch.from_numpy(mrope_positions(p, grid, m.preprocess.merge_size, spgt, m.vision.tokens_per_second,
                                           len(j.prompt.suffix)))[:, None, :]
    lm, head, embed = scorer._lm, scorer._head, scorer._embed

    def reference() -> int:
        with torch.inference_mode():
            emb = embed(ids)[None].clone()
            emb[0, p:p + m.vision.num_tokens] = torch.from_numpy(embeds)
            hidden = lm(inputs_embeds=emb, position_ids=pos, use_cache=False).last_hidden_state
            logits = head(hidden)
            torch.log_softmax(logits[0, -1].double(), -1)
        return 1

    fns: dict[str, Callable[[], int]] = {"reference": reference}
    for b in batch_sizes:
        jobs = [jobs_all[i % len(jobs_all)] for i in range(b)]
        fns[f"b={b}"] = (lambda jobs=jobs, b=b: (scorer.score(jobs), b)[1])
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
    d.add_argument("--videos", metavar="DIR|GLOB|FILE", help="Clips to decode (default: generated 720p H.264).")
    d.add_argument("--clip-size", default="1280x720", metavar="WxH", help="Generated clips: size (default 1280x720).")
    d.add_argument("--clip-frames", type=int, default=120, help="Generated clips: frames (default 120 = 5 s).")
    d.add_argument("--clip-fps", type=float, default=24.0, help="Generated clips: frame rate (default 24).")
    d.add_argument("--pool-workers", default="1,2", metavar="N,M",
                   help="DecodePool sizes to measure (default 1,2; '' to skip).")
    e = ap.add_argument_group("encoder")
    e.add_argument("--backends", default="onnxruntime,torch", help="Encoder backends (default onnxruntime,torch).")
    e.add_argument("--batch-sizes", default="1,2,4,8,16", help="Encoder batch sizes (default 1,2,4,8,16).")
    g = ap.add_argument_group("llm")
    g.add_argument("--llm-batch-sizes", default="1,2,4,8,16,32", help="Scorer batch sizes (default 1,2,4,8,16,32).")
    g.add_argument("--prompt", default=common.DEFAULT_PROMPT,
                   help="Generation prompt for prompt-dependent dimensions ('' to use only the others).")
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
    bundle = common.resolve_bundle(args.bundle)
    from vidjudge.server.bundle import load_bundle

    spec = load_bundle(bundle).frame_spec
    common.note(f"stages {', '.join(stages)} on {bundle}; {common.describe_environment(env)}")
    results: dict = {}
    if "decode" in stages:
        if args.videos:
            clips = common.resolve_videos(args.videos)
        else:
            w, h = (int(v) for v in args.clip_size.lower().split("x"))
            clips = default_clips(common.default_home(), (w, h), args.clip_frames, args.clip_fps)
        r = bench_decode(clips, frame_spec=spec, threads=args.threads, min_time_s=args.min_time,
                         rounds=args.rounds, pool_workers=_ints(args.pool_workers))
        results["decode"] = r
        print(common.table(r["rows"], [("clip", "clip"), ("method", "method"), ("videos_per_s", "videos/s"),
                                        ("decoded_frames_per_s", "decoded frames/s"),
                                        ("content_frames_per_s", "content frames/s"),
                                        ("frames_decoded", "frames decoded"), ("ms_per_video", "ms/video"),
                                        ("spread", "max/min"), ("vs_pyav_decode_all", "vs pyav decode-all")],
                           f"decode to {spec.num_frames} frames of {spec.height}x{spec.width} "
                           f"(FFmpeg threads: {args.threads or 'auto'})"))
        if not r["ffmpeg"]:
            print("no ffmpeg binary on PATH: ffmpeg -f null not measured; the PyAV decode-all loop (same FFmpeg "
                  "libraries) is the practical limit")
        print()
    if "encoder" in stages:
        r = bench_encoder(bundle, backends=[b for b in args.backends.split(",") if b],
                          batch_sizes=_ints(args.batch_sizes), threads=args.threads, min_time_s=args.min_time,
                          rounds=args.rounds)
        results["encoder"] = r
        print(common.table(r["rows"], [("backend", "backend"), ("batch", "batch"), ("ms_per_batch", "ms/batch"),
                                ("videos_per_s", "videos/s"), ("images_per_s", "images/s"),
                                ("spread", "max/min"), ("vs_batch1", "vs batch 1"), ("vs_torch", "vs torch")],
                           f"visual encoder, grid {tuple(r['grid_thw'])}, {r['frames_per_video']} frames per video"))
        for x in r["errors"]:
            print(f"{x['backend']}: not measured ({x['error']})")
        print()
    if "llm" in stages:
        r = bench_llm(bundle, batch_sizes=_ints(args.llm_batch_sizes), prompt=args.prompt, threads=args.threads,
                      min_time_s=args.min_time, rounds=args.rounds)
        results["llm"] = r
        print(common.table(r["rows"], [("method", "method"), ("batch", "batch"), ("ms_per_batch", "ms/batch"),
                                        ("prefills_per_s", "prefills/s"), ("tokens_per_s", "tokens/s"),
                                        ("spread", "max/min"), ("vs_batch1", "vs batch 1"),
                                        ("vs_reference", "vs reference")],
                           f"LLM prefill ({'/'.join(map(str, sorted(set(r['prompt_tokens']))))} tokens per prompt; "
                           f"dimensions {', '.join(r['dimensions'])}; torch threads {r['torch_threads']})"))
        print()
    config = {"stages": stages, "bundle": str(bundle), "threads": args.threads, "min_time_s": args.min_time,
              "rounds": args.rounds, "batch_sizes": args.batch_sizes, "llm_batch_sizes": args.llm_batch_sizes,
              "videos": args.videos, "pool_workers": args.pool_workers,
              "clip": [args.clip_size, args.clip_frames, args.clip_fps]}
    common.write_json(args.out, common.report("stages", config, results, env))
    return 0


if __name__ == "__main__":
    sys.exit(main())
