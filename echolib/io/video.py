"""Video decode (decord) and encode (PyAV).

`read_clip` returns uint8 arrays of shape (T, H, W, 3). `write_video` writes H.264 in an MP4 container; with
`lossless=True` (the default) it uses x264's lossless RGB mode so that decoded frames equal the input exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class VideoDecodeError(RuntimeError):
    """A video file could not be opened or decoded; the message names the file, `reason` does not (it is what
    ingestion records: no file name, no decoder message that may quote one)."""

    def __init__(self, path, reason: str, detail: str = ""):
        super().__init__(f"{path}: {reason}{f' ({detail})' if detail else ''}")
        self.reason = reason


def read_clip(
    path: str | Path,
    num_frames: int,
    stride: int = 1,
    size: int | tuple[int, int] | None = None,
    start: int = 0,
) -> np.ndarray:
    """Read `num_frames` frames starting at `start`, every `stride`-th frame.

    Frames past the end of the video are filled by repeating the last frame read. `size` (an int for a square,
    or (height, width)) resizes with decord's bilinear scaler. Returns uint8 (T, H, W, 3).
    """
    if num_frames < 1 or stride < 1 or start < 0:
        raise ValueError(f"read_clip({path}): need num_frames >= 1, stride >= 1, start >= 0")
    vr, n = _open(path, size)
    if start >= n:
        raise VideoDecodeError(path, f"start frame {start} is past the last frame ({n} frames)")
    idx = np.minimum(np.arange(num_frames) * stride + start, _last_index_reachable(n, start, stride))
    return _frames(vr, path, idx)


def read_at_rate(path: str | Path, num_frames: int, src_fps: float, fps: float,
                 size: int | tuple[int, int] | None = None) -> tuple[np.ndarray, int]:
    """`num_frames` frames at `fps` from a video recorded at `src_fps` (from its first frame, nearest frame in
    time), and how many of them lay past its end (filled by repeating the last frame)."""
    if num_frames < 1 or src_fps <= 0 or fps <= 0:
        raise ValueError(f"read_at_rate({path}): need num_frames >= 1 and positive frame rates")
    vr, n = _open(path, size)
    idx = np.round(np.arange(num_frames) * src_fps / fps).astype(int)
    return _frames(vr, path, np.minimum(idx, n - 1)), int((idx > n - 1).sum())


def _open(path: str | Path, size):
    import decord

    path = Path(path)
    if not path.is_file():
        raise VideoDecodeError(path, "no such video file")
    kw = {}
    if size is not None:
        h, w = (size, size) if isinstance(size, int) else size
        kw = {"height": int(h), "width": int(w)}
    try:
        vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1, **kw)
        n = len(vr)
    except Exception as e:  # decord raises DECORDError / RuntimeError with C++ traces
        raise VideoDecodeError(path, f"cannot be decoded ({type(e).__name__})", str(e).splitlines()[0]) from e
    if n == 0:
        raise VideoDecodeError(path, "contains no frames")
    return vr, n


def _frames(vr, path, idx: np.ndarray) -> np.ndarray:
    try:
        frames = vr.get_batch(idx.tolist()).asnumpy()
    except Exception as e:
        raise VideoDecodeError(path, f"decoding frames failed ({type(e).__name__})", str(e)) from e
    return np.ascontiguousarray(frames, dtype=np.uint8)


def _last_index_reachable(n: int, start: int, stride: int) -> int:
    """Index of the last frame on the sampling grid start + k*stride that exists (padding repeats it)."""
    return start + ((n - 1 - start) // stride) * stride


def rgb_to_yuv420(frames: np.ndarray) -> np.ndarray:
    """BT.601 limited-range YUV 4:2:0 planes stacked as FFmpeg's yuv420p layout: (H * 3/2, W) uint8 for one
    frame (H, W, 3), (T, H * 3/2, W) for a clip (T, H, W, 3), converted at once."""
    grey = bool((frames[..., 0] == frames[..., 1]).all() and (frames[..., 1] == frames[..., 2]).all())
    rgb = frames.astype(np.float32) / 255.0 if not grey else None
    r = g = b = frames[..., 0].astype(np.float32) / 255.0 if grey else None
    if not grey:
        r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 16 + 65.481 * r + 128.553 * g + 24.966 * b
    *lead, h, w = y.shape
    if grey:  # both chroma planes are 128 exactly (their weights sum to 0): not computed
        chroma = np.full((*lead, h // 2, w), 128, np.uint8)
        return np.concatenate([np.clip(y + 0.5, 0, 255).astype(np.uint8), chroma], axis=-2)
    cb = 128 - 37.797 * r - 74.203 * g + 112.0 * b
    cr = 128 + 112.0 * r - 93.786 * g - 18.214 * b

    def sub(c):  # the mean of each 2 x 2 block, its rows laid out as FFmpeg's quarter-height plane
        return c.reshape(*lead, h // 2, 2, w // 2, 2).mean(axis=(-3, -1)).reshape(*lead, h // 4, w)

    planes = [y, sub(cb), sub(cr)]
    return np.clip(np.concatenate(planes, axis=-2) + 0.5, 0, 255).astype(np.uint8)


def video_info(path: str | Path) -> dict:
    """Frame count, fps, height and width of a video (decord)."""
    import decord

    try:
        vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
        h, w = vr[0].shape[:2]
        return {"n_frames": len(vr), "fps": float(vr.get_avg_fps()), "height": int(h), "width": int(w)}
    except Exception as e:
        raise VideoDecodeError(path, f"cannot be decoded ({type(e).__name__})") from e


def write_video(path: str | Path, frames: np.ndarray, fps: float, lossless: bool = True, quality: int = 3) -> Path:
    """Write uint8 frames (T, H, W, 3) or (T, H, W) as H.264 MP4 with PyAV.

    Lossless mode (x264 RGB, crf 0) round-trips exactly through `read_clip`. Lossy mode is MPEG-4 part 2 in
    yuv420p (even sizes required) at fixed quantiser `quality` (2 best .. 31); its bytes are reproducible.
    The file is written next to its destination and renamed into place, so no half-written video is left behind.
    """
    import av

    path = Path(path)
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise TypeError(f"write_video({path}): frames must be uint8, got {frames.dtype}")
    if frames.ndim == 3:
        frames = np.repeat(frames[..., None], 3, axis=-1)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"write_video({path}): expected (T, H, W, 3) with T >= 1, got {frames.shape}")
    t, h, w, _ = frames.shape
    if not lossless and (h % 2 or w % 2):
        raise ValueError(f"write_video({path}): lossy yuv420p needs even height and width, got {h}x{w}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    from fractions import Fraction

    rate = Fraction(fps).limit_denominator(1000)
    with av.open(str(tmp), mode="w", format="mp4") as out:
        if lossless:
            stream = out.add_stream("libx264rgb", rate=rate)
            stream.pix_fmt = "rgb24"
            stream.options = {"crf": "0", "preset": "veryfast", "threads": "1"}
        else:
            # FFmpeg's own MPEG-4 part 2 encoder at a fixed quantiser: byte-reproducible, unlike x264 here
            stream = out.add_stream("mpeg4", rate=rate)
            stream.pix_fmt = "yuv420p"
            stream.codec_context.flags |= av.codec.context.Flags.qscale
            stream.codec_context.global_quality = int(quality) * 118  # FF_QP2LAMBDA
            stream.options = {"g": "32"}
        stream.width, stream.height = w, h
        stream.thread_count = 1
        stream.codec_context.time_base = 1 / rate
        # our own RGB -> YUV 4:2:0 (FFmpeg's scaler output was not byte-reproducible here), a chunk of frames at once
        chunk = max(1, (8 << 20) // max(h * w * 3 * 4, 1))
        for i, frame in enumerate(frames):
            if lossless:
                vf = av.VideoFrame.from_ndarray(np.array(frame, copy=True), format="rgb24")
            else:
                if i % chunk == 0:
                    yuv = rgb_to_yuv420(frames[i:i + chunk])
                vf = av.VideoFrame.from_ndarray(yuv[i % chunk], format="yuv420p")
            vf.pts = i
            vf.time_base = 1 / rate
            out.mux(stream.encode(vf))
        out.mux(stream.encode(None))
    tmp.replace(path)
    return path
