"""A stub of the CVAT server endpoints used by ``cvat-cli task auto-annotate``, ``function create-native``
and ``python -m tools annotate-task``.

It answers what the SDK reads (server version, the task, its labels, its data metadata, its one chunk
of original images, or single frames of a task made from a video) with the fields the SDK's response
models require, and records the annotations the SDK uploads (added, or put in place of the task's),
the frames it fetches and the functions cvat-cli registers. It keeps the task's tracks as CVAT does and
answers ``GET .../annotations`` with them, and can lose the answer of an upload (``lost_replies``).
Anything else is answered 404 and recorded, so a test sees an unexpected request.
"""

from __future__ import annotations

import io
import json
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

SERVER_VERSION = "2.80.0"
TIMESTAMP = "2026-01-01T00:00:00Z"
DROPPED = 0  # a lost reply's status: the connection closes with no answer at all


@dataclass
class LostReply:
    """The answer of one upload that never reaches the client: a proxy's gateway timeout without a body
    (``status`` 504) or a dropped connection (:data:`DROPPED`), after CVAT applied it or not."""

    status: int = DROPPED
    applied: bool = True


@dataclass
class ImageTask:
    """One task of still images; ``labels`` are CVAT's label objects (as ``GET /api/labels`` returns)."""

    task_id: int
    labels: list[dict[str, Any]]
    images: list[tuple[str, bytes]]  # (file name, encoded image) per frame
    sizes: list[tuple[int, int]]  # (width, height) per frame
    uploads: list[dict[str, Any]] = field(default_factory=list)
    functions: list[dict[str, Any]] = field(default_factory=list)  # registered by ``function create-native``
    unexpected: list[str] = field(default_factory=list)
    # A task made from a video has one original chunk of video, which the SDK does not cut: it fetches
    # single frames (``type=frame``), decoded by the server. Its frames are the video's from
    # ``start_frame`` every ``step=N`` of ``frame_filter``; ``deleted_frames`` are task frame numbers.
    original_chunk_type: str = "imageset"
    start_frame: int = 0
    frame_filter: str = ""
    deleted_frames: list[int] = field(default_factory=list)
    validation_mode: str | None = None
    project_id: int | None = None
    replaced: list[dict[str, Any]] = field(default_factory=list)  # PUT: the task's annotations replaced
    fetched_frames: list[int] = field(default_factory=list)
    tracks: list[dict[str, Any]] = field(default_factory=list)  # as CVAT keeps them: with ids
    lost_replies: list[LostReply | None] = field(default_factory=list)  # next uploads'; None: answered
    received: list[tuple[str, int]] = field(default_factory=list)  # each upload's method and body bytes
    _ids: Iterator[int] = field(default_factory=lambda: iter(range(1, 10**9)))

    @property
    def step(self) -> int:
        return int(self.frame_filter.removeprefix("step=")) if self.frame_filter else 1

    def task(self) -> dict[str, Any]:
        base = f"/api/tasks/{self.task_id}"
        return {
            "id": self.task_id,
            "name": "people",
            "size": len(self.images),
            "mode": "annotation",
            "dimension": "2d",
            "data_chunk_size": len(self.images),
            "data_original_chunk_type": self.original_chunk_type,
            "data_compressed_chunk_type": "imageset",
            "status": "annotation",
            "created_date": TIMESTAMP,
            "updated_date": TIMESTAMP,
            "jobs": {"count": 1, "completed": 0, "validation": 0, "url": f"/api/jobs?task_id={self.task_id}"},
            "labels": {"url": f"/api/labels?task_id={self.task_id}"},
            "organization": None,
            "project_id": self.project_id,
            "owner": None,
            "assignee": None,
            "source_storage": None,
            "target_storage": None,
            "validation_mode": self.validation_mode,
            "url": base,
        }

    def data_meta(self) -> dict[str, Any]:
        return {
            "chunks_updated_date": TIMESTAMP,
            "chunk_size": len(self.images),
            "size": len(self.images),
            "image_quality": 70,
            "start_frame": self.start_frame,
            "stop_frame": self.start_frame + (len(self.images) - 1) * self.step,
            "frame_filter": self.frame_filter,
            "deleted_frames": self.deleted_frames,
            "frames": [
                {"name": name, "width": width, "height": height, "related_files": 0}
                for (name, _), (width, height) in zip(self.images, self.sizes, strict=True)
            ][: None if self.original_chunk_type == "imageset" else 1],  # a video: one entry
        }

    def chunk(self) -> bytes:
        """The task's one chunk of original images: a zip of the image files in frame order."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for index, (name, data) in enumerate(self.images):
                archive.writestr(f"{index:06d}{name[name.rfind('.') :]}", data)
        return buffer.getvalue()

    def answer(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> tuple[int, Any]:
        """The status and the body (JSON-able, or bytes) of one request."""
        task = f"/api/tasks/{self.task_id}"
        if method == "GET" and path == "/api/server/about":
            return 200, {
                "name": "CVAT",
                "description": "",
                "version": SERVER_VERSION,
                "logo_url": "",
                "subtitle": "",
            }
        if method == "GET" and path == task:
            return 200, self.task()
        if method == "GET" and path == "/api/labels" and query.get("task_id") == [str(self.task_id)]:
            return 200, {"count": len(self.labels), "next": None, "previous": None, "results": self.labels}
        if method == "GET" and path == f"{task}/data/meta":
            return 200, self.data_meta()
        if (
            method == "GET"
            and path == f"{task}/data"
            and query.get("type") == ["chunk"]
            and self.original_chunk_type == "imageset"
        ):
            return 200, self.chunk()
        if method == "GET" and path == f"{task}/data" and query.get("type") == ["frame"]:
            number = int(query["number"][0])
            if query.get("quality") != ["original"] or not 0 <= number < len(self.images):
                self.unexpected.append(f"{method} {path} {query}")
                return 400, {"detail": "bad frame request"}
            self.fetched_frames.append(number)
            return 200, self.images[number][1]
        if method == "GET" and path == f"{task}/annotations":
            return 200, {"version": 0, "tags": [], "shapes": [], "tracks": self.tracks}
        if method == "PATCH" and path == f"{task}/annotations" and query.get("action") == ["create"]:
            self.received.append((method, len(body)))
            return self.store(self.uploads, json.loads(body), replace=False)
        if method == "PUT" and path == f"{task}/annotations":
            self.received.append((method, len(body)))
            return self.store(self.replaced, json.loads(body), replace=True)
        if method == "POST" and path == "/api/functions":
            self.functions.append(json.loads(body))
            return 201, {**self.functions[-1], "id": len(self.functions)}
        self.unexpected.append(f"{method} {path}")
        return 404, {"detail": "not found"}

    def store(self, log: list[dict[str, Any]], data: dict[str, Any], *, replace: bool) -> tuple[int, Any]:
        """An upload: recorded in ``log`` and applied to the task's tracks (unless its lost reply says it
        was not); the answer, or the lost reply's status with no body."""
        lost = self.lost_replies.pop(0) if self.lost_replies else None
        if lost is None or lost.applied:
            log.append(data)
            tracks = [self.kept(track) for track in data.get("tracks", [])]
            self.tracks = tracks if replace else [*self.tracks, *tracks]
        if lost is not None:
            return lost.status, None
        return 200, {"version": 0, "tags": [], "shapes": [], "tracks": tracks}

    def kept(self, track: dict[str, Any], *, element: bool = False) -> dict[str, Any]:
        """A track in the fields CVAT returns (``LabeledTrackSerializerFromDB`` in
        cvat/apps/engine/serializers.py): ids given, defaults filled in, its elements likewise; its shapes
        as sent (CVAT's reshaping of what it keeps is not modelled: tests make it by hand)."""
        kept = {
            "id": next(self._ids),
            "label_id": track["label_id"],
            "frame": track["frame"],
            "group": track.get("group"),
            "source": track.get("source", "manual"),
            "shapes": [
                {
                    "id": next(self._ids),
                    "type": shape["type"],
                    "frame": shape["frame"],
                    "occluded": shape["occluded"],
                    "outside": shape.get("outside", False),
                    "z_order": shape.get("z_order", 0),
                    "rotation": shape.get("rotation", 0.0),
                    "points": shape["points"],
                    "attributes": shape.get("attributes", []),
                }
                for shape in track["shapes"]
            ],
            "attributes": track.get("attributes", []),
        }
        if not element:
            kept["elements"] = [self.kept(sub, element=True) for sub in track.get("elements", [])]
        return kept


def cvat_labels(registered: list[dict[str, Any]], task_id: int, first_id: int = 40) -> list[dict[str, Any]]:
    """The labels CVAT creates for a task from a function's ``labels_v2``, with server-side ids."""
    ids = iter(range(first_id, first_id + 10_000))
    labels = []
    for label in registered:
        label_id = next(ids)
        sublabels = [
            {"id": next(ids), "name": s["name"], "type": s["type"], "attributes": [], "color": "#ffffff"}
            for s in label.get("sublabels", [])
        ]
        labels.append(
            {
                "id": label_id,
                "name": label["name"],
                "type": label["type"],
                "color": "#ff0000",
                "attributes": [],
                "sublabels": sublabels,
                "svg": "",
                "has_parent": False,
                "task_id": task_id,
            }
        )
    return labels


def route(
    tasks: tuple[ImageTask, ...], method: str, path: str, query: dict[str, list[str]], body: bytes
) -> tuple[int, Any]:
    """The answer of the task a request is about (the first task's for the server's own endpoints); the
    task list of a project (``GET /api/tasks?project_id=N``) from all of them."""
    if method == "GET" and path == "/api/tasks" and "project_id" in query:
        found = [task.task() for task in tasks if [str(task.project_id)] == query["project_id"]]
        return 200, {"count": len(found), "next": None, "previous": None, "results": found}
    for task in tasks:
        base = f"/api/tasks/{task.task_id}"
        if path == base or path.startswith(base + "/") or query.get("task_id") == [str(task.task_id)]:
            return task.answer(method, path, query, body)
    return tasks[0].answer(method, path, query, body)


@contextmanager
def serve(*tasks: ImageTask) -> Iterator[str]:
    """Serve ``tasks`` on a free local port; yields the server URL."""

    class Handler(BaseHTTPRequestHandler):
        def _respond(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, payload = route(tasks, self.command, url.path.rstrip("/"), parse_qs(url.query), body)
            if payload is None:  # a lost reply (:class:`LostReply`)
                self.close_connection = True
                if status != DROPPED:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                return
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            kind = "application/zip" if isinstance(payload, bytes) else "application/json"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._respond()

        def do_POST(self) -> None:
            self._respond()

        def do_PATCH(self) -> None:
            self._respond()

        def do_PUT(self) -> None:
            self._respond()

        def log_message(self, format: str, *args: Any) -> None:  # the test reads ``unexpected`` instead
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
