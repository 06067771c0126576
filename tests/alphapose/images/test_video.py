"""Videos: the frame reader, the batched poses, streaming, and ``python -m tools predict`` on a video
file and on a directory of frames (synthetic weights: the detector finds one person covering each
frame, so every frame holds one person and the tracker must give it one identity throughout)."""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from image_files import KINDS

from alphapose.errors import VideoError
from alphapose.images import DEFAULT_MAX_PIXELS
from alphapose.images.decode import decode_image
from alphapose.images.video import DEFAULT_FPS, FrameSource
from alphapose.pipeline import PosePipeline
from alphapose.tracking import PoseTracker, track_video
from tools.cli import main
from tools.errors import CommandError
from tools.render import draw_labels

MODEL_OPTIONS = ["--detector", "yolox-s", "--detector-size", "160", "--device", "cpu"]
WIDTH, HEIGHT, FRAMES, FPS = 64, 96, 5, 12.0
# AlphaPose's results entry, in the official writer's order (alphapose/utils/pPose_nms.py write_json).
RESULT_FIELDS = ["image_id", "category_id", "keypoints", "score", "box", "idx"]


def grey(level: int) -> np.ndarray:
    return np.full((HEIGHT, WIDTH, 3), level, dtype=np.uint8)


def write_video(path: Path, frames: int = FRAMES) -> Path:
    """A video of flat grey frames getting lighter, written as AlphaPose's demo writes (mp4v)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    assert writer.isOpened()
    for k in range(frames):
        writer.write(grey(20 + 40 * k))
    writer.release()
    return path


@pytest.fixture(scope="module")
def pipeline(weights_dir: Path) -> PosePipeline:
    return PosePipeline.from_weights_dir(weights_dir, device="cpu", detector="yolox-s", detector_size=160)


# --- reading ---------------------------------------------------------------------------------------


def test_video_file_frames_in_order_with_alphapose_names(tmp_path: Path) -> None:
    source = FrameSource(write_video(tmp_path / "clip.mp4"))
    assert (source.fps, source.frame_count) == (FPS, FRAMES)
    frames = list(source)
    assert [f.name for f in frames] == [f"{k}.jpg" for k in range(FRAMES)]
    assert [f.index for f in frames] == list(range(FRAMES))
    for k, frame in enumerate(frames):
        assert frame.image.shape == (HEIGHT, WIDTH, 3) and frame.image.dtype == np.uint8
        assert abs(float(frame.image.mean()) - (20 + 40 * k)) < 8  # lossy codec, flat frames


def test_directory_frames_in_natural_order(tmp_path: Path) -> None:
    for k in (10, 2, 1):
        rgb = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
        rgb[..., 0] = 10 * k  # red: the reader must hand back RGB
        cv2.imwrite(str(tmp_path / f"frame_{k}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    (tmp_path / "notes.txt").write_text("not a frame")
    source = FrameSource(tmp_path)
    assert (source.fps, source.frame_count) == (DEFAULT_FPS, 3)
    frames = list(source)
    assert [f.name for f in frames] == ["frame_1.png", "frame_2.png", "frame_10.png"]
    assert [int(f.image[0, 0, 0]) for f in frames] == [10, 20, 100]
    assert all(int(f.image[0, 0, 2]) == 0 for f in frames)


@pytest.mark.parametrize(("name", "make"), KINDS)
def test_a_directory_s_frame_has_the_pixels_of_a_request_image(tmp_path: Path, name: str, make: Any) -> None:
    """``predict`` on a directory of frames sees what it sees on the same file given as an image."""
    data = make()
    (tmp_path / name).write_bytes(data)
    (frame,) = FrameSource(tmp_path)
    np.testing.assert_array_equal(frame.image, decode_image(data, max_pixels=DEFAULT_MAX_PIXELS))


def test_a_frame_over_the_pixel_limit_is_an_error_naming_it(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "big.png"), np.zeros((20, 30, 3), np.uint8))
    with pytest.raises(VideoError, match=r"cannot use .*big\.png as an image: .*more than the limit of 599"):
        list(FrameSource(tmp_path, max_pixels=599))
    assert len(list(FrameSource(tmp_path, max_pixels=600))) == 1


def test_unreadable_inputs_are_errors_naming_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x01not a video" * 200)
    with pytest.raises(VideoError, match=r"cannot read .*broken\.mp4 as a video"):
        FrameSource(broken)
    with pytest.raises(VideoError, match=r"missing\.mp4 does not exist"):
        FrameSource(tmp_path / "missing.mp4")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VideoError, match=r"empty holds no image files"):
        FrameSource(empty)
    (empty / "0.png").write_bytes(b"not a png")
    with pytest.raises(VideoError, match=r"cannot use .*0\.png as an image"):
        list(FrameSource(empty))


def test_track_labels_are_white_on_a_dark_patch_at_the_box_corner() -> None:
    image = grey(128)
    drawn = draw_labels(image, [("7", (10.0, 20.0))])
    assert (image == 128).all()  # the input is not modified
    patch = drawn[20:36, 10:23]
    assert (patch == 0).any() and patch.min(axis=-1).max() > 200  # the dark patch and the white digit
    assert (drawn[:20] == 128).all() and (drawn[:, :10] == 128).all()  # nothing above or left of it


# --- poses and tracks ------------------------------------------------------------------------------


def test_batched_frames_give_each_frame_s_own_poses(pipeline: PosePipeline) -> None:
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, (HEIGHT + 16 * k, WIDTH, 3), dtype=np.uint8) for k in range(2)]
    batched = list(pipeline.frames(frames, frame_batch=2))
    assert len(batched) == 2
    for frame, poses in zip(frames, batched, strict=True):
        alone = pipeline(frame)
        assert len(poses) == len(alone) == 1
        np.testing.assert_allclose(poses[0].box, alone[0].box, atol=1e-3)
        np.testing.assert_allclose(poses[0].keypoints, alone[0].keypoints, atol=1e-2)
    with pytest.raises(ValueError, match="frame_batch must be at least 1"):
        next(pipeline.frames(frames, frame_batch=0))


def test_track_video_streams(pipeline: PosePipeline) -> None:
    """An endless stream: results come while frames are still arriving, reading at most a batch ahead."""
    read = 0

    def endless() -> Iterator[np.ndarray]:
        nonlocal read
        while True:
            read += 1
            yield grey(100)

    results = list(itertools.islice(track_video(pipeline, endless(), PoseTracker(), frame_batch=2), 3))
    assert [index for index, _ in results] == [0, 1, 2]
    assert [[track_id for track_id, _ in tracked] for _, tracked in results] == [[1], [1], [1]]
    assert read <= 4


# --- python -m tools predict -----------------------------------------------------------------------


def predict(*argv: str, weights: Path) -> int:
    return main(["predict", *argv, "--weights-dir", str(weights), *MODEL_OPTIONS])


def test_predict_video_writes_tracked_results_and_a_rendered_video(
    weights_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    video = write_video(tmp_path / "clip.mp4")
    out, render = tmp_path / "out" / "results.json", tmp_path / "drawn.mp4"
    assert predict(str(video), "--out", str(out), "--render", str(render), weights=weights_dir) == 0
    err = capsys.readouterr().err
    assert "frame/s" in err and f"{FRAMES}/{FRAMES}" in err  # the progress bar
    assert f"{FRAMES} frame(s), {FRAMES} person(s) in 1 track(s)" in err
    results = json.loads(out.read_text())
    assert [r["image_id"] for r in results] == [f"{k}.jpg" for k in range(FRAMES)]
    assert all(list(r) == RESULT_FIELDS for r in results)
    assert [r["idx"] for r in results] == [1] * FRAMES
    assert results[0]["box"] == pytest.approx([0, 0, WIDTH, HEIGHT])
    assert not list(out.parent.glob("*.partial"))
    drawn = FrameSource(render)
    assert drawn.frame_count == FRAMES and drawn.fps == FPS
    assert next(iter(drawn)).image.shape == (HEIGHT, WIDTH, 3)


@pytest.mark.slow
def test_predict_directory_of_frames_to_stdout(
    weights_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("b_10.png", "b_2.png", "b_1.png"):  # three frames: what a track needs to be kept
        cv2.imwrite(str(tmp_path / name), grey(90))
    assert predict(str(tmp_path), "--no-progress", "--max-age", "0", weights=weights_dir) == 0
    captured = capsys.readouterr()
    results = json.loads(captured.out)
    assert [(r["image_id"], r["idx"]) for r in results] == [("b_1.png", 1), ("b_2.png", 1), ("b_10.png", 1)]
    assert "frame/s" not in captured.err
    # a threshold no box score reaches: nothing written, an empty list
    assert predict(str(tmp_path), "--no-progress", "--threshold", "1", weights=weights_dir) == 0
    assert json.loads(capsys.readouterr().out) == []
    # a frame that cannot be decoded part-way: an error naming it, and no results file
    (tmp_path / "b_3.png").write_bytes(b"not a png")
    out = tmp_path / "out" / "results.json"
    assert predict(str(tmp_path), "--no-progress", "--out", str(out), weights=weights_dir) == 1
    assert f"error: cannot use {tmp_path / 'b_3.png'} as an image: " in capsys.readouterr().err
    assert not out.exists() and not list(out.parent.iterdir())


@pytest.mark.slow
def test_predict_directory_of_videos_writes_one_results_file_each(
    weights_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One model load for every video; a video that cannot be read is reported and the others go on;
    the exit status says one failed."""
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "a.mp4", frames=3)
    (videos / "b.avi").write_bytes(b"RIFF" + b"\x00" * 500)
    write_video(videos / "c.mp4", frames=4)
    (videos / "notes.txt").write_text("not a video")
    out, render = tmp_path / "out", tmp_path / "drawn"
    args = ("--no-progress", "--out", str(out), "--render", str(render))
    assert predict(str(videos), *args, weights=weights_dir) == 1
    err = capsys.readouterr().err
    assert f"error: cannot read {videos / 'b.avi'} as a video" in err
    assert f"2 of 3 videos tracked into {out}" in err and f"failed: {videos / 'b.avi'}" in err
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "c.json"]
    for name, frames in (("a", 3), ("c", 4)):  # three frames at least: a track needs them to be kept
        results = json.loads((out / f"{name}.json").read_text())
        assert [r["idx"] for r in results] == [1] * frames
        assert FrameSource(render / f"{name}.mp4").frame_count == frames
    assert predict(str(videos), "--out", str(tmp_path / "r.json"), weights=weights_dir) == 2
    assert "is a directory of 3 videos: give --out DIR" in capsys.readouterr().err


def test_a_failed_video_of_a_directory_is_reported_as_the_command_reports_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The line of a video that fails while the others go on is CommandError.report's, the one the
    command ends with when a single video fails."""
    import tools.predict

    def reported(error: CommandError) -> int:
        print(f"reported: {error}", file=sys.stderr)
        return error.status

    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "b.avi").write_bytes(b"RIFF" + b"\x00" * 500)
    monkeypatch.setattr(tools.predict, "load", lambda settings: None)  # the video fails before any frame
    monkeypatch.setattr(CommandError, "report", reported)
    assert main(["predict", str(videos), "--no-progress", "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert f"reported: cannot read {videos / 'b.avi'} as a video" in err and "0 of 1 videos tracked" in err
    assert main(["predict", str(videos / "b.avi"), "--no-progress"]) == 1
    assert capsys.readouterr().err.startswith(f"reported: cannot read {videos / 'b.avi'} as a video")


def test_a_directory_of_frames_and_videos_is_refused_before_the_model_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Read as frames, its videos would be dropped without a word (as videos, its frames): one line naming
    it and what to do, status 2."""
    import tools.predict

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in ("0.png", "1.png"):
        cv2.imwrite(str(mixed / name), np.zeros((24, 32, 3), np.uint8))
    (mixed / "a.mp4").write_bytes(b"\x00" * 64)

    def loaded(settings: object) -> None:
        raise AssertionError("the model loaded")

    monkeypatch.setattr(tools.predict, "load", loaded)
    assert main(["predict", str(mixed), "--no-progress"]) == 2
    assert capsys.readouterr().err == (
        f"error: {mixed} holds both frames and video files (a.mp4): put the frames and the videos in "
        "separate directories\n"
    )


def test_predict_video_errors(weights_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"RIFF" + b"\x00" * 500)
    out = tmp_path / "results.json"
    assert predict(str(broken), "--out", str(out), weights=weights_dir) == 1
    assert f"error: cannot read {broken} as a video" in capsys.readouterr().err
    assert not out.exists()
    video = write_video(tmp_path / "clip.mp4", frames=1)
    cases = [
        (["--format", "cvat"], "error: --format cvat is for images"),
        (["--render", str(tmp_path / "x.png")], "for a video, name a video file"),
        (["--max-age", "-1"], "error: invalid --max-age -1: must be at least 0"),
        (["--iou-weight", "2"], "error: invalid --iou-weight 2.0: must be in [0, 1]"),
        (["--frame-batch", "0"], "error: invalid --frame-batch 0: must be at least 1"),
    ]
    for flags, message in cases:
        assert predict(str(video), *flags, weights=weights_dir) == 2
        assert message in capsys.readouterr().err
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), grey(90))
    assert predict(str(image), str(video), weights=weights_dir) == 2
    err = capsys.readouterr().err
    assert "clip.mp4 is a video or a directory of frames: give it as the only input" in err
