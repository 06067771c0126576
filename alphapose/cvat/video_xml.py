"""Skeleton tracks as a "CVAT for video 1.1" annotation file, for teams that upload annotations by hand.

The layout is the one CVAT's own exporter writes and its importer reads (cvat-ai/cvat,
``cvat/apps/dataset_manager/formats/cvat.py``: ``dump_as_cvat_interpolation`` and ``load_anno``)::

    <annotations>
      <version>1.1</version>
      <meta><task>...</task></meta>
      <track id="0" label="person" source="auto">
        <skeleton frame="12" keyframe="1" outside="0" occluded="0" z_order="0">
          <points label="nose" keyframe="1" outside="0" occluded="0" points="412.60,133.10"/>
          ...
        </skeleton>
        ...
      </track>
    </annotations>

The importer keeps only shapes with ``keyframe="1"`` (it rebuilds the frames in between by
interpolation), so only keyframes are written, each with every point. Frame numbers in the file are
the video's: the task's frame ``k`` is ``start_frame + k * step`` (``TaskData.abs_frame_id`` in
``cvat/apps/dataset_manager/bindings.py``, which ``_import_track`` inverts with ``rel_frame_id``), the
step read from the task's ``frame_filter`` as CVAT reads it (``Data.get_frame_step`` in
``cvat/apps/engine/models.py``). Coordinates have two decimals, as CVAT writes them. CVAT's exporter
leaves ``outside`` off a ``<skeleton>``; its importer reads it, and it is written here so that a
skeleton's own shapes say where the person left.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from alphapose.cvat.skeleton_tracks import SkeletonTrack
from alphapose.cvat.spec import PERSON_LABEL

VERSION = "1.1"
_STEP = re.compile(r"step\s*=\s*([1-9]\d*)")


@dataclass(frozen=True)
class TaskFrames:
    """What the file says of the task: its id and name, frame numbering and frame size."""

    task_id: int
    name: str
    size: int
    start_frame: int
    stop_frame: int
    frame_filter: str
    width: int
    height: int

    @property
    def step(self) -> int:
        """The frame step CVAT reads from ``frame_filter`` (``step=N``; 1 without one)."""
        match = _STEP.search(self.frame_filter)
        return int(match.group(1)) if match else 1

    def source_frame(self, frame: int) -> int:
        """The video's frame number of the task's frame ``frame``."""
        if not 0 <= frame < self.size:
            raise ValueError(f"frame {frame} is outside task {self.task_id}'s frames 0..{self.size - 1}")
        return self.start_frame + frame * self.step


def video_xml(
    tracks: Sequence[SkeletonTrack], keypoints: Sequence[str], task: TaskFrames, label: str = PERSON_LABEL
) -> bytes:
    """The annotation file's bytes (UTF-8 XML) for ``tracks`` whose points are named ``keypoints``."""
    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = VERSION
    root.append(_meta(task, keypoints, label))
    for index, track in enumerate(tracks):
        element = ET.SubElement(root, "track", {"id": str(index), "label": label, "source": "auto"})
        for keyframe in track.keyframes:
            if len(keyframe.points) != len(keypoints):
                raise ValueError(
                    f"track {track.track_id} has {len(keyframe.points)} points, the skeleton {len(keypoints)}"
                )
            skeleton = ET.SubElement(
                element,
                "skeleton",
                {
                    "frame": str(task.source_frame(keyframe.frame)),
                    "keyframe": "1",
                    "outside": _flag(keyframe.outside),
                    "occluded": "0",
                    "z_order": "0",
                },
            )
            for name, (x, y), outside in zip(
                keypoints, keyframe.points, keyframe.points_outside, strict=True
            ):
                ET.SubElement(
                    skeleton,
                    "points",
                    {
                        "label": name,
                        "keyframe": "1",
                        "outside": _flag(outside),
                        "occluded": "0",
                        "points": f"{x:.2f},{y:.2f}",
                    },
                )
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def write_video_xml(
    path: Path,
    tracks: Sequence[SkeletonTrack],
    keypoints: Sequence[str],
    task: TaskFrames,
    label: str = PERSON_LABEL,
) -> None:
    """Write :func:`video_xml` to ``path``."""
    path.write_bytes(video_xml(tracks, keypoints, task, label))


def _meta(task: TaskFrames, keypoints: Sequence[str], label: str) -> ET.Element:
    """The ``<meta>`` block in the order of CVAT's ``TaskData.meta_for_task``, with the fields that
    describe the task's frames and labels (the importer reads none of it; people do)."""
    meta = ET.Element("meta")
    element = ET.SubElement(meta, "task")
    for name, value in (
        ("id", task.task_id),
        ("name", task.name),
        ("size", task.size),
        ("mode", "interpolation"),
        ("start_frame", task.start_frame),
        ("stop_frame", task.stop_frame),
        ("frame_filter", task.frame_filter),
    ):
        ET.SubElement(element, name).text = str(value)
    labels = ET.SubElement(element, "labels")
    _label(labels, label, "skeleton")
    for name in keypoints:
        _label(labels, name, "points", parent=label)
    size = ET.SubElement(element, "original_size")
    ET.SubElement(size, "width").text = str(task.width)
    ET.SubElement(size, "height").text = str(task.height)
    return meta


def _label(labels: ET.Element, name: str, kind: str, parent: str | None = None) -> None:
    element = ET.SubElement(labels, "label")
    ET.SubElement(element, "name").text = name
    ET.SubElement(element, "type").text = kind
    ET.SubElement(element, "attributes")
    if parent is not None:
        ET.SubElement(element, "parent").text = parent


def _flag(value: bool) -> str:
    return "1" if value else "0"
