"""Worker processes that never outlive the run that started them.

joblib's loky workers are started by the main process and are meant to be reused; when the
main process is killed outright (SIGKILL, an out-of-memory kill, a cancelled job) nobody
tells them, and they stay alive holding memory and cores.  :func:`die_with_parent` asks the
Linux kernel to send a worker SIGTERM the moment its parent dies (``PR_SET_PDEATHSIG``); on
other systems it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import signal

_PR_SET_PDEATHSIG = 1
_armed = False


def die_with_parent(parent_pid: int) -> None:
    """In a worker of ``parent_pid`` (not in the parent itself): end with the parent."""
    global _armed
    if _armed or os.getpid() == parent_pid:
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: nothing to arm
        return
    _armed = True
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os.kill(os.getpid(), signal.SIGTERM)
