"""Drive main.py in-process exactly as the Nuclio Python runtime does.

Each request is msgpack-encoded as the Go processor encodes it, decoded by
``nuclio_sdk.Event.deserialize`` (so ``event.body`` is a dict only for exactly
``application/json``), handled with a real ``nuclio_sdk.Context`` whose real logger writes JSON
records into a buffer the test can read, and the output goes through
``nuclio_sdk.Response.from_entrypoint_output`` and the processor's response decoding (only string header
values reach the client). Any exception escaping the handler, ``SystemExit`` included (the wrapper
catches ``BaseException``), becomes the runtime's 500 ``text/plain`` answer.

Where it differs from a deployed function: the processor forwards every request header under fasthttp's
canonical names (Host, User-Agent, Accept, ...), the harness only Content-Type, Content-Length and the
test's own (main.py reads none of the others); there is no socket framing, no batch timer, no
``X-Nuclio-Logs`` header and no event timeout (tools.server.pool implements the timeout). The encoding
code is the local server's (:mod:`tools.server.events`), so both are tested by the same requests.
:meth:`NuclioFunction.post_batch` sends a batch as a trigger with ``batch`` enabled does: one msgpack
array of event maps, a list of responses back, each routed by its ``event_id``.

:class:`tools.server.process.ServerProcess` runs that local server for real, and :func:`cvat_violations`
checks an answer the way CVAT would.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nuclio_sdk.logger

from tools.server.events import (
    HandlerResult,
    create_context,
    decode_batch_result,
    decode_result,
    encode_batch,
    encode_event,
    event_map,
    init_function,
    load_entrypoint,
    run_handler,
)

ENV_PREFIX = "ALPHAPOSE_"


class NuclioFunction:
    """One function worker: ``init_context`` with the given ``ALPHAPOSE_*`` environment, then requests."""

    def __init__(self, env: Mapping[str, str], handler: str = "main:handler") -> None:
        self._log = io.StringIO()
        module, self._entrypoint = load_entrypoint(handler)
        self.context = create_context(self._log, formatter=nuclio_sdk.logger.JSONFormatter())
        with function_environment(env):
            init_function(module, self.context)

    @property
    def model(self) -> Any:
        return self.context.user_data.model

    def invoke(
        self,
        body: bytes | str,
        *,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
        method: str = "POST",
        path: str = "/",
    ) -> HandlerResult:
        """Send raw body bytes with a given Content-Type, as an HTTP client would."""
        raw = body.encode("utf-8") if isinstance(body, str) else body
        headers = {"Content-Type": content_type, "Content-Length": str(len(raw)), **(headers or {})}
        message = encode_event(raw, content_type=content_type, headers=headers, method=method, path=path)
        return decode_result(run_handler(self._entrypoint, self.context, message))

    def post_batch(self, bodies: list[bytes | str]) -> list[HandlerResult | None]:
        """The bodies as one batch of a trigger with ``batch`` enabled (JSON POSTs, as CVAT sends): each
        body's answer, found by its event's id as the processor routes it; None where none came back."""
        events = []
        for index, body in enumerate(bodies):
            raw = body.encode("utf-8") if isinstance(body, str) else body
            headers = {"Content-Type": "application/json", "Content-Length": str(len(raw))}
            events.append(
                event_map(raw, content_type="application/json", headers=headers, event_id=f"event-{index}")
            )
        answers = decode_batch_result(run_handler(self._entrypoint, self.context, encode_batch(events)))
        return [answers.get(f"event-{index}") for index in range(len(bodies))]

    def post_json(self, payload: Any) -> HandlerResult:
        """What CVAT does: ``requests.post(url, json=payload)``."""
        return self.invoke(json.dumps(payload))

    def log_records(self) -> list[dict[str, Any]]:
        """Every record logged through ``context.logger`` so far, as nuclio_sdk's JSON formatter wrote it."""
        return [json.loads(line) for line in self._log.getvalue().splitlines() if line.strip()]


@contextmanager
def function_environment(env: Mapping[str, str]) -> Iterator[None]:
    """Exactly ``env`` as the ``ALPHAPOSE_*`` variables while the block runs (others hidden), then restore."""
    saved = {key: value for key, value in os.environ.items() if key.startswith(ENV_PREFIX)}
    for key in saved:
        del os.environ[key]
    os.environ.update(env)
    try:
        yield
    finally:
        for key in [key for key in os.environ if key.startswith(ENV_PREFIX)]:
            del os.environ[key]
        os.environ.update(saved)


def cvat_violations(answer: Any, spec: list[dict[str, Any]]) -> list[str]:
    """Everything CVAT's server or SDK would reject or silently drop in a detector's answer.

    ``spec`` is the function's label spec (``metadata.annotations.spec``). The rules are the union of
    CVAT's lambda manager and serializers and the SDK's auto-annotation driver: a list of skeletons of
    declared labels; elements exactly the declared sublabels in order, each ``points`` with two finite
    int/float numbers and a boolean ``outside``; not every element outside; declared attributes only.
    """
    if not isinstance(answer, list):
        return [f"the answer is {type(answer).__name__}, not a list"]
    labels = {label["name"]: label for label in spec}
    problems = []
    for i, item in enumerate(answer):
        where = f"item {i}"
        if not isinstance(item, dict) or item.get("label") not in labels:
            problems.append(
                f"{where}: label {item.get('label') if isinstance(item, dict) else item!r} not in spec"
            )
            continue
        label = labels[item["label"]]
        if item.get("type") != label["type"] or label["type"] != "skeleton":
            problems.append(f"{where}: type {item.get('type')!r}, spec says {label['type']!r}")
        confidence = item.get("confidence", 0.0)
        if isinstance(confidence, bool) or not isinstance(confidence, int | float | str):
            problems.append(f"{where}: confidence {confidence!r}")
        declared = {attribute["name"] for attribute in label.get("attributes", [])}
        for attribute in item.get("attributes", []):
            if (
                not isinstance(attribute, dict)
                or attribute.get("name") not in declared
                or "value" not in attribute
            ):
                problems.append(f"{where}: undeclared attribute {attribute!r}")
        elements = item.get("elements")
        if not isinstance(elements, list):
            problems.append(f"{where}: elements {elements!r}")
            continue
        names = [sublabel["name"] for sublabel in label["sublabels"]]
        if [e.get("label") if isinstance(e, dict) else None for e in elements] != names:
            problems.append(f"{where}: element labels are not exactly {names}")
            continue
        for element in elements:
            name = element["label"]
            if element.get("type") != "points":
                problems.append(f"{where}/{name}: type {element.get('type')!r}")
            points = element.get("points")
            if not (
                isinstance(points, list)
                and len(points) == 2
                and all(type(v) in (int, float) and math.isfinite(v) for v in points)
            ):
                problems.append(f"{where}/{name}: points {points!r}")
            if not isinstance(element.get("outside"), bool):
                problems.append(f"{where}/{name}: outside {element.get('outside')!r}")
        if all(element.get("outside") for element in elements):
            problems.append(f"{where}: every element is outside")
    return problems


def server_env(weights: Path) -> dict[str, str]:
    """A small, fast server on synthetic weights: the CPU, the detector at 160."""
    return {
        "ALPHAPOSE_WEIGHTS_DIR": str(weights),
        "ALPHAPOSE_DETECTOR_SIZE": "160",
        "ALPHAPOSE_DEVICE": "cpu",
    }
