"""Process-wide settings a server applies once at start-up; the library never applies them by itself.

Capping thread pools changes every other user of PyTorch and OpenCV in the process, so it is an explicit
step: the Nuclio function's ``init_context`` and the command-line tools call :func:`configure_cpu_threads`,
a library user decides for themselves.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import cv2
import torch


def cpu_budget() -> int:
    """CPUs this process may keep busy: its affinity mask, capped by a cgroup CPU quota.

    A container limit (``docker --cpus``, a Kubernetes or Nuclio ``resources.limits.cpu``) is a quota,
    not an affinity mask: PyTorch and OpenCV do not see it and would start one thread per host core.
    """
    cpus = len(os.sched_getaffinity(0))
    quota = _cgroup_cpu_quota()
    return max(1, min(cpus, math.ceil(quota))) if quota else cpus


def _cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The cgroup v2 ``cpu.max`` (or v1 CFS quota / period) limit in CPUs; None when unlimited."""
    try:
        if (root / "cpu.max").is_file():
            quota, period = (root / "cpu.max").read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        quota_file = root / "cpu" / "cpu.cfs_quota_us"
        if quota_file.is_file():
            quota_us = int(quota_file.read_text())
            period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
            return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None
    return None


def configure_cpu_threads() -> int:
    """Cap PyTorch's and OpenCV's thread pools at :func:`cpu_budget`; returns PyTorch's thread count.

    Only ever lowers a count, and leaves PyTorch alone when ``OMP_NUM_THREADS`` is set: that is the way to
    share the CPUs between several worker processes (each Nuclio worker is a process with its own pools,
    so with W workers on C CPUs set ``OMP_NUM_THREADS`` to C / W).
    """
    budget = cpu_budget()
    if "OMP_NUM_THREADS" not in os.environ and torch.get_num_threads() > budget:
        torch.set_num_threads(budget)
    if cv2.getNumThreads() > budget:
        cv2.setNumThreads(budget)
    return torch.get_num_threads()
