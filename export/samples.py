"""Write small, real, deterministic video files with PyAV (no ffmpeg CLI needed).

Used by the tests, which need real files in many codecs and containers, with known
content (the demo's clips come from `synthetic.make_demo_videos`):

- ``pattern="brightness"``: uniform grey frames whose level rises with the frame
  index (`brightness_level`), so a test can tell from a decoded frame which
  source frame it came from.
- ``pattern="counter"``: the frame index in binary, as `COUNTER_BITS` black/white
  columns (most significant bit left); `counter_index` reads it back, exactly,
  even after lossy coding and resizing.
- ``pattern="orientation"``: a red band on top and a white square in the top-left
  corner of the *upright* picture, so a test can tell whether output is upright.
- ``gradient`` / ``bars`` / ``checker``: smooth, moving, easy to compress.
- ``noise``: seeded random pixels (hard to compress; a worst case for decoders).
- ``scene``: what generated video looks like to a codec: a detailed, smoothly textured
  background under a slow camera pan, with coloured shapes moving across it (benchmarks).

Everything is a pure function of the arguments and ``seed``: the same call
writes the same pixels (the encoded bytes may differ between library builds).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import numpy as np

PATTERNS = ("gradient", "noise", "brightness", "counter", "orientation", "bars", "checker", "scene")

COUNTER_BITS = 10  # a "counter" frame shows its index in binary: up to 1024 distinct frames

# Container (PyAV/FFmpeg muxer name) for each file suffix we write.
_FORMAT_BY_SUFFIX = {
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".mov": "mov",
    ".mkv": "matroska",
    ".webm": "webm",
    ".avi": "avi",
    ".nut": "nut",
    ".ts": "mpegts",
    ".m4a": "ipod",
    ".mka": "matroska",
    ".ogg": "ogg",
    ".opus": "ogg",
    ".wav": "wav",
    ".gif": "gif",
}

# Quiet, fast, reasonably faithful defaults per encoder (overridable with `options=`).
_ENCODER_OPTIONS = {
    "libx264": {"preset": "veryfast", "crf": "18"},
    "libx265": {"preset": "ultrafast", "crf": "20", "x265-params": "log-level=error"},
    "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8", "crf": "20", "b": "0"},
    "libvpx": {"deadline": "realtime", "cpu-used": "8", "b": "2M"},
    "libsvtav1": {"preset": "12", "crf": "20"},
    "mpeg4": {"b": "2000000"},
}

BRIGHTNESS_MIN = 16
BRIGHTNESS_MAX = 224


def brightness_level(index: int, num_frames: int) -> int:
    """Grey level of frame `index` of a ``pattern="brightness"`` clip of `num_frames` frames."""
    if num_frames <= 1:
        return (BRIGHTNESS_MIN + BRIGHTNESS_MAX) // 2
    return int(round(BRIGHTNESS_MIN + (BRIGHTNESS_MAX - BRIGHTNESS_MIN) * index / (num_frames - 1)))


def brightness_index(mean_level: float, num_frames: int) -> int:
    """Inverse of `brightness_level`: the source frame index a decoded grey level came from."""
    if num_frames <= 1:
        return 0
    step = (BRIGHTNESS_MAX - BRIGHTNESS_MIN) / (num_frames - 1)
    return int(np.clip(round((mean_level - BRIGHTNESS_MIN) / step), 0, num_frames - 1))


def counter_index(rgb: np.ndarray) -> int:
    """Read the frame index back from a decoded (possibly resized) ``pattern="counter"`` frame."""
    grey = np.asarray(rgb, dtype=np.float64).mean(axis=-1)
    h, w = grey.shape
    value = 0
    for b in range(COUNTER_BITS):
        x0, x1 = (b * w) // COUNTER_BITS, ((b + 1) * w) // COUNTER_BITS
        # Middle half of each column cell, away from edges blurred by coding and resizing.
        m0, m1 = x0 + (x1 - x0) // 4, x1 - (x1 - x0) // 4
        cell = grey[h // 4: h - h // 4 or h, m0: max(m1, m0 + 1)]
        value = (value << 1) | int(cell.mean() > 128)
    return value


def render_frame(pattern: str, width: int, height: int, index: int, num_frames: int, seed: int = 0) -> np.ndarray:
    """The upright RGB picture (height, width, 3) uint8 of frame `index` of a clip."""
    h, w = height, width
    phase = index / max(num_frames, 1)
    rng_base = np.random.default_rng(seed)
    hue_shift = rng_base.integers(0, 256)
    if pattern == "brightness":
        return np.full((h, w, 3), brightness_level(index, num_frames), np.uint8)
    if pattern == "counter":
        img = np.full((h, w, 3), 16, np.uint8)
        for b in range(COUNTER_BITS):
            if (index >> (COUNTER_BITS - 1 - b)) & 1:
                img[:, (b * w) // COUNTER_BITS: ((b + 1) * w) // COUNTER_BITS] = 235
        return img
    if pattern == "noise":
        rng = np.random.default_rng([seed, index])
        return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    if pattern == "orientation":
        img = np.zeros((h, w, 3), np.uint8)
        img[:, :] = (0, 0, 200)  # blue body
        band = max(1, h // 3)
        img[:band, :] = (220, 0, 0)  # red band on top
        sq_h, sq_w = max(1, h // 6), max(1, w // 6)
        img[:sq_h, :sq_w] = (255, 255, 255)  # white square top-left
        return img
    if pattern == "scene":
        return _scene_frame(w, h, index, num_frames, seed)
    y = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]
    if pattern == "gradient":
        r = (x + phase) % 1.0
        g = np.broadcast_to(y, (h, w))
        b = (0.5 + 0.5 * np.sin(2 * np.pi * (x + y + phase) + hue_shift / 40.0)) * np.ones_like(r)
        img = np.stack([r * np.ones_like(g), g, b], axis=-1)
        return (img * 255).round().astype(np.uint8)
    if pattern == "bars":
        colors = np.array(
            [[235, 235, 235], [235, 235, 16], [16, 235, 235], [16, 235, 16],
             [235, 16, 235], [235, 16, 16], [16, 16, 235], [16, 16, 16]], np.uint8)
        colors = np.roll(colors, int(hue_shift) % 8, axis=0)
        bar = ((x + phase) % 1.0 * 8).astype(np.int64)  # (1, w)
        return np.broadcast_to(colors[bar[0]][None, :, :], (h, w, 3)).copy()
    if pattern == "checker":
        cell = max(2, min(h, w) // 6)
        shift = int(phase * 2 * cell) + int(hue_shift) % cell
        yy = np.arange(h)[:, None]
        xx = (np.arange(w)[None, :] + shift)
        on = ((yy // cell + xx // cell) % 2).astype(bool)
        img = np.where(on[..., None], np.array([230, 200, 40], np.uint8), np.array([30, 40, 120], np.uint8))
        return img.astype(np.uint8)
    raise ValueError(f"unknown pattern {pattern!r}; choose one of {', '.join(PATTERNS)}")


@lru_cache(maxsize=4)
def _scene_texture(width: int, height: int, seed: int) -> np.ndarray:
    """A smooth, detailed colour texture 1.25x the frame (room for the camera to pan): seeded random
    grids at three scales, each upsampled bicubically (clouds with fine detail), mapped to colours."""
    from PIL import Image

    rng = np.random.default_rng([seed, 7])
    big_w, big_h = int(width * 1.25) + 2, int(height * 1.25) + 2
    acc = np.zeros((big_h, big_w, 3), np.float32)
    for cells, weight in ((6, 0.55), (24, 0.3), (96, 0.15)):
        gh, gw = max(2, cells * big_h // max(big_w, 1)), cells
        grid = rng.random((gh, gw, 3)).astype(np.float32)
        for c in range(3):
            up = Image.fromarray(grid[..., c], mode="F").resize((big_w, big_h), Image.BICUBIC)
            acc[..., c] += weight * np.asarray(up)
    lo, hi = acc.min(), acc.max()
    acc = (acc - lo) / max(hi - lo, 1e-6)
    tint = np.array([0.9, 0.75, 1.0], np.float32) * 235  # a colour grade, not grey
    return np.clip(acc * tint + 10, 0, 255).astype(np.uint8)


def _scene_frame(w: int, h: int, index: int, num_frames: int, seed: int) -> np.ndarray:
    tex = _scene_texture(w, h, seed)
    phase = index / max(num_frames, 1)
    # 1. Camera: a slow diagonal pan with a gentle sway.
    pan_x = int((tex.shape[1] - w - 1) * (0.5 - 0.5 * np.cos(np.pi * phase)))
    pan_y = int((tex.shape[0] - h - 1) * (0.5 + 0.45 * np.sin(2 * np.pi * phase)))
    img = tex[pan_y:pan_y + h, pan_x:pan_x + w].copy()
    # 2. Shapes moving along their own smooth paths (discs and boxes, flat and shaded).
    rng = np.random.default_rng([seed, 11])
    scale = min(w, h)
    for s in range(6):
        color = rng.integers(20, 236, 3)
        fx, fy, off = rng.uniform(0.5, 1.5), rng.uniform(0.5, 1.5), rng.uniform(0, 2 * np.pi)
        cx = int(w * (0.5 + 0.4 * np.sin(2 * np.pi * fx * phase + off)))
        cy = int(h * (0.5 + 0.4 * np.cos(2 * np.pi * fy * phase + 1.3 * off)))
        r = max(1, int(scale * rng.uniform(0.05, 0.14)))
        y0, y1, x0, x1 = max(0, cy - r), min(h, cy + r), max(0, cx - r), min(w, cx + r)
        if y1 <= y0 or x1 <= x0:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        if s % 2 == 0:  # a shaded disc: lit from the top left
            d2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / float(r * r)
            inside = d2 <= 1.0
            shade = 1.15 - 0.5 * np.clip(((yy - cy) + (xx - cx)) / (2.0 * r) + 0.5, 0, 1)
            patch = np.clip(color[None, None, :] * shade[..., None], 0, 255).astype(np.uint8)
            img[y0:y1, x0:x1][inside] = patch[inside]
        else:  # a box with the texture showing through, recoloured
            sub = img[y0:y1, x0:x1].astype(np.uint16)
            img[y0:y1, x0:x1] = ((sub + color[None, None, :]) // 2).astype(np.uint8)
    return img


def _container_format(path: Path, container: str | None) -> str:
    if container:
        return container
    fmt = _FORMAT_BY_SUFFIX.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot infer a container from suffix {path.suffix!r}; pass container=")
    return fmt


def _audio_codec_for(fmt: str) -> str:
    if fmt in ("webm", "ogg"):
        return "libopus"
    if fmt == "wav":
        return "pcm_s16le"
    return "aac"


def _add_audio_stream(out, fmt: str, sample_rate: int | None = None):
    codec = _audio_codec_for(fmt)
    if sample_rate is None:
        sample_rate = 48000 if codec == "libopus" else 44100
    stream = out.add_stream(codec, rate=sample_rate)
    stream.layout = "mono"
    return stream


class _ToneWriter:
    """Encodes a 440 Hz tone into an audio stream, chunk by chunk, up to a given time."""

    def __init__(self, out, stream):
        self.out = out
        self.stream = stream
        self.rate = stream.codec_context.sample_rate
        self.samples_written = 0

    def write_until(self, t_s: float) -> None:
        import av

        cc = self.stream.codec_context
        fmt = cc.format.name if cc.format is not None else "fltp"
        chunk = cc.frame_size or 1024
        target = int(t_s * self.rate)
        while self.samples_written < target:
            n = np.arange(self.samples_written, self.samples_written + chunk)
            wave = 0.2 * np.sin(2 * np.pi * 440.0 * n / self.rate)
            if fmt.startswith("s16"):
                arr = (wave * 32767).astype(np.int16)[None, :]
            else:
                arr = wave.astype(np.float32)[None, :]
            frame = av.AudioFrame.from_ndarray(arr, format=fmt, layout="mono")
            frame.sample_rate = self.rate
            frame.pts = self.samples_written
            frame.time_base = Fraction(1, self.rate)
            for packet in self.stream.encode(frame):
                self.out.mux(packet)
            self.samples_written += chunk

    def flush(self) -> None:
        for packet in self.stream.encode(None):
            self.out.mux(packet)


def _quiet_encoders() -> None:
    # SVT-AV1 prints its configuration to stderr unless told otherwise.
    os.environ.setdefault("SVT_LOG", "1")


def write_video(
    path: str | os.PathLike,
    *,
    codec: str = "libx264",
    container: str | None = None,
    width: int = 160,
    height: int = 120,
    num_frames: int = 16,
    fps: float = 8,
    pix_fmt: str = "yuv420p",
    pattern: str = "gradient",
    rotation_deg: int = 0,
    with_audio: bool = False,
    seed: int = 0,
    timestamps_s: Sequence[float] | None = None,
    gop_size: int | None = None,
    faststart: bool = False,
    options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
) -> Path:
    """Encode `num_frames` frames of `pattern` into `path` and return the path.

    width/height are the *displayed* (upright) size. With ``rotation_deg`` (clockwise,
    one of 0/90/180/270, the convention of the legacy ``rotate`` tag and of phones)
    the stored frames are turned the other way and a display matrix tells players to
    turn them back, so a decoder that honours rotation shows the upright pattern.

    ``timestamps_s`` (one per frame, increasing) gives each frame's presentation time
    for variable-frame-rate files; otherwise frames are 1/fps apart.
    ``faststart`` (mp4/mov) puts the index at the front, as streaming files do.
    """
    import av

    if pattern not in PATTERNS:
        raise ValueError(f"unknown pattern {pattern!r}; choose one of {', '.join(PATTERNS)}")
    if num_frames < 1 or width < 1 or height < 1:
        raise ValueError("num_frames, width and height must be positive")
    _quiet_encoders()
    path = Path(path)
    fmt = _container_format(path, container)
    if rotation_deg % 90 != 0:
        raise ValueError("rotation_deg must be a multiple of 90")
    rot = rotation_deg % 360
    quarter_turns = rot // 90
    stored_w, stored_h = (height, width) if quarter_turns % 2 else (width, height)
    if timestamps_s is not None:
        if len(timestamps_s) != num_frames:
            raise ValueError("timestamps_s needs one entry per frame")
        if any(b <= a for a, b in zip(timestamps_s, timestamps_s[1:])):
            raise ValueError("timestamps_s must increase")

    opts = dict(_ENCODER_OPTIONS.get(codec, {}))
    if options:
        opts.update(options)
    copts = dict(container_options or {})
    if faststart:
        copts["movflags"] = "+faststart"

    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w", format=fmt, container_options=copts) as out:
        stream = out.add_stream(codec, rate=rate, options=opts)
        stream.width = stored_w
        stream.height = stored_h
        stream.pix_fmt = pix_fmt
        if gop_size is not None:
            stream.codec_context.gop_size = gop_size
        if timestamps_s is not None:
            # Millisecond ticks carry arbitrary (irregular) presentation times.
            tb = Fraction(1, 1000)
            stream.codec_context.time_base = tb
            stream.time_base = tb
        else:
            tb = 1 / rate
            stream.codec_context.time_base = tb
        if rot:
            # PyAV takes the counter-clockwise angle (FFmpeg's display-matrix convention).
            stream.set_display_rotation(-rot)
        tone = _ToneWriter(out, _add_audio_stream(out, fmt)) if with_audio else None

        for i in range(num_frames):
            upright = render_frame(pattern, width, height, i, num_frames, seed)
            stored = np.ascontiguousarray(np.rot90(upright, k=quarter_turns)) if quarter_turns else upright
            frame = av.VideoFrame.from_ndarray(stored, format="rgb24")
            if timestamps_s is not None:
                frame.pts = int(round(timestamps_s[i] * 1000))
                t_end = timestamps_s[i]
            else:
                frame.pts = i
                t_end = i / float(rate)
            frame.time_base = tb
            for packet in stream.encode(frame):
                out.mux(packet)
            if tone is not None:
                tone.write_until(t_end)
        for packet in stream.encode(None):
            out.mux(packet)
        if tone is not None:
            last = timestamps_s[-1] if timestamps_s is not None else num_frames / float(rate)
            tone.write_until(last)
            tone.flush()
    return path


def write_audio_only(path: str | os.PathLike, *, duration_s: float = 1.0, container: str | None = None) -> Path:
    """A file with one audio stream (a tone) and no video: .m4a, .mp4, .mka, .webm, .ogg or .wav."""
    import av

    path = Path(path)
    fmt = _container_format(path, container)
    with av.open(str(path), mode="w", format=fmt) as out:
        tone = _ToneWriter(out, _add_audio_stream(out, fmt))
        tone.write_until(duration_s)
        tone.flush()
    return path


__all__ = [
    "PATTERNS",
    "brightness_level",
    "brightness_index",
    "counter_index",
    "render_frame",
    "write_video",
    "write_audio_only",
]
