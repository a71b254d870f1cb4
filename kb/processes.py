"""Worker processes that die with the process that started them.

`kb import` renders on every core and `kb reindex` indexes on every core, in worker processes. Killed with kill -9,
their parent cannot stop them; without this they went on working, orphaned, for half a minute.
"""
from __future__ import annotations

import os


def die_with_parent(parent_pid: int) -> None:
    """In a worker process: be killed when the process that started it dies, even by kill -9 (Linux's
    PR_SET_PDEATHSIG; elsewhere nothing is done). If the parent is already gone, exit now."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # 1: PR_SET_PDEATHSIG
    except Exception:
        pass
    if os.getppid() != parent_pid:
        os._exit(1)
