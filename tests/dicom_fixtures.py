"""DICOM variants built from the real apical 4-chamber cine that ships with pydicom (no data downloaded)."""

from __future__ import annotations

import copy
import io
from pathlib import Path

import numpy as np
import pydicom
from pydicom.examples import get_path
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid

IDENTIFIERS = {  # fake identifiers written into the tags that must never leave ingestion
    "PatientName": "YAMADA^TARO",
    "PatientID": "ZX81-4711-JP",
    "PatientBirthDate": "19470203",
    "AccessionNumber": "ACC998877",
    "InstitutionName": "Kitasato General Hospital",
    "ReferringPhysicianName": "SUZUKI^HANAKO",
    "StudyDescription": "Echo follow-up for Mr Yamada",
    "ImageComments": "called the ward of Taro Yamada",
    "OperatorsName": "OPERATOR^KENJI",
}


def cine() -> pydicom.Dataset:
    return pydicom.dcmread(get_path("ybr_color"))


def variant(study: str | None = None, patient: str | None = None, **tags) -> pydicom.Dataset:
    """A copy of the example cine with new SOP/study UIDs (so files are distinct instances) and given tags."""
    ds = copy.deepcopy(cine())
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = study or ds.StudyInstanceUID
    ds.PatientID = patient or ds.PatientID
    for k, v in tags.items():
        setattr(ds, k, v)
    return ds


def uncompressed(ds: pydicom.Dataset, arr: np.ndarray, photometric: str) -> pydicom.Dataset:
    ds.set_pixel_data(arr, photometric_interpretation=photometric, bits_stored=8)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def rgb(ds=None) -> pydicom.Dataset:
    ds = ds or variant()
    return uncompressed(ds, ds.pixel_array.copy(), "RGB")


def mono(ds=None) -> pydicom.Dataset:
    ds = ds or variant()
    grey = ds.pixel_array.mean(-1).round().astype(np.uint8)
    return uncompressed(ds, grey, "MONOCHROME2")


def rle(ds=None) -> pydicom.Dataset:
    ds = rgb(ds)
    ds.compress(RLELossless)
    return ds


def palette(ds=None) -> tuple[pydicom.Dataset, np.ndarray]:
    """PALETTE COLOR with a LUT mapping index i to RGB (i, 255 - i, 128); returns the expected RGB frames."""
    ds = ds or variant()
    idx = ds.pixel_array.mean(-1).round().astype(np.uint8)
    uncompressed(ds, idx, "MONOCHROME2")
    ds.PhotometricInterpretation = "PALETTE COLOR"
    i = np.arange(256, dtype=np.uint16)
    for k, lut in enumerate((i, 255 - i, np.full(256, 128, np.uint16))):  # red, green, blue
        ds.add_new(0x00281101 + k, "US", [256, 0, 16])
        ds.add_new(0x00281201 + k, "OW", (lut * 257).astype("<u2").tobytes())
    expected = np.stack([idx, 255 - idx, np.full_like(idx, 128)], axis=-1)
    return ds, expected


def h264(ds=None) -> pydicom.Dataset:
    """MPEG-4 AVC/H.264 High Profile inside DICOM (a video transfer syntax pydicom cannot decode)."""
    import av
    from pydicom.encaps import encapsulate

    ds = ds or variant()
    frames = ds.pixel_array
    buf = io.BytesIO()
    with av.open(buf, "w", format="h264") as out:
        s = out.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.options = {"crf": "10"}
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    ds.PixelData = encapsulate([buf.getvalue()])
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.102"
    ds.PhotometricInterpretation = "YBR_PARTIAL_420"
    ds["PixelData"].is_undefined_length = True
    return ds


def save(ds: pydicom.Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


# --- frame-grabbed cines with burned-in identifiers (the pixel de-identification tests) ------------------------

BURNED = "YAMADA TARO 1947/02/03"  # a name and a birth date burned into the frames


def glyphs(shape: tuple[int, int], text: str, xy: tuple[int, int], size: int = 14) -> np.ndarray:
    """Where `text` is drawn at `xy` (top left) in a (H, W) frame: a boolean stroke mask (PIL's own font)."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("L", (shape[1], shape[0]), 0)
    ImageDraw.Draw(img).text(xy, text, fill=255, font=ImageFont.load_default(size=size))
    return np.asarray(img) > 127


def burn(frames: np.ndarray, text: str, xy: tuple[int, int], fill=(230, 230, 230), size: int = 14):
    """A copy of (T, H, W, 3) frames with `text` burned into every frame; returns (frames, stroke mask)."""
    g = glyphs(frames.shape[1:3], text, xy, size)
    out = frames.copy()
    out[:, g] = fill
    return out, g


def ecg_trace(frames: np.ndarray, y0: int, amp: int = 8, colour=(0, 230, 0)) -> np.ndarray:
    """A copy with a sweeping ECG trace across the width at row `y0` (a new position every frame)."""
    out = frames.copy()
    t, h, w = out.shape[:3]
    xs = np.arange(w)
    wave = y0 + amp * np.exp(-(((xs % 80) - 40) ** 2) / 8.0) * np.sign(np.sin(xs / 7.0) + 0.3)
    for i in range(t):
        ys = np.clip(np.roll(wave, (i * 11) % w).round().astype(int), 0, h - 2)
        out[i, ys, xs] = colour
        out[i, ys + 1, xs] = colour
    return out


def grabbed(frames: np.ndarray, black: float = 10, noise: float = 2.0, jpeg: int | None = None,
            seed: int = 0) -> np.ndarray:
    """The cine as a frame grabber sees the screen: a raised black level and fresh noise every frame (grey, as an
    analogue video signal's), optionally each frame JPEG-compressed at quality `jpeg`."""
    rng = np.random.default_rng(seed)
    out = frames.astype(np.float32) + black + rng.normal(0, noise, frames.shape[:3])[..., None]
    out = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    if jpeg:
        from PIL import Image

        def squeeze(f):
            buf = io.BytesIO()
            Image.fromarray(f).save(buf, "JPEG", quality=jpeg)
            return np.asarray(Image.open(buf))

        out = np.stack([squeeze(f) for f in out])
    return out


def with_frames(frames: np.ndarray, study: str | None = None, patient: str | None = None, **tags) -> pydicom.Dataset:
    """An uncompressed RGB cine holding `frames`, with the example's headers (new UIDs) and `tags`."""
    ds = variant(study=study, patient=patient, **tags)
    ds.NumberOfFrames = len(frames)
    return uncompressed(ds, np.ascontiguousarray(frames), "RGB")
