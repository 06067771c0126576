"""Nuclio's event and response encoding, as its Go processor and Python wrapper do it.

A request becomes the msgpack event map the processor sends, ``nuclio_sdk.Event.deserialize`` turns it
into the handler's event (a dict body only for exactly ``application/json``), the handler's output is
encoded by ``nuclio_sdk.Response.from_entrypoint_output`` and decoded as the processor does, and an
exception escaping the handler becomes the wrapper's 500 ``text/plain`` answer. The local server's
workers and the tests' in-process harness both run requests through this module.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.machinery import PathFinder
from pathlib import Path
from types import ModuleType
from typing import IO, Any

import msgpack
import nuclio_sdk
import nuclio_sdk.json_encoder
import nuclio_sdk.logger

DEFAULT_HANDLER = "main:handler"
DEFAULT_TRIGGER = nuclio_sdk.TriggerInfo(kind="http", name="default-http")
# main.py and model_handler.py sit at the repository root, as in the function image's /opt/nuclio.
FUNCTION_ROOT = Path(__file__).resolve().parents[2]

_HANDLER_SPEC = re.compile(r"^([\w|-]+(\.[\w|-]+)*):(\w+)$")  # the runtime's module.sub:function syntax


@dataclass(frozen=True)
class HandlerResult:
    """What the processor turns a runtime response into: the HTTP answer."""

    status: int
    content_type: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def encode_event(body: bytes, **request: Any) -> bytes:
    """The msgpack event map the Go processor writes to the runtime for one HTTP request
    (:func:`event_map`'s keywords describe it).

    The body travels as msgpack bin (not base64) and the content type verbatim from the header,
    under both keys the processor uses.
    """
    return msgpack.packb(event_map(body, **request), use_bin_type=True)


def encode_batch(events: list[dict[str, Any]]) -> bytes:
    """What the processor writes for a batch of :func:`event_map` events (a trigger with ``batch``
    enabled): one msgpack array of the maps, which the SDK deserializes into a list of events."""
    return msgpack.packb(events, use_bin_type=True)


def event_map(
    body: bytes,
    *,
    content_type: str = "",
    headers: Mapping[str, str] | None = None,
    method: str = "POST",
    path: str = "/",
    fields: Mapping[str, str] | None = None,
    event_id: str | None = None,
    trigger: nuclio_sdk.TriggerInfo = DEFAULT_TRIGGER,
) -> dict[str, Any]:
    """The event map of one HTTP request (nuclio pkg/processor/runtime/rpc/encoder/encode.go)."""
    return {
        "body": bytes(body),
        "content_type": content_type,
        "content-type": content_type,
        "trigger": {"kind": trigger.kind, "name": trigger.name},
        "fields": dict(fields or {}),
        "headers": dict(headers or {}),
        "id": event_id or str(uuid.uuid4()),
        "method": method,
        "path": path,
        "size": len(body),
        "timestamp": int(time.time()),
        "url": "",
        "shard_id": 0,
        "num_shards": 0,
        "type": "",
        "type_version": "",
        "version": "",
        "offset": 0,
        "topic": "",
    }


def decode_event(message: bytes) -> nuclio_sdk.Event:
    """The runtime's side: unpack with decoded strings and let the SDK build the event."""
    return nuclio_sdk.Event.deserialize(
        msgpack.unpackb(message, raw=False), kind=nuclio_sdk.EventDeserializerKinds.msgpack
    )


def run_handler(entrypoint: Callable[[Any, Any], Any], context: nuclio_sdk.Context, message: bytes) -> str:
    """One event through the runtime: the JSON response line the wrapper sends to the processor."""
    encoder = nuclio_sdk.json_encoder.Encoder()
    try:
        output = entrypoint(context, decode_event(message))
        if isinstance(output, list):  # the wrapper's batch answer: one response per item
            return encoder.encode(
                [nuclio_sdk.Response.from_entrypoint_output(encoder.encode, item) for item in output]
            )
        return encoder.encode(nuclio_sdk.Response.from_entrypoint_output(encoder.encode, output))
    except (
        BaseException
    ) as exc:  # as the wrapper's serve_requests loop: SystemExit and the like answer 500 too
        formatted = traceback.format_exc()
        context.logger.error_with("Exception caught in handler", exc=str(exc), traceback=formatted)
        return encoder.encode(
            {
                "body": f'Exception caught in handler - "{exc}": {formatted}',
                "body_encoding": "text",
                "content_type": "text/plain",
                "status_code": 500,
            }
        )


def decode_result(line: str) -> HandlerResult:
    """The processor's side: body decoding and the header values that reach the HTTP client.

    The processor decodes the response line into a Go ``map[string]interface{}`` (nuclio
    pkg/processor/runtime/rpc/result/result.go), where every JSON number becomes a float64, and the HTTP
    trigger copies only ``string`` and ``int`` header values (pkg/processor/trigger/http/trigger.go). So
    only string values arrive: a header the handler sets to a number, a boolean or null is dropped.
    """
    return _decoded(json.loads(line))


def _decoded(result: dict[str, Any]) -> HandlerResult:
    """One response map, decoded as :func:`decode_result` says."""
    encoding = result.get("body_encoding", "text")
    if encoding == "base64":
        body = base64.b64decode(result["body"])
    elif encoding == "text":
        body = str(result["body"]).encode("utf-8")
    else:
        raise ValueError(f"unknown body_encoding {encoding!r} in the runtime response")
    headers = {
        str(key): str(value) for key, value in (result.get("headers") or {}).items() if isinstance(value, str)
    }
    return HandlerResult(int(result["status_code"]), result.get("content_type") or "", headers, body)


def decode_batch_result(line: str) -> dict[str, HandlerResult]:
    """The processor's side of a batch: each response by the id of its event (``event_id``). A response
    without one reaches no client (nuclio pkg/processor/runtime/rpc/abstract.go, ProcessBatch), nor does
    anything of an answer that is not a list, such as the wrapper's 500 for an exception."""
    results = json.loads(line)
    if not isinstance(results, list):
        return {}
    return {str(result["event_id"]): _decoded(result) for result in results if result.get("event_id")}


def handler_problem(spec: str) -> str | None:
    """Why :func:`load_entrypoint` could not load ``spec``, as far as is known without importing it (the
    server process stays without PyTorch): its syntax, or a top module found nowhere; None otherwise."""
    match = _HANDLER_SPEC.match(spec)
    if not match:
        return f"expected module:function, e.g. {DEFAULT_HANDLER}"
    top = match.group(1).split(".")[0]
    if top not in sys.modules and PathFinder.find_spec(top, [str(FUNCTION_ROOT), *sys.path]) is None:
        return f"no module {top!r} in {FUNCTION_ROOT} or on the Python path"
    return None


def load_entrypoint(spec: str) -> tuple[ModuleType, Callable[[Any, Any], Any]]:
    """The module and function named by a ``module.sub:function`` handler spec, as the runtime loads it."""
    match = _HANDLER_SPEC.match(spec)
    if not match:
        raise ValueError(f"malformed handler {spec!r}; expected module:function")
    if str(FUNCTION_ROOT) not in sys.path:
        sys.path.insert(0, str(FUNCTION_ROOT))
    module_name, function_name = match.group(1), match.group(3)
    module = __import__(module_name)
    for part in module_name.split(".")[1:]:
        module = getattr(module, part)
    return module, getattr(module, function_name)


def create_context(
    stream: IO[str],
    *,
    worker_id: int = 0,
    trigger: nuclio_sdk.TriggerInfo = DEFAULT_TRIGGER,
    formatter: logging.Formatter | None = None,
) -> nuclio_sdk.Context:
    """A runtime context whose real nuclio_sdk logger writes to ``stream``.

    The logger name is unique per context: nuclio_sdk loggers are ``logging`` loggers looked up by name.
    """
    logger = nuclio_sdk.Logger(logging.DEBUG, name=f"alphapose.function.{uuid.uuid4().hex[:8]}")
    logger.set_handler("default", stream, formatter or nuclio_sdk.logger.HumanReadableFormatter())
    return nuclio_sdk.Context(logger, nuclio_sdk.Platform("local"), worker_id, trigger)


def init_function(module: ModuleType, context: nuclio_sdk.Context) -> None:
    """Call the module's ``init_context`` if it has one, as the runtime does before serving."""
    init_context = getattr(module, "init_context", None)
    if init_context is not None:
        init_context(context)
