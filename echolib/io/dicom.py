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
    """fps from FrameTime, FrameTimeVector, CineRate or RecommendedDisplayFrameRate (in that order), then from
    the functional groups some vendors use instead (a FrameTime or the frames' FrameAcquisitionDuration, in ms).
    A value that is not a positive number is passed over."""
    ft = _num(ds.get("FrameTime"))
    if ft and ft > 0:
        return 1000.0 / ft, "FrameTime"
    vec = ds.get("FrameTimeVector")
    if vec is not None:
        # the first entry is 0 (time of the first frame); the rest are increments in ms
        steps = [_num(v) for v in (vec if hasattr(vec, "__iter__") and not isinstance(vec, str) else [vec])]
        steps = steps[1:] if len(steps) > 1 else steps
        steps = [v for v in steps if v and v > 0]
        if steps:
            return 1000.0 / float(np.median(steps)), "FrameTimeVector"
    for tag in ("CineRate", "RecommendedDisplayFrameRate"):
        v = _num(ds.get(tag))
        if v and v > 0:
            return float(v), tag
    ms = _group_frame_ms(ds)
    if ms:
        return 1000.0 / ms, "functional groups"
    return DEFAULT_FPS, "default"


def _group_frame_ms(ds) -> float | None:
    """A frame's duration in ms from the shared or per-frame functional groups (FrameTime or
    FrameAcquisitionDuration anywhere inside them; the median over frames), or None."""
    found = []
    for seq in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        for item in ds.get(seq) or []:
            for elem in item.iterall():
                if elem.keyword in ("FrameTime", "FrameAcquisitionDuration") and (v := _num(elem.value)) and v > 0:
                    found.append(v)
        if found:
            return float(np.median(found))
    return None


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


#: what else an echo archive holds, named in the reject reason (SOP class UID, or its prefix ending in '.')
OTHER_CLASSES = {
    "1.2.840.10008.1.3.10": "a DICOMDIR (the index of an exported folder)",
    "1.2.840.10008.5.1.4.1.1.6.2": "an enhanced US volume (3-D or 4-D), not a 2-D cine",
    "1.2.840.10008.5.1.4.1.1.6.3": "a photoacoustic image",
    "1.2.840.10008.5.1.4.1.1.7": "a secondary capture (a screenshot)",
    "1.2.840.10008.5.1.4.1.1.7.": "a multi-frame secondary capture (a screen recording)",
    "1.2.840.10008.5.1.4.1.1.88.": "a structured report (measurements, not images)",
    "1.2.840.10008.5.1.4.1.1.104.": "an encapsulated document (PDF or CDA)",
    "1.2.840.10008.5.1.4.1.1.9.": "a waveform (ECG)",
    "1.2.840.10008.5.1.4.1.1.11.": "a presentation state (display settings, no pixels)",
    "1.2.840.10008.5.1.4.1.1.66": "raw data (a vendor's private format)",
}


def _class_name(sop: str) -> str | None:
    for uid, name in OTHER_CLASSES.items():
        if sop == uid or (uid.endswith(".") and sop.startswith(uid)):
            return name
    return None


def check_cine_header(ds) -> None:
    """Raise DicomError unless `ds` (read with or without pixels) is a multi-frame ultrasound cine."""
    meta = getattr(ds, "file_meta", None)
    sop = str(ds.get("SOPClassUID", "") or (meta.get("MediaStorageSOPClassUID", "") if meta is not None else ""))
    if sop in US_SINGLE:
        raise DicomError("single-frame image (Ultrasound Image Storage)")
    if sop not in (US_MULTIFRAME, US_MULTIFRAME_RETIRED):
        what = _class_name(sop)
        raise DicomError(f"not an ultrasound multi-frame cine{f': {what}' if what else ''} "
                         f"(SOP class {sop or 'missing'})")
    n = _num(ds.get("NumberOfFrames"))
    if n is not None and n < 2:
        raise DicomError("single-frame image (NumberOfFrames < 2)" if n == 1 else "zero frames")


def read_dataset(path: str | Path, stop_before_pixels: bool = False, defer_size: str | None = None):
    """pydicom.dcmread that turns every failure, truncation included, into a DicomError with the reason."""
    import warnings

    import pydicom
    from pydicom.errors import InvalidDicomError

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, defer_size=defer_size)
        except InvalidDicomError as e:
            ds = _without_preamble(path, stop_before_pixels)
            if ds is None:
                raise DicomError("not a DICOM file") from e
        except Exception as e:  # truncated headers, unreadable files
            raise DicomError(f"unreadable DICOM ({type(e).__name__})") from e
    if any("End of file reached" in str(w.message) or "truncated" in str(w.message).lower() for w in caught):
        raise DicomError("truncated file (ends inside a data element)")
    return ds


def _without_preamble(path, stop_before_pixels: bool):
    """A dataset written without the 128-byte preamble and file meta (older vendors' exports), or None: read by
    force, and kept only when it is one (it has a SOP class, and pixel data unless not read)."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, force=True)
    except Exception:
        return None
    if "SOPClassUID" not in ds or (not stop_before_pixels and "PixelData" not in ds):
        return None
    if not getattr(ds, "file_meta", None) or "TransferSyntaxUID" not in ds.file_meta:
        ds.file_meta = ds.file_meta if getattr(ds, "file_meta", None) else pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian  # DICOM's default encoding
    ds.echolib_in_memory = True  # frames come from this dataset, not from re-reading the file
    return ds


#: a cine whose decoded frames (RGB, 8 bits) would exceed this is a recorded reject, decided from its header before
#: anything is decoded (an RLE file of 44 MB can describe 9 GiB of black frames); ingest.max_decoded_mb sets it
MAX_DECODED_MB = 1024


def decoded_mb(n_frames: int, rows: int, cols: int) -> float:
    """Megabytes (2^20 bytes) of a cine's frames as 8-bit RGB: what decoding it holds in memory."""
    return n_frames * rows * cols * 3 / 2 ** 20


def load_cine(path: str | Path, max_mb: float = MAX_DECODED_MB) -> Cine:
    """Read a cine DICOM; raise DicomError with a specific reason when it cannot be used.

    Memory: the header is read first and a cine larger than `max_mb` decoded is refused then; frames are decoded
    one at a time from the file into one uint8 (T, H, W, 3) array (pydicom's `iter_pixels`), so a worker holds
    the decoded clip and one frame in flight, never the pixel data twice or the clip in floating point.
    """
    head = read_dataset(path, stop_before_pixels=True)
    check_cine_header(head)
    n, rows, cols = int(_num(head.get("NumberOfFrames")) or 1), int(head.get("Rows", 0)), int(head.get("Columns", 0))
    if rows < 1 or cols < 1:
        raise DicomError(f"no image size in the header (Rows {rows}, Columns {cols})")
    if (mb := decoded_mb(n, rows, cols)) > max_mb:
        raise DicomError(f"cine too large to decode: {n} frames of {cols}x{rows} px are {mb:,.0f} MB as 8-bit RGB "
                         f"(limit {max_mb:,.0f} MB: ingest.max_decoded_mb)")
    ds = read_dataset(path, stop_before_pixels=False, defer_size="1 KB")  # pixel data read when decoded, not here
    ts_uid = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if getattr(ds, "echolib_in_memory", False) or (ts_uid is not None and ts_uid.is_deflated):
        ds = read_dataset(path) if not getattr(ds, "echolib_in_memory", False) else ds  # decoded from memory
    if "PixelData" not in ds:
        raise DicomError("no pixel data")
    ts = str(ds.file_meta.get("TransferSyntaxUID", "")) if hasattr(ds, "file_meta") else ""
    if ts in VIDEO_SYNTAXES:
        frames = _decode_video_syntax(ds, VIDEO_SYNTAXES[ts], n, rows, cols)
    else:
        frames = _decode_pixels(path, ds, ts, n, rows, cols)
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


def _decode_pixels(path, ds, ts: str, n: int, rows: int, cols: int) -> np.ndarray:
    """Frame by frame from the file into one uint8 RGB array (YBR_* already converted to RGB by pydicom 3)."""
    import warnings

    from pydicom.pixels import iter_pixels

    pi = str(ds.get("PhotometricInterpretation", ""))
    bits = int(ds.get("BitsStored", 8))
    _check_native_length(path, ds, n, rows, cols)
    out = np.empty((n, rows, cols, 3), np.uint8)
    count = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            source = ds if getattr(ds, "echolib_in_memory", False) or ds.file_meta.TransferSyntaxUID.is_deflated \
                else str(path)  # from the file frame by frame, or (deflated, no preamble) from the dataset read
            for arr in iter_pixels(source):
                if count == n:
                    break
                out[count] = _frame_rgb(arr, ds, pi, bits)
                count += 1
        except NotImplementedError as e:
            raise DicomError(f"unsupported transfer syntax {ts or 'missing'} (no decoder)") from e
        except DicomError:
            raise
        except Exception as e:
            first = (str(e).strip().splitlines() or [""])[0].rstrip(":")[:120]
            short = "fewer frames than NumberOfFrames" if isinstance(e, (StopIteration, EOFError)) or \
                "less than expected" in str(e) or "fewer" in str(e) else f"{type(e).__name__}: {first}"
            raise DicomError(f"pixel data cannot be decoded ({short}; header NumberOfFrames {n})") from e
    if any("(0028,0008)" in str(w.message) or "larger than the given" in str(w.message)
           or "more frames" in str(w.message) for w in caught):
        raise DicomError(f"header NumberOfFrames ({n}) disagrees with the pixel data, which holds more frames")
    if count < n:
        raise DicomError(f"pixel data cannot be decoded (fewer frames than NumberOfFrames; header NumberOfFrames {n})")
    return out


def _check_native_length(path, ds, n: int, rows: int, cols: int) -> None:
    """The pixel data lies wholly in the file, and uncompressed pixel data holds exactly NumberOfFrames frames
    (both known from its element's length and position before a byte of it is read)."""
    import os

    elem = ds.get_item(0x7FE00010, keep_deferred=True)
    length, at = getattr(elem, "length", None), getattr(elem, "value_tell", None)
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    deflated = ts is not None and ts.is_deflated  # positions are in the inflated stream, not in the file
    if not deflated and length is not None and at is not None and length != 0xFFFFFFFF \
            and at + length > os.path.getsize(path):
        raise DicomError("truncated file (ends inside a data element)")
    if ts is None or ts.is_encapsulated:
        return
    if length is None and getattr(elem, "value", None) is not None:
        length = len(elem.value)
    bits = int(ds.get("BitsAllocated", 8))
    per_frame = rows * cols * int(ds.get("SamplesPerPixel", 1)) * bits // 8
    if length is None or per_frame == 0 or bits % 8:
        return
    frames = (length - (length % 2 if per_frame % 2 else 0)) // per_frame
    if frames > n:
        raise DicomError(f"header NumberOfFrames ({n}) disagrees with the pixel data, which holds more frames")
    if frames < n:
        raise DicomError(f"pixel data cannot be decoded (fewer frames than NumberOfFrames; header NumberOfFrames {n})")


def _frame_rgb(arr: np.ndarray, ds, pi: str, bits: int) -> np.ndarray:
    """One decoded frame as uint8 (H, W, 3)."""
    samples = int(ds.get("SamplesPerPixel", 1))
    if arr.ndim != (3 if samples > 1 else 2):
        raise DicomError(f"unexpected pixel array shape {arr.shape} for {pi}")
    if pi == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        arr = _to_uint8(apply_color_lut(arr, ds), None)
    else:
        if pi == "MONOCHROME1":  # inverted grey: the highest value is black
            arr = (2 ** bits - 1) - arr.astype(np.int64)
        arr = _to_uint8(arr, bits)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.shape[-1] != 3:
        raise DicomError(f"unexpected pixel array shape {arr.shape} for {pi}")
    return arr


def _to_uint8(arr: np.ndarray, bits: int | None) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if bits is None:  # palette LUT output: scale by its own range (8- or 16-bit entries)
        bits = 16 if arr.max(initial=0) > 255 else 8
    arr = arr.astype(np.float32)
    if bits <= 8:
        return np.clip(arr, 0, 255).astype(np.uint8)
    return np.clip(arr / (2 ** bits - 1) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _decode_video_syntax(ds, fmt: str, n: int, rows: int, cols: int) -> np.ndarray:
    import av
    from pydicom.encaps import generate_fragments

    try:
        stream = b"".join(generate_fragments(ds.PixelData))
    except Exception as e:
        raise DicomError(f"encapsulated video stream cannot be read ({type(e).__name__})") from e
    out, count = None, 0
    try:
        with av.open(io.BytesIO(stream), format=fmt) as container:
            for frame in container.decode(video=0):
                f = frame.to_ndarray(format="rgb24")
                if out is None:  # the stream's own size; the header's bounds what is held
                    if decoded_mb(n, *f.shape[:2]) > 4 * decoded_mb(n, rows, cols) + 1:
                        raise DicomError(f"the {fmt} stream's frames ({f.shape[1]}x{f.shape[0]}) are far larger "
                                         f"than the header's Rows x Columns ({cols}x{rows})")
                    out = np.empty((n, *f.shape), np.uint8)
                if count == n:
                    break  # more frames than the header says: the header's count is kept
                out[count] = f
                count += 1
    except DicomError:
        raise
    except Exception as e:
        raise DicomError(f"unsupported transfer syntax: {fmt} stream not decodable by PyAV ({type(e).__name__})") from e
    if not count:
        raise DicomError(f"zero frames decoded from the {fmt} stream")
    return out[:count]
