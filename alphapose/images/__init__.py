"""Pixels in: an image file decoded as every request's image is (:mod:`.decode`), and video files and
directories of frames read one frame at a time (:mod:`.video`)."""
