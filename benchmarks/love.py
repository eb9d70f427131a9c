"""LOVE: the server vs a LOVE-style reference loop, same bundle, same videos, same run.

    python -m vidjudge.benchmarks.love                    # tiny LOVE bundle on CPU (built on first use), ~3 min
    python -m vidjudge.benchmarks.love --bundle bundles/love --videos clips/ --reference-device cuda --out love.json

1. reference loop: what IntMeGroup/LOVE's scripts do, per skill (one script per skill), one video at a
   time, batch 1: decode the video for the 8 frames and again for the 4 x 32 motion frames, run that
   skill's InternViT + mlp1 and the Swin3D + fast_mlp (the Swin3D runs inside every skill's forward),
   the full teacher-forced conversation through the LLM with every hidden state and the logits of every
   position (as the reference's forward does), then mlpscore on index -4 (MOS skills) or the argmax of
   the answer positions (QA). The bundle's own torch modules and weights are used (the computation
   pattern is what is measured; tests/love_reference.py checks the numbers against the original code);
2. server: a real vidjudge server (ServerThread, gRPC on loopback) loaded at ``--concurrency`` for
   ``--measurement-interval`` seconds, every request asking the three dimensions of one video;
3. prints ``server / reference`` in videos/s (three skills per video on both sides). Before the load each
   video is scored once through the server and compared with the loop's MOS (``max_mos_diff``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from vidjudge.benchmarks import common, loadgen

QA_QUESTION = "Is there a person in the video?"
ANSWERS = {"perception": "The quality of the video is good.",
           "correspondence": "The correspondence of the video and its prompt is good.", "qa": "Yes"}


def tiny_bundle(home: Path) -> Path:
    """The tiny LOVE checkpoints converted by `vidjudge export love` (built once under `home`)."""
    out = home / "love-tiny-bundle"
    if (out / "manifest.json").is_file():
        return out
    from vidjudge.export.love import export_love
    from vidjudge.export.love_tiny import build_love_checkpoints

    c = build_love_checkpoints(home / "love-tiny-checkpoints")
    return export_love(c["perception"], c["correspondence"], c["qa"], c["temporal"], out, overwrite=True)


class ReferenceLoop:
    """LOVE's inference pattern on a bundle's weights: per skill, per video, batch 1, nothing shared."""

    def __init__(self, bundle_dir: Path, device: str = "cpu", dtype: str = "float32"):
        import torch
        from peft import PeftModel
        from transformers import LlamaForCausalLM

        from vidjudge.server.bundle import load_bundle

        self.torch = torch
        self.bundle = load_bundle(bundle_dir)
        self.fam = self.bundle.family
        self.device, self.dtype = torch.device(device), getattr(torch, dtype)
        specs = {s.name: s for s in self.fam.encoders()}
        self.vision = {skill: specs[s.vision].torch_module().to(self.device, self.dtype)
                       for skill, s in self.fam.config.skills.items()}
        self.motion = specs[self.fam.config.motion_encoder].torch_module().to(self.device, self.dtype)
        llm = LlamaForCausalLM.from_pretrained(self.bundle.llm_path, dtype=self.dtype).to(self.device).eval()
        names = list(self.bundle.manifest.adapters)
        self.llm = PeftModel.from_pretrained(llm, str(self.bundle.adapter_path(names[0])), adapter_name=names[0])
        for n in names[1:]:
            self.llm.load_adapter(str(self.bundle.adapter_path(n)), adapter_name=n)
        self.llm.eval()

    def _views(self, path: Path):
        """Decode twice, as the reference's load_video_fast and load_video each open the video."""
        from vidjudge.server.decode import decode_video
        from vidjudge.server.types import DecodeLimits, DecodeRequest, VideoSource

        views = self.fam.decode_request().views
        out = {}
        for v in views:
            d = decode_video(VideoSource(path=path), DecodeRequest((v,)), DecodeLimits(), hwaccel="none")
            out.update(d.views)
        return out

    def score(self, path: Path, prompt: str) -> dict[str, float]:
        torch = self.torch
        fam, c = self.fam, self.fam.config
        scores = {}
        with torch.inference_mode():
            for skill in ("perception", "correspondence", "qa"):
                views = self._views(path)  # every skill's script decodes the video again
                from vidjudge.server.types import DecodedVideo, VideoInfo

                pre = fam.preprocess(DecodedVideo(views, VideoInfo(0, 0, 0.0, 0.0, "")))
                frames = torch.from_numpy(pre.inputs[c.skills[skill].vision][None]).to(self.device, self.dtype)
                clips = torch.from_numpy(pre.inputs[c.motion_encoder][None]).to(self.device, self.dtype)
                vit = self.vision[skill](frames)[0]
                motion = self.motion(clips)[0, c.skills[skill].motion_row]
                dim = self.bundle.dimensions[f"love.{skill}"]
                question = dim.render_question(prompt, {"question": QA_QUESTION})
                ids = torch.tensor(fam.prompt_ids(question, ANSWERS[skill] + "<|im_end|>"), device=self.device)
                self.llm.set_adapter(skill)
                emb = self.llm.get_input_embeddings()(ids[None]).clone()[0]
                ctx = ids == fam.tokenizer.added[c.context_token]
                pos = torch.nonzero(ctx)[:, 0]
                emb[pos[:-(c.clips * 1)]] = vit.to(emb.dtype)
                emb[pos[-c.clips:]] = motion.to(emb.dtype)
                out = self.llm(inputs_embeds=emb[None], output_hidden_states=True)  # logits at every position
                if skill == "qa":
                    answer = int(torch.argmax(out.logits[0, -3]))
                    scores[f"love.{skill}"] = float(answer == fam.tokenizer.token_to_id("Yes"))
                else:
                    h = out.hidden_states[-1][0, -4].float().cpu().numpy()
                    scores[f"love.{skill}"] = self.bundle.heads[f"love.{skill}"].mlp(h) * 100.0
        return scores


def run_reference(loop: ReferenceLoop, videos: Sequence[Path], prompt: str, seconds: float,
                  max_videos: int | None) -> dict:
    scores, t0, n = {}, time.perf_counter(), 0
    while True:
        v = videos[n % len(videos)]
        s = loop.score(v, prompt)
        scores.setdefault(str(v), s)
        n += 1
        elapsed = time.perf_counter() - t0
        if (max_videos is not None and n >= max_videos) or (max_videos is None and elapsed >= seconds):
            break
    return {"videos": n, "seconds": elapsed, "videos_per_s": n / elapsed, "scores": scores}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", help="A LOVE bundle (default: the tiny one, built on first use).")
    ap.add_argument("--videos", help="Folder of videos (default: generated clips).")
    ap.add_argument("--count", type=int, default=4, help="Generated clips (default 4).")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--measurement-interval", type=float, default=60.0, metavar="SECONDS")
    ap.add_argument("--warmup", type=int, default=4)
    ap.add_argument("--reference-interval", type=float, default=60.0, metavar="SECONDS")
    ap.add_argument("--reference-videos", type=int, metavar="N", help="Reference loop: exactly N videos.")
    ap.add_argument("--reference-device", default="cpu")
    ap.add_argument("--reference-dtype", default="float32")
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--prompt", default=common.DEFAULT_PROMPT)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    ap.add_argument("--out", metavar="FILE")
    args = ap.parse_args(argv)
    common.quiet_libraries()
    bundle = Path(args.bundle) if args.bundle else tiny_bundle(common.default_home())
    videos = common.resolve_videos(args.videos, count=args.count)
    dims = ["love.perception", "love.correspondence", "love.qa"]
    from vidjudge.client import build_request

    reqs = [build_request(v.read_bytes(), prompt=args.prompt, dimensions=dims,
                          inputs={"love.qa": {"question": QA_QUESTION}}) for v in videos]
    common.note("reference loop ...")
    loop = ReferenceLoop(bundle, device=args.reference_device, dtype=args.reference_dtype)
    loop.score(videos[0], args.prompt)  # warm-up
    ref = run_reference(loop, videos, args.prompt, args.reference_interval, args.reference_videos)
    del loop
    common.note(f"reference: {ref['videos_per_s']:.3f} videos/s; starting the server ...")
    overrides = common.parse_overrides(args.overrides)
    plan = loadgen.LoadPlan(measurement_interval_s=args.measurement_interval, warmup=args.warmup,
                            timeout_s=args.timeout)
    with loadgen.started_server(bundle, overrides) as (target, srv, config):
        loadgen.wait_ready(target)
        from vidjudge.client import JudgeClient

        diffs = []
        with JudgeClient(target, timeout=args.timeout) as cl:
            for v in videos:
                r = cl.score(v, prompt=args.prompt, dimensions=dims, inputs={"love.qa": {"question": QA_QUESTION}})
                want = ref["scores"].get(str(v))
                if want:
                    diffs += [abs(r.scores[d].score - want[d]) for d in dims[:2]]
        (row,) = loadgen.run_levels(target, reqs, concurrencies=[args.concurrency], plan=plan,
                                    stats=loadgen.registry_snapshot(srv.server.pipeline.metrics.registry),
                                    decode_workers=config["decode"]["workers"])
    ratio = common.ratio(row["videos_per_s"], ref["videos_per_s"])
    results = {"reference": {k: v for k, v in ref.items() if k != "scores"}, "server": row, "ratio": ratio,
               "max_mos_diff": max(diffs) if diffs else None, "concurrency": args.concurrency,
               "videos": [str(v) for v in videos], "server_config": config}
    print(f"reference loop {ref['videos_per_s']:.3f} videos/s, server {row['videos_per_s']:.3f} videos/s "
          f"(concurrency {args.concurrency}): {ratio:.2f}x; max |MOS served - loop| "
          f"{results['max_mos_diff']:.2e}")
    common.write_json(args.out, common.report("love", vars(args), results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
