"""Nuclio entry points of the AlphaPose function (``spec.handler: main:handler``).

``init_context`` loads the model once per worker process; ``handler`` answers one request. Every
answer is a JSON ``context.Response``: 200 with the results, 4xx with ``{"error", "detail"}`` for a
bad request, 503 when the GPU ran out of memory, 500 for anything unexpected. Tracebacks go to the
function log (with the request id), never to the caller, and the worker keeps serving.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch

from alphapose.cvat.errors import RequestError
from alphapose.cvat.predictor import start_process
from alphapose.cvat.request import PoseRequest
from alphapose.cvat.settings import Config
from model_handler import ModelHandler


def init_context(context: Any) -> None:
    """Build the model from the ``ALPHAPOSE_*`` environment and keep it in ``context.user_data.model``.

    The two process-wide settings are made here, once per worker: CPU threads capped at the CPUs the
    container may use, and Pillow's pixel cap raised to ``ALPHAPOSE_MAX_PIXELS``.
    """
    start = time.perf_counter()
    try:
        config = Config.from_env()
        start_process(config)
        model = ModelHandler(config)
    except Exception as exc:
        context.logger.error_with("AlphaPose function failed to start", error=str(exc))
        raise
    context.user_data.model = model
    info = model.info()
    context.logger.info_with(
        "AlphaPose model loaded",
        preset=info["preset"],
        detector=info["detector"],
        weights=info["weights"],
        detector_size=info["detector_size"],
        flip=info["flip"],
        device=info["device"],
        precision=info["precision"],
        engine=info["engine"],
        seconds=round(time.perf_counter() - start, 3),
    )
    synthetic = [path for path, state in info["weights"].items() if state == "synthetic"]
    if synthetic:
        context.logger.warn_with(
            "Serving synthetic random weights: the answers mean nothing", files=synthetic
        )


def handler(context: Any, event: Any) -> Any:
    """The persons in ``event.body["image"]`` as CVAT skeletons (AlphaPose results for ``format: coco``).

    With Nuclio's batch mode on (``spec.triggers.*.batch``, the GPU files) ``event`` is a list of events
    and the answer a list of responses, one per event, each carrying its event's id, by which the
    processor routes it back: a refused request gets its own 4xx, the valid ones share the detector's
    forward (:meth:`ModelHandler.infer_batch`), and a failure of that forward answers each of them. The
    handler never raises for a batch: Nuclio would answer none of its requests.
    """
    model: ModelHandler = context.user_data.model
    if isinstance(event, list):
        return _answer(context, event, model.infer_batch, batch=True)
    (response,) = _answer(context, [event], lambda requests: [model.infer(requests[0])], batch=False)
    return response


def _answer(
    context: Any, events: list[Any], infer: Callable[[list[PoseRequest]], list[Any]], *, batch: bool
) -> list[Any]:
    """One JSON response per event: 200 with the results, the request's 4xx, 503 when the device ran out
    of memory, 500 for anything unexpected (the traceback goes to the log with the request ids)."""
    model: ModelHandler = context.user_data.model
    start = time.perf_counter()
    ids = [event.id for event in events]
    answers: dict[int, Any] = {}
    valid: list[tuple[int, PoseRequest]] = []
    for index, event in enumerate(events):
        try:
            request = model.parse(event.body, decoded=_decoded_by_nuclio(event))
        except RequestError as exc:
            context.logger.warn_with(
                "Request refused", request_id=event.id, error=exc.error, detail=exc.detail
            )
            answers[index] = _json_response(context, exc.status, exc.payload(), event.id if batch else None)
        else:
            valid.append((index, request))
    failed = ""  # the unexpected exception's type, when the forward failed
    out_of_memory = False
    try:
        results = infer([request for _, request in valid]) if valid else []
        bodies = [json.dumps(result, allow_nan=False) for result in results]
    except torch.OutOfMemoryError as exc:
        context.logger.error_with(
            "Out of memory", request_id=", ".join(ids[i] for i, _ in valid), exc=str(exc)
        )
        out_of_memory = True
    except Exception as exc:
        context.logger.error_with(
            "Unexpected error",
            request_id=", ".join(ids[i] for i, _ in valid),
            exc=repr(exc),
            traceback=traceback.format_exc(),
        )
        failed = type(exc).__name__
    if out_of_memory:
        # Only now, with the exception and the frames it held gone, can the cache release their tensors.
        torch.cuda.empty_cache()
    for position, (index, _) in enumerate(valid):
        event_id = ids[index] if batch else None
        if out_of_memory:
            detail = "the device ran out of memory; retry, or send a smaller image"
            answers[index] = _json_response(
                context, 503, {"error": "out_of_memory", "detail": detail}, event_id
            )
            continue
        if failed:
            detail = f"{failed} while handling request {ids[index]}; see the function log"
            answers[index] = _json_response(
                context, 500, {"error": "internal_error", "detail": detail}, event_id
            )
            continue
        context.logger.debug_with(
            "Request answered",
            request_id=ids[index],
            persons=len(results[position]),
            seconds=round(time.perf_counter() - start, 3),
        )
        answers[index] = context.Response(
            body=bodies[position],
            headers={},
            content_type="application/json",
            status_code=200,
            event_id=event_id,
        )
    return [answers[index] for index in range(len(events))]


def _decoded_by_nuclio(event: Any) -> bool:
    """Whether the runtime already parsed the body as JSON: for exactly ``application/json``, when it
    could (otherwise the body stays bytes)."""
    return event.content_type == "application/json" and not isinstance(event.body, bytes | bytearray)


def _json_response(context: Any, status: int, payload: dict[str, str], event_id: str | None) -> Any:
    return context.Response(
        body=json.dumps(payload),
        headers={},
        content_type="application/json",
        status_code=status,
        event_id=event_id,
    )
