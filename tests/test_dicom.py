"""DICOM cine reading and sector masking on the real apical 4-chamber cine shipped with pydicom."""

import numpy as np
import pytest
from pydicom.examples import get_path

from echolib.io.dicom import DicomError, frame_rate, load_cine, read_cine
from echolib.io.mask import MaskError, apply_mask, sector_mask
from tests import dicom_fixtures as F


def test_read_cine_matches_pydicom_on_the_real_cine():
    frames, fps = read_cine(get_path("ybr_color"))
    assert frames.shape == (30, 240, 320, 3) and frames.dtype == np.uint8
    assert fps == pytest.approx(1000 / 33.333, rel=1e-6)
    # pydicom 3 already gives RGB for YBR_FULL_422: equal to its own pixel_array, i.e. not converted twice
    np.testing.assert_array_equal(frames, F.cine().pixel_array)
    assert frames[..., 0].mean() != pytest.approx(frames[..., 1].mean(), abs=0.01) or frames.std() > 0


@pytest.mark.parametrize("make", ["rgb", "rle", "mono"])
def test_photometric_and_rle_variants_decode_to_the_same_frames(tmp_path, make):
    ref = F.cine().pixel_array.astype(np.int16)
    frames, fps = read_cine(F.save(getattr(F, make)(), tmp_path / "x.dcm"))
    assert frames.shape == (30, 240, 320, 3)
    expected = ref if make != "mono" else np.repeat(ref.mean(-1, keepdims=True).round(), 3, -1)
    np.testing.assert_array_equal(frames, expected.astype(np.uint8))


def test_palette_colour_goes_through_its_lookup_table(tmp_path):
    ds, expected = F.palette()
    frames, _ = read_cine(F.save(ds, tmp_path / "p.dcm"))
    np.testing.assert_array_equal(frames, expected)


def test_h264_inside_dicom_decodes_through_pyav(tmp_path):
    cine = load_cine(F.save(F.h264(), tmp_path / "v.dcm"))
    assert cine.frames.shape == (30, 240, 320, 3)
    err = np.abs(cine.frames.astype(np.int16) - F.cine().pixel_array.astype(np.int16)).mean()
    assert err < 3.0, err  # lossy codec, near-lossless setting


def test_frame_rate_precedence():
    ds = F.variant()
    assert frame_rate(ds) == (pytest.approx(30.0003, rel=1e-4), "FrameTime")
    del ds.FrameTime
    ds.FrameTimeVector = [0, 40, 40, 40]
    assert frame_rate(ds) == (pytest.approx(25.0), "FrameTimeVector")
    del ds.FrameTimeVector
    ds.CineRate = 50
    ds.RecommendedDisplayFrameRate = 20
    assert frame_rate(ds) == (50.0, "CineRate")
    del ds.CineRate
    assert frame_rate(ds) == (20.0, "RecommendedDisplayFrameRate")
    del ds.RecommendedDisplayFrameRate
    assert frame_rate(ds) == (30.0, "default")


@pytest.mark.parametrize("edit,reason", [
    (lambda ds: setattr(ds, "SOPClassUID", "1.2.840.10008.5.1.4.1.1.6.1"), "single-frame image"),
    (lambda ds: setattr(ds, "SOPClassUID", "1.2.840.10008.5.1.4.1.1.2"), "not an ultrasound multi-frame cine"),
    (lambda ds: setattr(ds, "NumberOfFrames", 1), "single-frame image"),
    (lambda ds: setattr(ds, "NumberOfFrames", 0), "zero frames"),
])
def test_unusable_files_raise_a_specific_reason(tmp_path, edit, reason):
    ds = F.variant()
    edit(ds)
    with pytest.raises(DicomError, match=reason):
        load_cine(F.save(ds, tmp_path / "bad.dcm"))


def test_truncated_and_non_dicom_files(tmp_path):
    whole = F.save(F.variant(), tmp_path / "whole.dcm").read_bytes()
    (tmp_path / "trunc.dcm").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DicomError, match="truncated file"):
        load_cine(tmp_path / "trunc.dcm")
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(DicomError, match="not a DICOM file"):
        load_cine(tmp_path / "notes.txt")


def test_sector_mask_removes_burned_in_text_and_keeps_the_sector():
    cine = load_cine(get_path("ybr_color"))
    mask, info = sector_mask(cine.frames, cine.regions)
    # the stored region box (x up to 595) does not fit this 320-wide image: ignored, and said so
    assert info["regions_ignored"] == 1 and info["regions_used"] == 0
    frames = cine.frames
    text = frames[:, :25, :60].max()  # "PLA / Gen THI" at the top left, and the bottom tool bar
    assert text > 100 and frames[:, 228:].max() > 100
    masked = apply_mask(frames, mask)
    assert masked[:, :25, :60].max() == 0 and masked[:, 228:].max() == 0 and masked[:, :, 300:].max() == 0
    # the sector survives: the centre of the heart and most of a box well inside the sector
    assert mask[120, 160] and mask[60:200, 100:220].mean() > 0.95
    np.testing.assert_array_equal(masked[:, mask], frames[:, mask])
    assert 0.2 < info["fraction"] < 0.5


def test_sector_mask_uses_fitting_regions_and_refuses_static_clips():
    frames = load_cine(get_path("ybr_color")).frames
    mask, info = sector_mask(frames, [(0, 0, 159, 239)])  # a box that fits: the left half
    assert info["regions_used"] == 1 and not mask[:, 160:].any() and mask[120, 150]
    still = np.repeat(frames[:1], 5, axis=0)
    with pytest.raises(MaskError, match=r"^nothing in the frame moves above its noise floor \(a frozen clip\?\)$"):
        sector_mask(still)


def test_undecodable_video_syntax_is_rejected_with_the_reason(tmp_path):
    from pydicom.encaps import encapsulate

    ds = F.h264()
    ds.PixelData = encapsulate([b"\x00\x00\x01" + bytes(range(256)) * 8])
    ds["PixelData"].is_undefined_length = True
    with pytest.raises(DicomError, match="unsupported transfer syntax: h264 stream not decodable by PyAV"):
        load_cine(F.save(ds, tmp_path / "broken.dcm"))
