"""Process-wide settings of the torch runtime, made once before torch starts its thread pool."""

from __future__ import annotations

import os

_threads_set = False


def quiet_libraries() -> None:
    """Once per process: torch uses the cores we may use (2 on CI), no weight-loading progress bars.

    OpenMP threads that spin while waiting starve each other as soon as anything else runs on the 2 cores
    (Streamlit, a build, a second test run): one query took 1.9 s instead of 0.14 s at load average 8.
    Passive waiting must be chosen before torch starts its thread pool; an explicit setting wins."""
    global _threads_set
    if _threads_set:
        return
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    _threads_set = True
