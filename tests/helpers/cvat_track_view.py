"""What CVAT makes of uploaded skeleton tracks, written from CVAT's code independently of the library.

``kept`` takes a track as the JSON the SDK sends (``LabeledTrackRequest``: skeleton shapes and an
element track per point, each with a ``label``) and returns what CVAT stores of it: each element
without its leading outside shapes (``AnnotationIR._slice_track`` in
``cvat/apps/dataset_manager/annotation.py``), an element left without shapes dropped, and an outside
copy of an element's first shape added on the track's frame where the element starts later
(``create_tracks`` / ``_sync_frames`` / ``_add_missing_shape`` in ``cvat/apps/dataset_manager/task.py``).
``shown`` returns, per task frame, the points CVAT shows of what it stores: it follows
``TrackManager.get_interpolated_shapes`` and ``TrackManager.to_shapes`` in ``annotation.py`` step by
step (shapes sorted by frame; linear interpolation between consecutive shapes with the left shape's
flags, skipped after an outside shape unless ``include_outside``, which elements get; the last shape
propagated to the end unless outside; shapes kept where ``track.frame <= frame < end_frame``; a
skeleton frame dropped where every element is outside). ``load_video_xml`` reads a CVAT for video 1.1
file as CVAT's ``load_anno`` and ``TaskData._import_track`` do (only ``keyframe="1"`` shapes, an
element's frame taken from its ``<skeleton>``, video frame numbers back to task frames), into the same
JSON form.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
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


def kept(track: dict[str, Any]) -> dict[str, Any]:
    """What CVAT stores of an uploaded skeleton track (JSON form; see the module docstring)."""
    elements = []
    for element in track["elements"]:
        shapes = sorted(element["shapes"], key=lambda s: s["frame"])
        while shapes and shapes[0]["outside"]:
            shapes = shapes[1:]
        if not shapes:
            continue
        if shapes[0]["frame"] > track["frame"]:
            shapes = [{**shapes[0], "frame": track["frame"], "outside": True}, *shapes]
        elements.append({**element, "frame": track["frame"], "shapes": shapes})
    return {**track, "elements": elements}


def shown(
    track: dict[str, Any], end_frame: int, labels: Sequence[str | int]
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Frame -> (points (K, 2), visible (K,)) where CVAT shows the skeleton track (JSON form, as uploaded
    or imported); ``labels`` are the skeleton's points as its elements name them (``label`` in an
    imported file, ``label_id`` in an upload). A point CVAT stores nothing of is NaN and not visible."""
    stored = kept(track)
    skeleton = interpolated(stored, end_frame)
    elements = {
        element.get("label", element.get("label_id")): interpolated(element, end_frame, include_outside=True)
        for element in stored["elements"]
    }
    result = {}
    for frame, shape in skeleton.items():
        if shape["outside"]:
            continue  # a skeleton keyframe saying the person left
        points = np.full((len(labels), 2), np.nan)
        visible = np.zeros(len(labels), dtype=bool)
        for index, label in enumerate(labels):
            if label in elements:
                points[index] = elements[label][frame]["points"]
                visible[index] = not elements[label][frame]["outside"]
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
