"""The HTTP trigger's settings that the function files declare (tools/function_yaml.py) and the local
server takes as its defaults (:mod:`tools.server.http`), written once. Nothing here imports PyTorch, so
the server process stays without it."""

# base64 frames exceed Nuclio's 4 MiB default
MAX_REQUEST_BODY_SIZE = 32 * 1024 * 1024
# Nuclio's default: how long a request waits for a free worker before it is answered 503
WORKER_AVAILABILITY_TIMEOUT_SECONDS = 10
# One large frame with room to spare (a CPU frame takes seconds, a GPU frame well under one), below CVAT's
# own 120 s request timeout, so a stuck request is answered 408 by Nuclio and its worker restarted.
EVENT_TIMEOUT_SECONDS = {"cpu": 60, "cuda": 30}
