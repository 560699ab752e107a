"""Ultrasound cine DICOM: headers, frames as RGB uint8, frame rate.

pydicom 3 decodes the pixel data and already converts YBR_* to RGB (`as_rgb=True`), so no second colour
conversion happens here. Video transfer syntaxes (MPEG-2/MPEG-4/HEVC inside DICOM), which pydicom does not
decode, go through PyAV.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np

US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"   # Ultrasound Multi-frame Image Storage
US_MULTIFRAME_RETIRED = "1.2.840.10008.5.1.4.1.1.3"
US_SINGLE = ("1.2.840.10008.5.1.4.1.1.6.1", "1.2.840.10008.5.1.4.1.1.6")
VIDEO_SYNTAXES = {  # transfer syntax UID -> PyAV demuxer for the encapsulated elementary stream
    "1.2.840.10008.1.2.4.100": "mpeg", "1.2.840.10008.1.2.4.101": "mpeg",
    "1.2.840.10008.1.2.4.102": "h264", "1.2.840.10008.1.2.4.103": "h264", "1.2.840.10008.1.2.4.104": "h264",
    "1.2.840.10008.1.2.4.105": "h264", "1.2.840.10008.1.2.4.106": "h264",
    "1.2.840.10008.1.2.4.107": "hevc", "1.2.840.10008.1.2.4.108": "hevc",
}
DEFAULT_FPS = 30.0
FPS_SOURCES = ("FrameTime", "FrameTimeVector", "CineRate", "RecommendedDisplayFrameRate")


class DicomError(ValueError):
    """A DICOM file that cannot be used; the message is the reason recorded in rejected.parquet."""


@dataclasses.dataclass
class Cine:
    frames: np.ndarray        # (T, H, W, 3) uint8 RGB
    fps: float
    fps_source: str           # the tag it came from, or "default" (a warning recorded by ingestion)
    photometric: str
    transfer_syntax: str
    regions: list[tuple[int, int, int, int]]  # SequenceOfUltrasoundRegions boxes (x0, y0, x1, y1), as stored


def frame_rate(ds) -> tuple[float, str]:
    """fps from FrameTime, FrameTimeVector, CineRate or RecommendedDisplayFrameRate (in that order)."""
    ft = _num(ds.get("FrameTime"))
    if ft and ft > 0:
        return 1000.0 / ft, "FrameTime"
    vec = ds.get("FrameTimeVector")
    if vec is not None:
        # the first entry is 0 (time of the first frame); the rest are increments in ms
        steps = [float(v) for v in (vec if hasattr(vec, "__iter__") else [vec])]
        steps = steps[1:] if len(steps) > 1 else steps
        steps = [v for v in steps if v > 0]
        if steps:
            return 1000.0 / float(np.median(steps)), "FrameTimeVector"
    for tag in ("CineRate", "RecommendedDisplayFrameRate"):
        v = _num(ds.get(tag))
        if v and v > 0:
            return float(v), tag
    return DEFAULT_FPS, "default"


def _num(v) -> float | None:
    try:
        return float(v) if v is not None and str(v).strip() != "" else None
    except (TypeError, ValueError):
        return None


def regions(ds) -> list[tuple[int, int, int, int]]:
    out = []
    for r in ds.get("SequenceOfUltrasoundRegions", []) or []:
        try:
            out.append((int(r.RegionLocationMinX0), int(r.RegionLocationMinY0),
                        int(r.RegionLocationMaxX1), int(r.RegionLocationMaxY1)))
        except (AttributeError, TypeError, ValueError):
            continue
    return out


def check_cine_header(ds) -> None:
    """Raise DicomError unless `ds` (read with or without pixels) is a multi-frame ultrasound cine."""
    sop = str(ds.get("SOPClassUID", ""))
    if sop in US_SINGLE:
        raise DicomError("single-frame image (Ultrasound Image Storage)")
    if sop not in (US_MULTIFRAME, US_MULTIFRAME_RETIRED):
        raise DicomError(f"not an ultrasound multi-frame cine (SOP class {sop or 'missing'})")
    n = _num(ds.get("NumberOfFrames"))
    if n is not None and n < 2:
        raise DicomError("single-frame image (NumberOfFrames < 2)" if n == 1 else "zero frames")


def read_dataset(path: str | Path, stop_before_pixels: bool = False):
    """pydicom.dcmread that turns every failure, truncation included, into a DicomError with the reason."""
    import warnings

    import pydicom
    from pydicom.errors import InvalidDicomError

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
        except InvalidDicomError as e:
            raise DicomError("not a DICOM file") from e
        except Exception as e:  # truncated headers, unreadable files
            raise DicomError(f"unreadable DICOM ({type(e).__name__})") from e
    if any("End of file reached" in str(w.message) or "truncated" in str(w.message).lower() for w in caught):
        raise DicomError("truncated file (ends inside a data element)")
    return ds


def load_cine(path: str | Path) -> Cine:
    """Read a cine DICOM completely; raise DicomError with a specific reason when it cannot be used."""
    ds = read_dataset(path)
    check_cine_header(ds)
    if "PixelData" not in ds:
        raise DicomError("no pixel data")
    ts = str(ds.file_meta.get("TransferSyntaxUID", "")) if hasattr(ds, "file_meta") else ""
    if ts in VIDEO_SYNTAXES:
        frames = _decode_video_syntax(ds, VIDEO_SYNTAXES[ts])
    else:
        frames = _decode_pixels(ds, ts)
    if frames.shape[0] == 0:
        raise DicomError("zero frames")
    if frames.shape[0] == 1:
        raise DicomError("single-frame image")
    fps, source = frame_rate(ds)
    return Cine(frames, fps, source, str(ds.get("PhotometricInterpretation", "")), ts, regions(ds))


def read_cine(path: str | Path) -> tuple[np.ndarray, float]:
    """(frames uint8 (T, H, W, 3) RGB, fps). fps falls back to 30 when the file carries no timing."""
    cine = load_cine(path)
    return cine.frames, cine.fps


def _decode_pixels(ds, ts: str) -> np.ndarray:
    import warnings

    n = int(_num(ds.get("NumberOfFrames")) or 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            arr = ds.pixel_array  # YBR_* already converted to RGB by pydicom 3
        except NotImplementedError as e:
            raise DicomError(f"unsupported transfer syntax {ts or 'missing'} (no decoder)") from e
        except Exception as e:
            short = "fewer frames than NumberOfFrames" if isinstance(e, StopIteration) or "less than expected" in \
                str(e) else f"{type(e).__name__}: {str(e)[:120]}"
            raise DicomError(f"pixel data cannot be decoded ({short}; header NumberOfFrames {n})") from e
    if any("(0028,0008)" in str(w.message) or "larger than the given" in str(w.message) for w in caught):
        raise DicomError(f"header NumberOfFrames ({n}) disagrees with the pixel data, which holds more frames")
    pi = str(ds.get("PhotometricInterpretation", ""))
    samples = int(ds.get("SamplesPerPixel", 1))
    if n == 1 and arr.ndim == (3 if samples > 1 else 2):
        arr = arr[None]
    if pi == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        arr = apply_color_lut(arr, ds)
    elif pi == "MONOCHROME1":
        arr = arr.max() - arr if arr.size else arr
    arr = _to_uint8(arr, int(ds.get("BitsStored", 8)) if pi != "PALETTE COLOR" else None)
    if arr.ndim == 3:  # grey (T, H, W)
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise DicomError(f"unexpected pixel array shape {arr.shape} for {pi}")
    return np.ascontiguousarray(arr)


def _to_uint8(arr: np.ndarray, bits: int | None) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if bits is None:  # palette LUT output: scale by its own range (8- or 16-bit entries)
        bits = 16 if arr.max(initial=0) > 255 else 8
    arr = arr.astype(np.float32)
    if bits <= 8:
        return np.clip(arr, 0, 255).astype(np.uint8)
    return np.clip(arr / (2 ** bits - 1) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _decode_video_syntax(ds, fmt: str) -> np.ndarray:
    import av
    from pydicom.encaps import generate_fragments

    try:
        stream = b"".join(generate_fragments(ds.PixelData))
    except Exception as e:
        raise DicomError(f"encapsulated video stream cannot be read ({type(e).__name__})") from e
    try:
        with av.open(io.BytesIO(stream), format=fmt) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    except Exception as e:
        raise DicomError(f"unsupported transfer syntax: {fmt} stream not decodable by PyAV ({type(e).__name__})") from e
    if not frames:
        raise DicomError(f"zero frames decoded from the {fmt} stream")
    return np.stack(frames)
