"""Pixels in: an image file decoded as every request's image is (:mod:`.decode`), and video files and
directories of frames read one frame at a time (:mod:`.video`).

What they accept is here, data that the settings and the command line read without OpenCV: the pixel
limit and the file names taken for frames and for videos.
"""

# The function's limit on an image's pixels unless ALPHAPOSE_MAX_PIXELS says otherwise; calibration frames
# are held to it too.
DEFAULT_MAX_PIXELS = 50_000_000
# The image files read as a directory's frames.
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
# Names that say "video file" to the command line (FrameSource itself opens whatever FFmpeg reads).
VIDEO_SUFFIXES = (
    ".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".3gp", ".ogv"
)  # fmt: skip
