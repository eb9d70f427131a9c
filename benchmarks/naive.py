"""The naive reference loop: how reference implementations of MLLM judges score videos.

    python -m vidjudge.benchmarks.naive                       # tiny bundle, generated clips
    python -m vidjudge.benchmarks.naive --bundle bundles/qwen7b --videos clips/ --device cuda --out naive.json

One video at a time, nothing shared between videos or dimensions:

1. decode the sampled frames in this process with PyAV (vidjudge's own sampler, so both
   paths see the same frames and their scores can be compared),
2. patchify (the same NumPy patchify the server uses; HF's video processor needs torchvision),
3. for each dimension: the untouched Hugging Face Qwen2_5_VLForConditionalGeneration forward,
   its own vision tower on ``pixel_values_videos`` (so the video is encoded once per
   dimension), logits at every position (the default; as the reference code does), then a
   log-softmax over the full vocabulary at the last position and the level-word softmax.

Position ids are given explicitly by Qwen2.5-VL's original mRoPE rule, exactly as
tests/integration/test_parity.py's `hf_reference` does, so the scores equal the served ones.
Being generous to the reference, each video is decoded only once (LOVE's reference decodes
it twice) and the model is loaded once.

Reports videos/s (decode included) and the mean seconds per stage.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vidjudge.benchmarks import common


@dataclass
class NaiveResult:
    scores: dict[str, tuple[float, list[float]]]
    decode_s: float
    preprocess_s: float
    forward_s: float


class NaiveJudge:
    """The reference path for one bundle: HF model loaded once, everything else per video."""

    def __init__(self, bundle_dir: Path, *, device: str = "cpu", dtype: str = "float32", threads: int = 0):
        import torch
        from transformers import Qwen2_5_VLForConditionalGeneration

        from vidjudge.server.bundle import load_bundle
        from vidjudge.server.preprocess import PatchSpec

        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        self.bundle = load_bundle(bundle_dir)
        self.device = torch.device(device)
        self.model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
            self.bundle.llm_path, dtype=getattr(torch, dtype)).eval().to(self.device)
    def dimensions(self, prompt: str, names: Sequence[str] = ()):
        """The named ones (level-token heads only: the reference loop reads level words), else every
        level-token dimension the request can be scored on."""
        dims = self.bundle.dimensions
        if names:
            chosen = [dims[n] for n in dict.fromkeys(names)]
            other = [d.name for d in chosen if d.head != "level_token"]
            if other:
                raise ValueError(f"the naive loop scores level-token dimensions only, not {', '.join(other)}")
            return chosen
        return [d for d in dims.values() if d.head == "level_token" and (prompt or not d.requires_prompt)]

    def score(self, video: Path, prompt: str, dims) -> NaiveResult:
        torch = self.torch
        from vidjudge.server.decode import decode_video
        from vidjudge.server.scorer.positions import mrope_positions
        from vidjudge.server.types import DecodeLimits, VideoSource

        fam = self.bundle.family
        t0 = time.perf_counter()
        # threads=0: FFmpeg's own choice (every core), what a one-video-at-a-time loop gets from PyAV by default;
        # the server's workers decode with one thread each instead.
        decoded = decode_video(VideoSource(path=Path(video)), fam.decode_request(), DecodeLimits(), hwaccel="none",
                               threads=0)
        t1 = time.perf_counter()
        pre = fam.preprocess(decoded)
        pixel_values = torch.from_numpy(pre.inputs["vision"]).to(self.device, self.model.dtype)
        t2 = time.perf_counter()
        out = {}
        for dim in dims:
            prefix, suffix = fam.prompt_ids(dim.render_question(prompt), dim.answer_prefix)
            input_ids = torch.tensor([[*prefix, *[fam.video_token_id] * fam.num_tokens, *suffix]], device=self.device)
            pos = mrope_positions(len(prefix), fam.grid, fam.config.merge_size, pre.seconds_per_t,
                                  fam.config.tokens_per_second, len(suffix))
            with torch.no_grad():
                logits = self.model(input_ids=input_ids, pixel_values_videos=pixel_values,
                                    video_grid_thw=torch.tensor([fam.grid], device=self.device),
                                    second_per_grid_ts=torch.tensor([pre.seconds_per_t], device=self.device),
                                    position_ids=torch.from_numpy(pos)[:, None, :].to(self.device)).logits[0, -1]
            lp = torch.log_softmax(logits.double(), -1)[list(dim.level_token_ids)].cpu().numpy()
            value, probs = dim.score(lp)
            out[dim.name] = (float(value), [float(x) for x in probs])
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        t3 = time.perf_counter()
        return NaiveResult(out, t1 - t0, t2 - t1, t3 - t2)

    def close(self) -> None:
        self.model = None


def run_naive(bundle_dir: Path, videos: Sequence[Path], *, prompt: str, dimensions: Sequence[str] = (),
              seconds: float = 20.0, max_videos: int | None = None, min_videos: int = 4, warmup: int = 1,
              device: str = "cpu", dtype: str = "float32", threads: int = 0,
              progress: common.Progress | None = None) -> dict:
    """Score `videos` round-robin, one at a time, for `seconds` (at least `min_videos`, at most `max_videos`)."""
    progress = progress or common.Progress()
    t_load = time.perf_counter()
    judge = NaiveJudge(bundle_dir, device=device, dtype=dtype, threads=threads)
    load_s = time.perf_counter() - t_load
    dims = judge.dimensions(prompt, dimensions)
    try:
        for i in range(warmup):
            judge.score(videos[i % len(videos)], prompt, dims)
        scores: dict[str, dict] = {}
        n = 0
        dec = pre = fwd = 0.0
        hard_cap = max_videos or 100_000
        t0 = time.perf_counter()
        while n < hard_cap:
            v = videos[n % len(videos)]
            r = judge.score(v, prompt, dims)
            n += 1
            dec, pre, fwd = dec + r.decode_s, pre + r.preprocess_s, fwd + r.forward_s
            scores.setdefault(str(v), {k: s for k, (s, _) in r.scores.items()})
            elapsed = time.perf_counter() - t0
            progress.update(f"naive: {n} videos, {n / elapsed:.2f} videos/s")
            if max_videos is None and n >= min_videos and elapsed >= seconds:
                break
            if elapsed >= max(seconds, 1.0) * 10 and n >= 1:  # never more than 10x the asked time
                break
        elapsed = time.perf_counter() - t0
        progress.done()
    finally:
        judge.close()
    return {"videos": n, "elapsed_s": elapsed, "videos_per_s": n / elapsed, "model_load_s": load_s,
            "dimensions": [d.name for d in dims], "forwards_per_video": len(dims),
            "mean_ms": {"decode": 1000 * dec / n, "preprocess": 1000 * pre / n, "forward": 1000 * fwd / n,
                        "total": 1000 * elapsed / n},
            "device": device, "dtype": dtype, "scores": scores}


def build_parser() -> argparse.ArgumentParser:
    from vidjudge.benchmarks.loadgen import add_video_args

    ap = argparse.ArgumentParser(
        prog="python -m vidjudge.benchmarks.naive",
        description=__doc__.split("\n\n", 1)[0] + " Reports videos/s.",
        epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", help="Bundle directory (default: the tiny random bundle, built on first use).")
    ap.add_argument("--measurement-interval", type=float, default=20.0, metavar="SECONDS",
                    help="Score videos for this long (default 20; at least --min-videos, at most 10x this).")
    ap.add_argument("--requests", type=int, metavar="N", help="Score exactly N videos instead of for a time.")
    ap.add_argument("--min-videos", type=int, default=4, help="Score at least this many (default 4).")
    ap.add_argument("--warmup", type=int, default=1, metavar="N", help="Videos scored first, excluded (default 1).")
    ap.add_argument("--prompt", default=common.DEFAULT_PROMPT, help="Generation prompt ('' for none).")
    ap.add_argument("--dimensions", default="", metavar="A,B",
                    help="Comma-separated dimensions (default: every one the request can be scored on).")
    ap.add_argument("--device", default="cpu", help="torch device for the model (cpu, cuda, cuda:1).")
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                    help="Model dtype (default float32, as the server's transformers scorer).")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default).")
    add_video_args(ap)
    ap.add_argument("--out", metavar="FILE", help="Write the results as JSON.")
    return ap


def main(argv: list[str] | None = None) -> int:
    from vidjudge.benchmarks.loadgen import videos_from_args

    args = build_parser().parse_args(argv)
    common.quiet_libraries()
    bundle = common.resolve_bundle(args.bundle)
    videos = videos_from_args(args)
    dims = [d.strip() for d in args.dimensions.split(",") if d.strip()]
    env = common.environment()
    common.note(f"naive loop on {bundle}, {len(videos)} videos; {common.describe_environment(env)}")
    r = run_naive(bundle, videos, prompt=args.prompt, dimensions=dims, seconds=args.measurement_interval,
                  max_videos=args.requests, min_videos=args.min_videos, warmup=args.warmup, device=args.device,
                  dtype=args.dtype, threads=args.threads)
    row = {"videos": r["videos"], "videos_per_s": r["videos_per_s"], **{f"{k}_ms": v for k, v in r["mean_ms"].items()}}
    print(common.table([row], [("videos", "videos"), ("videos_per_s", "videos/s"), ("decode_ms", "decode ms"),
                               ("preprocess_ms", "preprocess ms"), ("forward_ms", "forward ms (all dims)"),
                               ("total_ms", "total ms")],
                       f"naive reference loop ({r['forwards_per_video']} full forwards per video: "
                       f"{', '.join(r['dimensions'])})"))
    baseline = r["mean_ms"]["decode"] / r["mean_ms"]["total"] if r["mean_ms"]["total"] else None
    print(f"\nshare of time in decode: {common.fmt_num(baseline)} (the rest is the model)")
    config = {"bundle": str(bundle), "videos": [str(v) for v in videos], "prompt": args.prompt, "dimensions": dims,
              "device": args.device, "dtype": args.dtype, "threads": args.threads}
    common.write_json(args.out, common.report("naive", config, r, env))
    return 0


if __name__ == "__main__":
    sys.exit(main())
