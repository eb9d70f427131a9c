"""Synthetic videos with graded degradations: the data the default judge is trained and tested on.

Every clip is a pure function of its `ClipSpec`: a clean content clip (moving shapes, a textured
scene under a camera pan, a pan over a detailed city-like canvas, a sweeping gradient with a
scrolling grid) at its own size (96-320 px), frame rate (8-24 fps) and length (1-3 s), degraded by
one of blur, noise, blockiness (down/up-scaling and a low bitrate), flicker, frame freeze or judder
at a severity 0 (clean) .. 4, and written through a real codec (libx264, one thread so the bytes do
not depend on the machine's core count). The label is the level word of the severity: 0 excellent,
1 good, 2 fair, 3 poor, 4 bad (`ClipSpec.level`, `ClipSpec.mos` on the 1..5 scale).

Spatial strengths are given in pixels of the judge's view (`VIEW` px, what the server resizes every
frame to), so a severity looks the same to the judge whatever the clip's own size: a 2-px blur on a
320-px clip is a 0.7-px blur after the resize. Temporal ones (freeze, judder) are long enough to show
in 8 frames sampled at segment centres.

Train and held-out clips never share content: their content seeds are even and odd numbers.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import numpy as np

CONTENTS = ("shapes", "scene", "pan", "gradient")
DEGRADATIONS = ("blur", "noise", "blocky", "flicker", "freeze", "judder")
LEVEL_WORDS = ("excellent", "good", "fair", "poor", "bad")  # severity 0..4; export/tiny.py's level words
SEVERITIES = len(LEVEL_WORDS)
VIEW = 112  # the default judge's frame size (px); degradation strengths are defined at this scale
FPS_CHOICES = (8, 10, 12, 15, 16, 20, 24)
SIZE_RANGE = (96, 320)

# Per severity 1..4 (index 0 = clean). Chosen so that severity 1 is visible but mild at the view size.
BLUR_SIGMA = (0.0, 0.7, 1.1, 1.7, 2.6)  # Gaussian sigma, view px
NOISE_STD = (0.0, 7.0, 13.0, 21.0, 32.0)  # grey levels, grain about one view pixel
BLOCK_FACTOR = (1.0, 1.6, 2.2, 3.0, 4.0)  # effective resolution = VIEW / factor, nearest-neighbour upscaled
BLOCK_CRF = (18, 30, 35, 40, 46)  # x264 constant rate factor (18: visually lossless, 51: worst)
FLICKER_GAIN = (0.0, 0.05, 0.10, 0.16, 0.25)  # frame brightness x (1 +- gain), random sign per frame
FREEZE_FRACTION = (0.0, 0.2, 0.35, 0.5, 0.7)  # part of the clip that is one repeated frame
JUDDER_HOLD = (0.0, 0.5, 0.8, 1.2, 1.8)  # mean hold between frame updates, in sampling strides (clip / 8)
CLEAN_CRF = 18
SAMPLED_FRAMES = 8  # frames the judge samples (temporal strengths are relative to its stride)


@dataclass(frozen=True)
class ClipSpec:
    """One synthetic clip: content, format and degradation. `degradation` is "none" at severity 0."""

    id: str
    content: str
    seed: int  # content seed: what moves where, colours, textures
    width: int
    height: int
    fps: int
    num_frames: int
    degradation: str = "none"
    severity: int = 0

    @property
    def level(self) -> str:
        return LEVEL_WORDS[self.severity]

    @property
    def mos(self) -> float:
        """The label on the judge's 1..5 scale (excellent = 5)."""
        return float(SEVERITIES - self.severity)

    @property
    def filename(self) -> str:
        return f"{self.id}.mp4"

    def degraded(self, degradation: str, severity: int, id: str | None = None) -> "ClipSpec":
        """The same content with another degradation (severity 0 = the clean clip)."""
        if degradation not in DEGRADATIONS and severity:
            raise ValueError(f"unknown degradation {degradation!r}; choose one of {', '.join(DEGRADATIONS)}")
        deg = degradation if severity else "none"
        return replace(self, degradation=deg, severity=severity, id=id or f"{self.id}-{deg}{severity}")


def make_specs(split: str, contents: int, seed: int = 0, per_content: int = SEVERITIES) -> list[ClipSpec]:
    """`contents` content clips of a split ("train" or "heldout"), each as `per_content` clips in a row: the
    clean clip, then copies degraded at severities 1, 2, .., 4, 1, .. by types drawn without repeats
    (cycling through all six). Every content appears at several severities, so a judge cannot learn a
    clip's label from what it shows, only from how it is degraded. Content, size (96-320 px), frame
    rate (8-24 fps) and length (1-3 s) are drawn per content."""
    if split not in ("train", "heldout"):
        raise ValueError("split must be 'train' or 'heldout'")
    parity = 0 if split == "train" else 1
    out = []
    for i in range(contents):
        rng = np.random.default_rng([seed, parity, i])
        content = CONTENTS[int(rng.integers(len(CONTENTS)))]
        w, h = _size(rng)
        fps = int(rng.choice(FPS_CHOICES))
        n = max(SAMPLED_FRAMES, int(round(fps * rng.uniform(1.0, 3.0))))
        base = ClipSpec(id=f"{split}{seed}-{i:05d}-{content}", content=content,
                        seed=2 * (seed * 1_000_003 + i) + parity, width=w, height=h, fps=fps, num_frames=n)
        types = [DEGRADATIONS[j] for j in rng.permutation(len(DEGRADATIONS))]
        out.append(base.degraded("none", 0))
        for k in range(per_content - 1):
            out.append(base.degraded(types[k % len(types)], 1 + k % (SEVERITIES - 1)))
    return out


def _size(rng) -> tuple[int, int]:
    lo, hi = SIZE_RANGE
    while True:
        w, h = (int(v) // 8 * 8 for v in rng.integers(lo, hi + 1, size=2))
        if 0.5 <= w / h <= 2.0:
            return w, h


# --------------------------------------------------------------------------- clean content


def render_clean(spec: ClipSpec) -> np.ndarray:
    """(T, H, W, 3) uint8 frames of the clean clip."""
    rng = np.random.default_rng([spec.seed, 1])
    w, h, n = spec.width, spec.height, spec.num_frames
    if spec.content == "scene":
        from vidjudge.export.samples import render_frame

        return np.stack([render_frame("scene", w, h, i, n, spec.seed) for i in range(n)])
    if spec.content == "shapes":
        return _shapes(w, h, n, rng)
    if spec.content == "pan":
        return _pan(w, h, n, rng)
    if spec.content == "gradient":
        return _gradient(w, h, n, rng)
    raise ValueError(f"unknown content {spec.content!r}; choose one of {', '.join(CONTENTS)}")


def _view_scale(w: int, h: int) -> float:
    """Source pixels per view pixel (geometric mean over the two axes)."""
    return float(np.sqrt(w * h)) / VIEW


def _shapes(w: int, h: int, n: int, rng) -> np.ndarray:
    """Discs and boxes (some striped) moving on straight paths over a two-colour gradient."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xx / w + np.sin(angle) * yy / h)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    c0, c1 = rng.uniform(20, 235, 3), rng.uniform(20, 235, 3)
    background = c0 + ramp[..., None] * (c1 - c0)
    k = _view_scale(w, h)
    shapes = []
    for _ in range(int(rng.integers(4, 8))):
        r = rng.uniform(0.08, 0.2) * min(w, h)
        start = rng.uniform([0, 0], [w, h])
        travel = rng.uniform(0.4, 0.9) * np.array([w, h]) * rng.choice([-1, 1], 2)
        stripes = rng.uniform(3, 6) * k if rng.random() < 0.5 else 0.0  # stripe period (src px)
        shapes.append((rng.integers(2), r, start, travel, rng.uniform(10, 245, 3), rng.uniform(10, 245, 3), stripes))
    frames = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        img = background.copy()
        phase = i / max(n - 1, 1)
        for kind, r, start, travel, col, col2, stripes in shapes:
            cx, cy = start + travel * phase
            cx, cy = cx % (w + 2 * r) - r, cy % (h + 2 * r) - r  # wrap around: always some motion in view
            y0, y1, x0, x1 = max(0, int(cy - r)), min(h, int(cy + r) + 1), max(0, int(cx - r)), min(w, int(cx + r) + 1)
            if y1 <= y0 or x1 <= x0:
                continue
            sy, sx = yy[y0:y1, x0:x1], xx[y0:y1, x0:x1]
            inside = ((sx - cx) ** 2 + (sy - cy) ** 2 <= r * r) if kind == 0 else (np.abs(sy - cy) <= 0.7 * r)
            sub = img[y0:y1, x0:x1]
            if stripes:
                band = ((sx + sy) // (stripes / 2)) % 2 == 0
                sub[inside & band] = col
                sub[inside & ~band] = col2
            else:
                sub[inside] = col
        frames[i] = np.clip(img, 0, 255).astype(np.uint8)
    return frames


def _pan(w: int, h: int, n: int, rng) -> np.ndarray:
    """A camera panning over a canvas of overlapping rectangles of many sizes (city-like: sharp edges)."""
    cw, ch = int(w * 1.6), int(h * 1.6)
    canvas = np.empty((ch, cw, 3), np.float32)
    canvas[:] = rng.uniform(30, 220, 3)
    k = _view_scale(w, h)
    for _ in range(int(30 * cw * ch / (w * h))):
        rw, rh = rng.uniform(6, 40, 2) * k
        x0, y0 = rng.uniform(0, cw), rng.uniform(0, ch)
        canvas[int(y0):int(y0 + rh), int(x0):int(x0 + rw)] = rng.uniform(0, 255, 3)
    # A straight pan across most of the free margin, in a random direction.
    dx, dy = (cw - w - 1), (ch - h - 1)
    ax, ay = (rng.uniform(0.6, 1.0) * rng.choice([-1, 1]), rng.uniform(0.0, 1.0) * rng.choice([-1, 1]))
    frames = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        p = i / max(n - 1, 1)
        x = int(round(dx * (0.5 + 0.5 * ax * (2 * p - 1))))
        y = int(round(dy * (0.5 + 0.5 * ay * (2 * p - 1))))
        frames[i] = canvas[y:y + h, x:x + w].astype(np.uint8)
    return frames


def _gradient(w: int, h: int, n: int, rng) -> np.ndarray:
    """A colour gradient sweeping across the frame under a scrolling grid of thin lines."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    k = _view_scale(w, h)
    period = rng.uniform(8, 16) * k
    line = max(1.0, 1.2 * k)
    phases = rng.uniform(0, 2 * np.pi, 3)
    freq = rng.uniform(0.5, 1.5, 2)
    speed = rng.uniform(0.5, 1.0) * rng.choice([-1, 1])
    x = (2 * np.pi * freq[0] / w) * np.arange(w, dtype=np.float32)[None, :]
    y = (2 * np.pi * freq[1] / h) * np.arange(h, dtype=np.float32)[:, None]
    frames = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        p = i / max(n - 1, 1)
        # sin(x + y + c) = sin x cos(y + c) + cos x sin(y + c): two outer products instead of a full-frame sin.
        img = np.stack([127 + 100 * (np.sin(x) * np.cos(y + c) + np.cos(x) * np.sin(y + c))
                        for c in (phases + 2 * np.pi * speed * p)], axis=-1)
        shift = p * 3 * period * speed
        gx = ((xx[0] + shift) % period) < line
        gy = ((yy[:, 0] + 0.5 * shift) % period) < line
        img[gy[:, None] | gx[None, :]] *= 0.3
        frames[i] = np.clip(img, 0, 255).astype(np.uint8)
    return frames


# --------------------------------------------------------------------------- degradations


def degrade(frames: np.ndarray, spec: ClipSpec) -> tuple[np.ndarray, int]:
    """The degraded frames of a clip and the x264 CRF to encode them with (its draws seeded by the spec)."""
    s, d = spec.severity, spec.degradation
    if s == 0 or d == "none":
        return frames, CLEAN_CRF
    return degrade_frames(frames, d, s, np.random.default_rng([spec.seed, 2, s])), \
        BLOCK_CRF[s] if d == "blocky" else CLEAN_CRF


def degrade_frames(frames: np.ndarray, degradation: str, severity: int, rng) -> np.ndarray:
    """(T, H, W, 3) uint8 frames with one degradation at severity 1-4. Spatial strengths are in view pixels,
    scaled by the frames' size over VIEW (so at the view they apply as given); the bitrate part of
    blockiness is the CRF `degrade` picks. Training calls this on frames already decoded at the view
    (cheap enough to draw anew at every step, so the judge meets every content under every degradation
    instead of memorising which copies it saw); with the judge's 8 frames, one sampling stride is a frame."""
    s, d = severity, degradation
    h, w = frames.shape[1:3]
    kx, ky = max(w / VIEW, 1.0), max(h / VIEW, 1.0)
    if d == "blur":
        return _per_frame_pil(frames, lambda im: im.filter(_gaussian(BLUR_SIGMA[s] * kx, BLUR_SIGMA[s] * ky)))
    if d == "noise":
        return _noise(frames, NOISE_STD[s], kx, ky, rng)
    if d == "blocky":
        from PIL import Image

        small = (max(4, round(w / (kx * BLOCK_FACTOR[s]))), max(4, round(h / (ky * BLOCK_FACTOR[s]))))
        return _per_frame_pil(frames, lambda im: im.resize(small, Image.BILINEAR).resize((w, h), Image.NEAREST))
    if d == "flicker":
        gain = 1 + FLICKER_GAIN[s] * rng.choice([-1.0, 1.0], size=len(frames)) * rng.uniform(0.6, 1.0, len(frames))
        return np.clip(frames * gain.astype(np.float32)[:, None, None, None], 0, 255).astype(np.uint8)
    if d == "freeze":
        n = len(frames)
        length = max(1, int(round(FREEZE_FRACTION[s] * n)))
        start = int(rng.integers(0, n - length + 1))
        out = frames.copy()
        out[start:start + length] = frames[start]
        return out
    if d == "judder":
        return frames[_judder_index(len(frames), JUDDER_HOLD[s], rng)]
    raise ValueError(f"unknown degradation {d!r}; choose one of {', '.join(DEGRADATIONS)}")


def _gaussian(sx: float, sy: float):
    from PIL import ImageFilter

    return ImageFilter.GaussianBlur((sx, sy))


def _per_frame_pil(frames: np.ndarray, fn) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(fn(Image.fromarray(f))) for f in frames])


def _noise(frames: np.ndarray, std: float, kx: float, ky: float, rng) -> np.ndarray:
    """Grain about one view pixel large (drawn at view resolution, upsampled bilinearly), mostly luma."""
    from PIL import Image

    n, h, w = frames.shape[:3]
    gh, gw = max(2, round(h / ky)), max(2, round(w / kx))
    out = np.empty_like(frames)
    for i in range(n):
        grain = rng.standard_normal((4, gh, gw)).astype(np.float32)
        up = np.stack([np.asarray(Image.fromarray(g, mode="F").resize((w, h), Image.BILINEAR)) for g in grain])
        # Bilinear upsampling lowers the std; restore it (at kx = ky = 1 the factor is 1).
        up /= max(float(up.std()), 1e-6)
        delta = std * (up[0][..., None] + 0.35 * up[1:].transpose(1, 2, 0))
        out[i] = np.clip(frames[i] + delta, 0, 255).astype(np.uint8)
    return out


def _judder_index(n: int, hold_strides: float, rng) -> np.ndarray:
    """Source frame shown at each output frame: updates at irregular intervals (exponential holds of
    `hold_strides` sampling strides on average), then a jump to the current time."""
    stride = n / SAMPLED_FRAMES
    idx = np.empty(n, np.int64)
    shown, next_update = 0, 0.0
    for i in range(n):
        if i >= next_update:
            shown = i
            next_update = i + 1 + rng.exponential(hold_strides * stride)
        idx[i] = shown
    return idx


# --------------------------------------------------------------------------- files


def rgb_to_yuv420p(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H * 3 / 2, W) uint8 planar YUV 4:2:0 (BT.601, limited range, chroma from the
    mean of each 2 x 2 block), in integer arithmetic: the same bytes whatever ran before in the process."""
    rgb = frame.astype(np.int32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = ((66 * r + 129 * g + 25 * b + 128) >> 8) + 16
    h, w = frame.shape[:2]
    q = rgb.reshape(h // 2, 2, w // 2, 2, 3).sum(axis=(1, 3))  # 4 x the block mean
    r, g, b = q[..., 0], q[..., 1], q[..., 2]
    u = ((-38 * r - 74 * g + 112 * b + 512) >> 10) + 128
    v = ((112 * r - 94 * g - 18 * b + 512) >> 10) + 128
    return np.concatenate([y.astype(np.uint8), u.astype(np.uint8).reshape(h // 4, w),
                           v.astype(np.uint8).reshape(h // 4, w)])


def encode_frames(path: Path, frames: np.ndarray, fps: int, crf: int) -> Path:
    """H.264 (libx264, yuv420p, CRF, one thread).

    Measured (PyAV 18.1, FFmpeg 8.1): FFmpeg's RGB -> YUV conversion gave other bytes once the process
    had decoded a video (some state of swscale's), so the conversion is done here in numpy. The bytes
    are still not fully reproducible: about one clip in ten came out different between runs over the
    same frames (cause not found; the decoder's output for a given file is reproducible)."""
    import av

    with av.open(str(path), mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=Fraction(fps),
                                options={"preset": "veryfast", "crf": str(crf), "threads": "1"})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.codec_context.thread_count = 1
        stream.codec_context.thread_type = "NONE"
        for i, f in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb_to_yuv420p(f), format="yuv420p")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def write_clip(spec: ClipSpec, out_dir: Path, clean: np.ndarray | None = None) -> Path:
    """Write one clip; `clean`: its content's clean frames if already rendered."""
    frames, crf = degrade(render_clean(spec) if clean is None else clean, spec)
    return encode_frames(Path(out_dir) / spec.filename, frames, spec.fps, crf)


def write_group(specs: list[ClipSpec], out_dir: Path) -> list[Path]:
    """Clips of one content (same seed, size, fps, length): rendered once, degraded and encoded per clip."""
    clean = render_clean(specs[0])
    return [write_clip(s, out_dir, clean) for s in specs]


def groups(specs: list[ClipSpec]) -> list[list[ClipSpec]]:
    """Consecutive clips of the same content."""
    out: list[list[ClipSpec]] = []
    for s in specs:
        if out and (out[-1][0].seed, out[-1][0].content) == (s.seed, s.content):
            out[-1].append(s)
        else:
            out.append([s])
    return out


def _write_group(args: tuple[list[ClipSpec], str]) -> list[str]:
    return [str(p) for p in write_group(args[0], Path(args[1]))]


def write_clips(specs: list[ClipSpec], out_dir: Path, workers: int = 1) -> list[Path]:
    """Write every clip (in `workers` processes; the files do not depend on it)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(g, str(out_dir)) for g in groups(specs)]
    if workers <= 1:
        done = [_write_group(j) for j in jobs]
    else:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers) as pool:
            done = pool.map(_write_group, jobs, chunksize=4)
    return [Path(p) for paths in done for p in paths]


def write_labels(specs: list[ClipSpec], path: Path, dimension: str = "visual_quality") -> Path:
    """Labels as `vidjudge eval` reads them (CSV: id, dimension, mos), plus what each clip is."""
    with open(path, "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["id", "dimension", "mos", "content", "degradation", "severity", "width", "height", "fps",
                     "num_frames"])
        for s in specs:
            wr.writerow([s.id, dimension, s.mos, s.content, s.degradation, s.severity, s.width, s.height, s.fps,
                         s.num_frames])
    return Path(path)


def write_manifest(specs: list[ClipSpec], path: Path) -> Path:
    """A `vidjudge rescore` manifest (CSV: path relative to the manifest's folder, id)."""
    with open(path, "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["path", "id"])
        for s in specs:
            wr.writerow([s.filename, s.id])
    return Path(path)


def default_workers() -> int:
    return max(1, min(4, (os.cpu_count() or 1)))


# The demo: one clean clip and copies of it degraded at severity 3 ("poor"), spatial degradations a
# viewer can see in a still frame.
DEMO_BASE = ClipSpec(id="clean", content="scene", seed=7, width=224, height=168, fps=12, num_frames=24)
DEMO_COPIES = (("noise", 3), ("blur", 3), ("blocky", 3))


def demo_specs() -> list[ClipSpec]:
    return [DEMO_BASE] + [DEMO_BASE.degraded(d, sev, id=f"{d}{sev}") for d, sev in DEMO_COPIES]


def make_demo_videos(out_dir: str | os.PathLike) -> list[Path]:
    """The demo's clips: clean.mp4 and its noise3 / blur3 / blocky3 copies (H.264, 2 s)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [write_clip(s, out) for s in demo_specs()]
