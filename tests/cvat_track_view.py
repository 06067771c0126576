"""What CVAT makes of uploaded skeleton tracks, written from CVAT's code independently of the library.

``shown`` takes a track as the JSON the SDK sends (``LabeledTrackRequest``: skeleton shapes and one
element track per point) and returns, per task frame, the points CVAT shows: it follows
``TrackManager.get_interpolated_shapes`` and ``TrackManager.to_shapes`` in cvat-ai/cvat's
``cvat/apps/dataset_manager/annotation.py`` step by step (shapes sorted by frame; linear interpolation
between consecutive shapes with the left shape's flags, skipped after an outside shape unless
``include_outside``, which elements get; the last shape propagated to the end unless outside; shapes
kept where ``track.frame <= frame < end_frame``; a skeleton frame dropped where every element is
outside). ``load_video_xml`` reads a CVAT for video 1.1 file as CVAT's ``load_anno`` and
``TaskData._import_track`` do (only ``keyframe="1"`` shapes, an element's frame taken from its
``<skeleton>``, video frame numbers back to task frames), into the same JSON form.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import numpy as np


def interpolated(
    track: dict[str, Any], end_frame: int, *, include_outside: bool = False
) -> dict[int, dict[str, Any]]:
    """Frame -> shape (``points``, ``outside``, ``keyframe``) of one track, CVAT's way."""
    result: dict[int, dict[str, Any]] = {}
    previous = None
    for shape in sorted(track["shapes"], key=lambda s: s["frame"]):
        if previous is not None:
            assert shape["frame"] > previous["frame"]
            if not previous["outside"] or include_outside:
                distance = shape["frame"] - previous["frame"]
                difference = np.subtract(shape["points"], previous["points"])
                for frame in range(previous["frame"] + 1, shape["frame"]):
                    offset = (frame - previous["frame"]) / distance
                    points = (np.asarray(previous["points"], dtype=float) + difference * offset).tolist()
                    result[frame] = {**previous, "frame": frame, "points": points, "keyframe": False}
        result[shape["frame"]] = {**shape, "keyframe": True}
        previous = shape
    if previous is not None and (not previous["outside"] or include_outside):
        for frame in range(previous["frame"] + 1, end_frame):
            result[frame] = {**previous, "frame": frame, "keyframe": False}
    return {
        frame: shape
        for frame, shape in result.items()
        if track["frame"] <= frame < end_frame
        and (shape["keyframe"] or not shape["outside"] or include_outside)
    }


def shown(track: dict[str, Any], end_frame: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Frame -> (points (K, 2), visible (K,)) where CVAT shows the skeleton track (JSON form)."""
    skeleton = interpolated(track, end_frame)
    elements = [interpolated(element, end_frame, include_outside=True) for element in track["elements"]]
    result = {}
    for frame, shape in skeleton.items():
        if shape["outside"]:
            continue  # a skeleton keyframe saying the person left
        points = np.array([element[frame]["points"] for element in elements], dtype=float)
        visible = np.array([not element[frame]["outside"] for element in elements])
        if visible.any():
            result[frame] = (points, visible)
    return result


def load_video_xml(data: bytes, start_frame: int, step: int) -> list[dict[str, Any]]:
    """The ``person`` skeleton tracks of a CVAT for video 1.1 file, as CVAT's importer builds them."""
    root = ET.fromstring(data)
    assert root.tag == "annotations" and root.findtext("version") == "1.1"
    tracks = []
    for track in root.iter("track"):
        shapes: list[dict[str, Any]] = []
        elements: dict[str, dict[str, Any]] = {}
        for skeleton in track.iter("skeleton"):
            absolute = int(skeleton.attrib["frame"])
            frame, remainder = divmod(absolute - start_frame, step)
            assert remainder == 0, f"frame {absolute} is not one of the task's"
            if skeleton.attrib["keyframe"] == "1":
                shapes.append(
                    {
                        "type": "skeleton",
                        "frame": frame,
                        "points": [],
                        "outside": skeleton.attrib.get("outside", "0") == "1",
                    }
                )
            for point in skeleton.iter("points"):
                element = elements.setdefault(point.attrib["label"], {"shapes": []})
                if point.attrib["keyframe"] == "1":
                    x, y = (float(v) for v in point.attrib["points"].split(","))
                    element["shapes"].append(
                        {
                            "type": "points",
                            "frame": frame,
                            "points": [x, y],
                            "outside": point.attrib["outside"] == "1",
                            "occluded": point.attrib["occluded"] == "1",
                        }
                    )
        first = min(shape["frame"] for shape in shapes)
        tracks.append(
            {
                "label": track.attrib["label"],
                "frame": first,
                "shapes": shapes,
                "elements": [
                    {"label": label, "frame": first, "shapes": element["shapes"]}
                    for label, element in elements.items()
                ],
            }
        )
    return tracks
