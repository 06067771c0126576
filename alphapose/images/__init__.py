"""Pixels in: video files and directories of frames read one frame at a time (:mod:`.video`)."""
