"""`vidjudge export videobench CHECKPOINT OUT`: Video-Bench's nine dimensions on an open Qwen2.5-VL.

Video-Bench (CVPR 2025, DESIGN.md 2.2) judges with GPT-4o through chains of calls; here the same method
runs on a local Qwen2.5-VL checkpoint, served by the `qwen2_5_vl_frames` family (frames at 2 per second
as images, capped by `max_frames`). Every dimension exists in two modes, both in the dimension file:

- faithful, under Video-Bench's code name: the alignment dimensions (color, object_class, scene,
  action, overall_consistency) as its five-step chain; the static quality ones (aesthetic_quality,
  imaging_quality) as one call with the other generators' first frames as unscored references; the
  dynamic ones (temporal_consistency, motion_effects) as one call over every generator's video of a
  prompt (group scoring), read one score per video in order;
- fast, `<name>.fast`: the same rubric asked once and read with level tokens in a single forward.

The rubrics and instructions are written for vidjudge: the facts of the method (steps, what each sees,
scales, result formats) carry over from Video-Bench's repository, its prose does not.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vidjudge import __version__
from vidjudge.export.hf import (CHECKED_DIRS, ExportError, check_frame_size, preprocessor_stats, read_qwen_config,
                                start_bundle)
from vidjudge.server.bundle import FORMAT_VERSION, MANIFEST, Manifest, checksum_tree
from vidjudge.server.dimensions import dimensions_text, parse_dimensions, render_dimensions
from vidjudge.server.families.qwen2_5_vl_frames import CHATML, ENCODER, VIEW, HfJsonTokenizer

# ---------------------------------------------------------------------------------------------- rubrics

ALIGNMENT = {  # name: (aspect, scale max, rubric)
    "color": ("colour", 3, "3: every colour the prompt names appears on the right object. 2: the colours are "
              "there but on the wrong objects, or some are missing. 1: the prompt's colours are absent."),
    "object_class": ("objects", 3, "3: every object the prompt names is present and recognisable. 2: some are "
                     "missing or hard to recognise. 1: the prompt's objects are absent."),
    "scene": ("scene", 3, "3: the setting is the one the prompt describes. 2: it resembles it but details "
              "differ. 1: the setting is unrelated to the prompt."),
    "action": ("action", 3, "3: the action the prompt describes happens, done by the right subject. 2: it "
               "happens partly, or the wrong subject does it. 1: the action does not happen."),
    "overall_consistency": ("overall consistency", 5, "5: the video shows everything the prompt says and "
                            "nothing against it. 4: one minor detail is off. 3: several details are off but "
                            "the main content matches. 2: the main content only partly matches. 1: the video "
                            "does not show what the prompt describes."),
}
STATIC = {
    "aesthetic_quality": ("aesthetic quality", "5: composition, lighting and colour are pleasing throughout. "
                          "4: pleasing with small flaws. 3: acceptable but plain. 2: unattractive. 1: ugly "
                          "or chaotic."),
    "imaging_quality": ("imaging quality", "5: sharp, clean frames without artefacts. 4: small blur or "
                        "noise. 3: visible blur, noise or artefacts. 2: heavy distortion. 1: the content is "
                        "hard to make out."),
}
DYNAMIC = {
    "temporal_consistency": ("temporal consistency", "5: subjects and background stay the same from frame to "
                             "frame. 4: slight changes. 3: noticeable flicker or changing details. 2: objects "
                             "change identity or shape. 1: the frames do not belong together."),
    "motion_effects": ("motion", "5: motion is natural, smooth and clearly visible. 4: natural with small "
                       "hitches. 3: motion is weak or a little unnatural. 2: jerky or implausible. 1: no "
                       "motion, or absurd motion."),
}
LEVELS = {3: ["good", "fair", "bad"], 5: ["excellent", "good", "fair", "poor", "bad"]}


def _alignment_chain(name: str, aspect: str, top: int, rubric: str, max_tokens: int) -> dict[str, Any]:
    """Video-Bench's alignment chain: prompt-blind description, two question-asking assistants (text only),
    answers from the frames, the judgement ending in an "Evaluation Result" line."""
    return dict(
        name=name, head="chain", scale=[1.0, float(top)], parser="evaluation_result",
        description=f"Text-video alignment: {aspect} (Video-Bench's five-step chain of calls).",
        texts={"aspect": aspect, "rubric": rubric},
        step=[
            dict(system="You describe generated videos precisely from their frames.",
                 user=["These are {n_frames} frames of a video.", "{frames}",
                       "Describe what the video shows: subjects, their colours, the setting, what happens. "
                       "Start your description with '[Video Description]:'."],
                 keep="description", extract=r"\[Video Description\]:\s*(.*)", max_tokens=max_tokens),
            dict(system="You check whether a generated video matches its text prompt, looking at {aspect}.",
                 user=["The text prompt: {prompt}\n\nA description of the video:\n{description}\n\n"
                       "Ask at most two short questions whose answers would reveal a mismatch in {aspect}, "
                       "as '[Your questions]: ...', or write '[Your questions]: none'."],
                 keep="question_one", extract=r"\[Your questions?\]:\s*(.*)", max_tokens=max_tokens),
            dict(system="You check whether a generated video matches its text prompt, looking at {aspect}; "
                        "another assistant has asked questions already.",
                 user=["The text prompt: {prompt}\n\nA description of the video:\n{description}\n\n"
                       "The other assistant asked: {question_one}\n\nAsk at most two different questions, as "
                       "'[Your questions]: ...', or write '[Your questions]: none'."],
                 keep="question_two", extract=r"\[Your questions?\]:\s*(.*)", max_tokens=max_tokens),
            dict(system="You answer questions about a video from its frames.",
                 user=["The text prompt: {prompt}\n\nQuestions:\n- {question_one}\n- {question_two}\n\n"
                       "The frames:", "{frames}", "Answer each question from what the frames show, as "
                       "'[Answers]: ...'."],
                 keep="answers", max_tokens=max_tokens),
            dict(system="You rate how well a generated video matches its prompt in {aspect}, on this scale:\n"
                        "{rubric}",
                 user=["A description of the video:\n{description}\n\nAnswers to checking questions:\n{answers}"
                       "\n\nThe text prompt: {prompt}\n\nThe frames:", "{frames}",
                       "Rate the video. End with exactly: '[Evaluation Result]: (video: SCORE, because REASON)'."],
                 max_tokens=max_tokens),
        ])


def _static(name: str, aspect: str, rubric: str, max_tokens: int) -> dict[str, Any]:
    """One call: the other generators' first frames for the same prompt as unscored references, then the
    target's frames; the answer is '- video: SCORE, because ...' (Video-Bench reads the first ': N')."""
    return dict(
        name=name, head="chain", scale=[1.0, 5.0], parser="first_match", score_pattern=r":\s*([0-9]+)",
        description=f"Static quality: {aspect} (one call, other generators' first frames as references).",
        texts={"aspect": aspect, "rubric": rubric},
        step=[dict(system="You rate the {aspect} of generated videos from 1 to 5:\n{rubric}\nExamples from other "
                          "models for the same prompt are shown first to calibrate you; do not rate them.",
                   user=["Examples from other models:\n", "{references}",
                         "These are the frames of the video you are rating:\n", "{frames}",
                         "Answer in this format: '- video: SCORE, because ...'"],
                   max_tokens=max_tokens)])


def _dynamic(name: str, aspect: str, rubric: str, max_tokens: int) -> dict[str, Any]:
    """One call over every generator's video of a prompt; one score per video, in the order shown."""
    return dict(
        name=name, head="group_chain", scale=[1.0, 5.0],
        description=f"Dynamic quality: {aspect} (one call over every generator's video of a prompt).",
        texts={"aspect": aspect, "rubric": rubric},
        step=[dict(system="You compare the {aspect} of videos generated for the same prompt, from 1 to 5:\n{rubric}",
                   user=["These are the frames of videos generated for the prompt '{prompt}'.", "{all_videos}",
                         "For each video, in the order shown, write one line: 'NAME: SCORE, because REASON'."],
                   max_tokens=max_tokens)])


def _fast(name: str, aspect: str, top: int, rubric: str, alignment: bool) -> dict[str, Any]:
    """The same rubric asked once, read with level tokens (one forward, no generation)."""
    about = "the text prompt '{prompt}'" if alignment else "the video"
    return dict(name=f"{name}.fast", head="level_token", scale=[1.0, float(top)], levels=LEVELS[top],
                description=f"{aspect} in one forward (level tokens), Video-Bench's rubric.",
                question=f"Rate the {aspect} of this video against {about} on this scale:\n{rubric}\n"
                         f"Answer with one word.",
                answer_prefix=f"The {aspect} is")


def videobench_dimensions(max_tokens: int = 512) -> list[dict[str, Any]]:
    """All nine, faithful then fast."""
    dims = [_alignment_chain(n, a, top, r, max_tokens) for n, (a, top, r) in ALIGNMENT.items()]
    dims += [_static(n, a, r, max_tokens) for n, (a, r) in STATIC.items()]
    dims += [_dynamic(n, a, r, max_tokens) for n, (a, r) in DYNAMIC.items()]
    dims += [_fast(n, a, top, r, True) for n, (a, top, r) in ALIGNMENT.items()]
    dims += [_fast(n, a, 5, r, False) for n, (a, r) in {**STATIC, **DYNAMIC}.items()]
    return dims


def export_videobench(checkpoint: Path, out: Path, *, height: int = 448, width: int = 448, max_frames: int = 16,
                      max_tokens: int = 512, name: str | None = None, overwrite: bool = False) -> Path:
    """A frames-family bundle of a local Qwen2.5-VL checkpoint with Video-Bench's dimensions."""
    from vidjudge.export.vision import export_vision_onnx

    checkpoint, out = Path(checkpoint), Path(out)
    vc, tc = read_qwen_config(checkpoint)
    check_frame_size(vc, height, width)
    if max_frames < 1:
        raise ExportError("max_frames must be at least 1")
    llm_dir = start_bundle(checkpoint, out, overwrite)
    patch, tpatch, merge = vc["patch_size"], vc["temporal_patch_size"], vc["spatial_merge_size"]
    grid = (1, height // patch, width // patch)  # one image: the frame repeated over the temporal patch
    onnx = f"encoder/{ENCODER}.onnx"
    export_vision_onnx(llm_dir, grid, out / onnx)
    dims = parse_dimensions(dimensions_text(videobench_dimensions(max_tokens)), HfJsonTokenizer(llm_dir).encode,
                            source="Video-Bench dimensions")
    (out / "dimensions.toml").write_text(render_dimensions(list(dims.values())))
    mean, std = preprocessor_stats(checkpoint)
    n_tokens = grid[1] * grid[2] // (merge * merge)
    manifest = Manifest(
        format_version=FORMAT_VERSION, name=name or f"videobench-{checkpoint.resolve().name}",
        family="qwen2_5_vl_frames", vidjudge_version=__version__, source=str(checkpoint.resolve()),
        views={VIEW: dict(sampler="fps_step", num_frames=max_frames, height=height, width=width, resize="bicubic")},
        encoders={ENCODER: dict(view=VIEW, onnx=onnx, input_shape=(grid[1] * grid[2], 3 * tpatch * patch * patch),
                                output_shape=(n_tokens, vc.get("out_hidden_size", tc.get("hidden_size"))))},
        llm=dict(path="llm", prompt_template=CHATML),
        family_config=dict(patch_size=patch, temporal_patch_size=tpatch, merge_size=merge, mean=mean, std=std,
                           per_second=2.0, max_images_per_prompt=max(64, 4 * max_frames)),
        checksums=checksum_tree(out, [d for d in CHECKED_DIRS if (out / d).is_dir()]),
    )
    (out / MANIFEST).write_text(manifest.model_dump_json(indent=2) + "\n")
    return out


def export_videobench_tiny(out: Path, *, seed: int = 0, overwrite: bool = False,
                           checkpoint: Path | None = None) -> Path:
    """Video-Bench on the tiny random Qwen2.5-VL (tests, benchmarks): 112x112 frames, at most 8 per video,
    short answers (32 tokens) so CPU runs stay quick."""
    import tempfile

    from vidjudge.export.tiny import build_tiny_checkpoint

    with tempfile.TemporaryDirectory(prefix="vidjudge-vb-") as tmp:
        ckpt = checkpoint or build_tiny_checkpoint(Path(tmp) / "tiny-qwen2_5_vl", seed=seed)
        return export_videobench(ckpt, out, height=112, width=112, max_frames=8, max_tokens=32,
                                 name="videobench-tiny", overwrite=overwrite)


__all__ = ["export_videobench", "export_videobench_tiny", "videobench_dimensions"]
