"""The CVAT contract's exceptions: a bad configuration stops the function, a bad request gets a 4xx."""

from __future__ import annotations

from alphapose.errors import AlphaPoseError


class ConfigError(AlphaPoseError, ValueError):
    """A setting holds a value the function cannot run with; the message names it as the user spelled it
    (an ``ALPHAPOSE_*`` variable, a command-line flag, an SDK parameter, evaluate's ``--compare SETTING``)."""


class RequestError(Exception):
    """A request the function refuses: ``status`` is the HTTP status, ``error`` a short stable code."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail

    def payload(self) -> dict[str, str]:
        """The JSON body of the error answer."""
        return {"error": self.error, "detail": self.detail}
