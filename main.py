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
from typing import Any

import torch

from alphapose.cvat.config import Config
from alphapose.cvat.errors import RequestError
from alphapose.cvat.request import allow_large_images, parse_request
from alphapose.runtime import configure_cpu_threads
from model_handler import ModelHandler


def init_context(context: Any) -> None:
    """Build the model from the ``ALPHAPOSE_*`` environment and keep it in ``context.user_data.model``.

    The two process-wide settings are made here, once per worker: CPU threads capped at the CPUs the
    container may use, and Pillow's pixel cap raised to ``ALPHAPOSE_MAX_PIXELS``.
    """
    start = time.perf_counter()
    try:
        config = Config.from_env()
        configure_cpu_threads()
        allow_large_images(config.max_pixels)
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
    """The persons in ``event.body["image"]`` as CVAT skeletons (AlphaPose results for ``format: coco``)."""
    model: ModelHandler = context.user_data.model
    start = time.perf_counter()
    out_of_memory = False
    try:
        request = parse_request(
            event.body,
            max_pixels=model.config.max_pixels,
            keypoint_threshold=model.config.keypoint_threshold,
            decoded=_decoded_by_nuclio(event),
        )
        results = model.infer(request)
        body = json.dumps(results, allow_nan=False)
    except RequestError as exc:
        context.logger.warn_with("Request refused", request_id=event.id, error=exc.error, detail=exc.detail)
        return _json_response(context, exc.status, exc.payload())
    except torch.OutOfMemoryError as exc:
        context.logger.error_with("Out of memory", request_id=event.id, exc=str(exc))
        out_of_memory = True
    except Exception as exc:
        context.logger.error_with(
            "Unexpected error", request_id=event.id, exc=repr(exc), traceback=traceback.format_exc()
        )
        return _json_response(
            context,
            500,
            {
                "error": "internal_error",
                "detail": f"{type(exc).__name__} while handling request {event.id}; see the function log",
            },
        )
    if out_of_memory:
        # Only now, with the exception and the frames it held gone, can the cache release their tensors.
        torch.cuda.empty_cache()
        return _json_response(
            context,
            503,
            {
                "error": "out_of_memory",
                "detail": "the device ran out of memory; retry, or send a smaller image",
            },
        )
    context.logger.debug_with(
        "Request answered",
        request_id=event.id,
        persons=len(results),
        seconds=round(time.perf_counter() - start, 3),
    )
    return context.Response(body=body, headers={}, content_type="application/json", status_code=200)


def _decoded_by_nuclio(event: Any) -> bool:
    """Whether the runtime already parsed the body as JSON: for exactly ``application/json``, when it
    could (otherwise the body stays bytes)."""
    return event.content_type == "application/json" and not isinstance(event.body, bytes | bytearray)


def _json_response(context: Any, status: int, payload: dict[str, str]) -> Any:
    return context.Response(
        body=json.dumps(payload), headers={}, content_type="application/json", status_code=status
    )
