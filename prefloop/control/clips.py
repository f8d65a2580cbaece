"""Trajectory segments as short clips a person can judge: frames from the env's ``rgb_array`` render,
kept small while the agent acts, assembled into an animated GIF when a pair is asked.

Why GIF (not MP4): it plays in an ``<img>`` in every browser, loops by itself and needs no codec —
the Chromium of Debian (and of the browser tests) has no H.264, and this machine has no ffmpeg —
and Pillow, already a dependency (matplotlib's), writes it. A 25-step CartPole clip at 160 px is
about 10–20 KB. The feedback server also accepts MP4 and WebM clips (shown with ``<video>``) for
renderers that make them.

- `encode_frame` shrinks a frame to ``width`` pixels (aspect kept) and stores it as PNG: the loop
  records one per env step only when the human teacher is used (so the simulated path renders
  nothing), and keeps them in the segment buffer beside the steps.
- `segment_gif` plays a segment's frames at ``fps`` frames per second, holding the last one a
  little longer (so the loop's seam is visible); steps that pad a terminated episode (the segment
  repeats its last step, `segments.py`) are shown dimmed with "episode over", so a person sees
  that the episode ended there.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["encode_frame", "segment_gif"]

END_HOLD_MS = 600
"""How long the last frame stays before the clip loops."""


def encode_frame(frame: np.ndarray, width: int) -> bytes:
    """An RGB frame [H, W, 3] uint8 as a PNG of ``width`` pixels wide (never enlarged)."""
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(frame[..., :3]).astype(np.uint8), "RGB")
    if img.width > width:
        height = max(1, round(img.height * width / img.width))
        img = img.resize((width, height), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    img.save(out, format="PNG", compress_level=1)
    return out.getvalue()


def _ended(img: Image.Image) -> Image.Image:
    from PIL import Image, ImageDraw

    dim = Image.blend(img, Image.new("RGB", img.size, (128, 128, 128)), 0.55)
    ImageDraw.Draw(dim).text((4, 4), "episode over", fill=(255, 255, 255))
    return dim


def segment_gif(frames: Sequence[bytes], absorbing: Sequence[bool] | np.ndarray, fps: float) -> bytes:
    """An animated GIF (looping) of a segment's encoded frames; absorbing steps dimmed."""
    from PIL import Image

    if not frames:
        raise ValueError("a clip needs at least one frame")
    images = []
    for data, end in zip(frames, absorbing):
        img = Image.open(io.BytesIO(data)).convert("RGB")
        images.append(_ended(img) if end else img)
    step_ms = max(20, round(1000 / fps))
    durations = [step_ms] * (len(images) - 1) + [step_ms + END_HOLD_MS]
    out = io.BytesIO()
    images[0].save(
        out,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=durations,
        loop=0,
        optimize=False,
        disposal=1,
    )
    return out.getvalue()
