"""A stand-in for the weights downloads (Google Drive through gdown, GitHub through a plain HTTPS GET):
each call writes the file of that name from a directory standing for the official source, so a test can
follow a printed ``python -m alphapose.weights`` command as a user would, without the network."""

from __future__ import annotations

import shutil
from pathlib import Path

import gdown
import pytest

from alphapose.weights import download as weights


def fake_official_downloads(monkeypatch: pytest.MonkeyPatch, official: Path) -> list[str]:
    """Serve the files of ``official`` to every download; returns the names fetched, in order (it grows)."""
    fetched: list[str] = []

    def fetch(url: str, target: Path | str) -> None:
        name = Path(target).name.removesuffix(weights.STAGING_SUFFIX)
        fetched.append(name)
        shutil.copyfile(official / name, target)

    monkeypatch.setattr(weights.socket, "getaddrinfo", lambda host, port: [])
    monkeypatch.setattr(weights, "http_download", fetch)
    monkeypatch.setattr(gdown, "download", lambda **kwargs: fetch(kwargs["url"], kwargs["output"]))
    return fetched
