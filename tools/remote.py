"""Poses from a running function (``--function-url``): each frame posted as CVAT posts it.

The body is CVAT's, ``{"image": <base64 of an image file>}`` with ``Content-Type: application/json``,
plus ``"format": "coco"`` so that the answer carries everything the tracker reads (boxes, keypoint
scores; :func:`alphapose.cvat.formats.coco_poses` reads it back) and no ``threshold``, the lowest the
function accepts: the caller filters after tracking. A frame goes as a lossless PNG of the pixels the
CVAT SDK gave, so the function sees what a local run would. ``concurrency`` requests are in flight at
once (a Nuclio function with several workers or replicas, or batching, answers them side by side) and
the answers come back in frame order. Nuclio's refusals that say "try again" (503: no worker free within
the availability timeout; 408: the event timeout, after which it restarts the worker) and connection
failures, an answer cut short included (a worker restarted while it answered), are retried with a
growing pause, a bounded number of times; any other answer stops the task.
"""

from __future__ import annotations

import base64
import io
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import requests
from PIL import Image

from alphapose.cvat.formats import coco_poses
from alphapose.images.decode import to_rgb
from alphapose.pose.skeletons import Skeleton
from alphapose.structures import Pose

CVAT_REQUEST_TIMEOUT = 120.0  # seconds; CVAT's default CVAT_NUCLIO_DEFAULT_TIMEOUT
RETRY_STATUSES = (408, 503)  # Nuclio's event timeout and worker-availability timeout
# No answer, or one cut short: the connection failed, or the worker died while it answered.
RETRY_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
PNG_COMPRESSION = 1  # zlib level: the file travels once, a stronger level costs more than it saves
SHOWN_ANSWER = 200  # characters of an unexpected answer quoted in an error


class FunctionError(Exception):
    """The function did not answer a frame usefully; the message says which frame and what came back."""


class WrongFunctionError(FunctionError):
    """The function answers, but not with results of the skeleton given here (another preset, or no pose
    function at that address): every frame, and a retry or a resumed run, would get the same."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often a frame is tried and how long to wait between tries: ``first_pause`` seconds, doubling
    up to ``longest_pause``."""

    attempts: int = 6
    first_pause: float = 0.5
    longest_pause: float = 8.0

    def pauses(self) -> Iterator[float]:
        """The pause before each retry (``attempts - 1`` of them)."""
        pause = self.first_pause
        for _ in range(self.attempts - 1):
            yield pause
            pause = min(pause * 2, self.longest_pause)


DEFAULT_RETRY = RetryPolicy()


class RemoteFunction:
    """The poses of frames as a function at ``url`` computes them; nothing of the model is loaded here.

    ``skeleton`` is the one the function's preset gives (an answer with another number of keypoints is
    refused, naming both).
    """

    def __init__(
        self,
        url: str,
        skeleton: Skeleton,
        *,
        concurrency: int = 1,
        timeout: float = CVAT_REQUEST_TIMEOUT,
        retry: RetryPolicy | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.url, self.skeleton = url, skeleton
        self.concurrency, self.timeout = concurrency, timeout
        self.retry = DEFAULT_RETRY if retry is None else retry
        self.retries = 0  # requests tried again, over the object's life
        self._sessions = threading.local()
        self._lock = threading.Lock()

    def poses(self, frames: Iterable[tuple[int, Any]]) -> Iterator[list[Pose]]:
        """The poses of each ``(frame index, PIL image)``, in order, with up to ``concurrency`` frames
        in flight; frames are read from ``frames`` only as room opens. Leaving the iteration early
        (Ctrl-C, a failure) cancels the frames not yet sent and ends the retries of those in flight,
        whose answers nobody reads."""
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="function")
        pending: deque[Future[list[Pose]]] = deque()
        stop = threading.Event()
        try:
            for frame, image in frames:
                pending.append(pool.submit(self._frame, frame, image, stop))
                if len(pending) >= self.concurrency:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)

    def _frame(self, frame: int, image: Any, stop: threading.Event) -> list[Pose]:
        payload = {"image": _png_base64(image), "format": "coco", "image_id": frame}
        problem = ""
        for pause in [*self.retry.pauses(), None]:
            try:
                reply = self._session().post(self.url, json=payload, timeout=self.timeout)
            except RETRY_ERRORS as exc:
                problem = f"no answer ({type(exc).__name__})"
            else:
                if reply.status_code == 200:
                    return self._read(frame, reply)
                if reply.status_code not in RETRY_STATUSES:
                    raise FunctionError(f"frame {frame}: {self.url} answered {described(reply)}")
                problem = described(reply)
            if pause is None:
                break
            with self._lock:
                self.retries += 1
            if stop.wait(pause):
                raise FunctionError(f"frame {frame}: abandoned, the frames are no longer wanted")
        raise FunctionError(
            f"frame {frame}: {self.url} failed {self.retry.attempts} times, last with {problem}; "
            "is the function deployed and running?"
        )

    def _read(self, frame: int, reply: requests.Response) -> list[Pose]:
        try:
            return coco_poses(reply.json(), self.skeleton.num_keypoints)
        except ValueError as exc:  # a JSON error is a ValueError too
            raise WrongFunctionError(
                f"frame {frame}: the answer of {self.url} is not AlphaPose results of skeleton "
                f"{self.skeleton.name} ({exc}); is the function's preset the one given here (--preset)?"
            ) from None

    def _session(self) -> requests.Session:
        """One session (one kept-alive connection) per sending thread."""
        session = getattr(self._sessions, "session", None)
        if session is None:
            session = self._sessions.session = requests.Session()
        return session


def _png_base64(image: Any) -> str:
    """The frame as the pipeline would take it locally (:func:`to_rgb`), as a PNG file in base64."""
    buffer = io.BytesIO()
    Image.fromarray(to_rgb(image)).save(buffer, format="PNG", compress_level=PNG_COMPRESSION)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def described(reply: requests.Response) -> str:
    """``HTTP 400 invalid_image: <detail>`` from the function's JSON error, else the text on one line (the
    runtime's 500 carries a traceback), cut short."""
    try:
        body = reply.json()
        text = f"{body['error']}: {body['detail']}"
    except (ValueError, KeyError, TypeError):
        text = " ".join(reply.text.split())
    if len(text) > SHOWN_ANSWER:
        text = text[:SHOWN_ANSWER] + "..."
    return f"HTTP {reply.status_code}" + (f" {text}" if text else "")
