"""The CPU's name and how busy it was, for the figures every benchmark records; without torch, so that the
benchmarks that do not run a network themselves (bench/tracking.py, bench/load.py, bench/soak.py) read
them as the others do."""

from __future__ import annotations

import os
import platform


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (platform.processor() is often empty on Linux)."""
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages, rounded: how busy the machine was around a figure."""
    return [round(v, 2) for v in os.getloadavg()]
