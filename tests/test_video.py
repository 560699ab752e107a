import numpy as np
import pytest

from echolib.io.video import VideoDecodeError, read_clip, video_info, write_video


@pytest.fixture(scope="module")
def known_video(tmp_path_factory):
    """Frames whose content is known: frame t has value 10*t in a moving square, noise elsewhere."""
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, size=(12, 40, 56, 3), dtype=np.uint8)
    for t in range(12):
        frames[t, 5:15, t:t + 10] = 10 * t
    path = tmp_path_factory.mktemp("video") / "known.mp4"
    write_video(path, frames, fps=25)
    return path, frames


def test_lossless_round_trip_is_exact(known_video):
    path, frames = known_video
    got = read_clip(path, num_frames=12)
    assert got.dtype == np.uint8 and got.shape == frames.shape
    np.testing.assert_array_equal(got, frames)
    info = video_info(path)
    assert info == {"n_frames": 12, "fps": pytest.approx(25.0), "height": 40, "width": 56}


def test_stride_start_and_padding_repeat_last_frame(known_video):
    path, frames = known_video
    got = read_clip(path, num_frames=6, stride=3, start=2)  # 2, 5, 8, 11, then padding
    np.testing.assert_array_equal(got[:4], frames[[2, 5, 8, 11]])
    np.testing.assert_array_equal(got[4], frames[11])
    np.testing.assert_array_equal(got[5], frames[11])


def test_resize(known_video):
    path, frames = known_video
    got = read_clip(path, num_frames=2, size=(20, 28))
    assert got.shape == (2, 20, 28, 3)
    # block means survive a 2x bilinear downscale within a few grey levels
    assert abs(float(got[1, 3:7, 1:4].mean()) - 10.0) < 12


def test_lossy_mode_within_tolerance(tmp_path):
    y, x = np.mgrid[0:48, 0:64]
    frames = np.stack([np.stack([(x * 4 + t) % 256, y * 5, np.full_like(x, 128)], -1) for t in range(6)])
    frames = frames.astype(np.uint8)
    path = write_video(tmp_path / "lossy.mp4", frames, fps=30, lossless=False, quality=2)
    got = read_clip(path, 6)
    assert np.abs(got.astype(int) - frames).mean() < 3.0  # smooth content: small error at quantiser 2


def test_undecodable_file_error_names_file(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    with pytest.raises(VideoDecodeError, match="broken.mp4"):
        read_clip(bad, 4)
    with pytest.raises(VideoDecodeError, match="no such video file"):
        read_clip(tmp_path / "missing.mp4", 4)


def test_start_past_end(known_video):
    path, _ = known_video
    with pytest.raises(VideoDecodeError, match="past the last frame"):
        read_clip(path, 2, start=50)


def test_write_rejects_bad_input(tmp_path):
    with pytest.raises(TypeError, match="uint8"):
        write_video(tmp_path / "a.mp4", np.zeros((2, 8, 8, 3), np.float32), 30)
    with pytest.raises(ValueError, match="even height"):
        write_video(tmp_path / "b.mp4", np.zeros((2, 9, 8, 3), np.uint8), 30, lossless=False)
    assert not list(tmp_path.glob("*.part"))
