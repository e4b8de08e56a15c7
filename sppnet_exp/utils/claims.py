"""Claims: several processes (array jobs, DDP ranks of different jobs) filling one cache never compute the same
entry twice and never read a half-written one.

A claim is a file ``<target>.claim`` created with ``O_CREAT | O_EXCL`` (atomic on local and NFSv3+ file systems)
holding the owner's host, pid and start time; the owner writes ``<target>`` atomically (temp file +
``os.replace``) and then removes the claim. Another process that finds a claim skips the entry and, once it has
done everything else, waits for the target to appear (:func:`wait_for`). A claim is *stale* — its owner died
without finishing — when its owner's pid is gone on this host, or when the claim file has not been touched for
``stale_s`` seconds (owners on other hosts refresh it with :meth:`Claim.touch` while they work); a stale claim is
broken and the entry is computed by whoever finds it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = ["Claim", "claim_path", "try_claim", "wait_for"]

STALE_S = 900.0


def claim_path(target: str | os.PathLike[str]) -> Path:
    """The claim file of ``target``."""
    t = Path(target)
    return t.with_name(t.name + ".claim")


class Claim:
    """An owned claim on ``target``; :meth:`release` (or the context manager's exit) removes it."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.path = claim_path(target)

    def touch(self) -> None:
        """Refresh the claim (for owners whose work on one entry outlasts ``stale_s``)."""
        with contextlib.suppress(FileNotFoundError):
            os.utime(self.path)

    def release(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(path: Path, stale_s: float = STALE_S) -> bool:
    """Whether the claim file ``path`` belongs to a dead owner (see the module docstring)."""
    try:
        age = time.time() - path.stat().st_mtime
        info = json.loads(path.read_text() or "{}")
    except FileNotFoundError:
        return False
    except (OSError, ValueError):  # unreadable or being written: judge by age alone
        return age > stale_s
    if info.get("host") == socket.gethostname() and isinstance(info.get("pid"), int):
        return info["pid"] != os.getpid() and not _pid_alive(info["pid"])
    return age > stale_s


def try_claim(target: str | os.PathLike[str], stale_s: float = STALE_S) -> Claim | None:
    """Claim ``target`` for this process, or None when a live process holds it. A stale claim is broken."""
    target = Path(target)
    path = claim_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if is_stale(path, stale_s):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                continue
            return None
        with os.fdopen(fd, "w") as f:
            json.dump({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}, f)
        return Claim(target)
    return None


def wait_for(
    targets: Iterable[Path],
    done: Callable[[Path], bool] | None = None,
    stale_s: float = STALE_S,
    poll_s: float = 1.0,
    timeout_s: float | None = None,
) -> list[Path]:
    """Wait until every target is ``done`` (default: the file exists) or its claim is gone or stale.

    Returns the targets still not done: their owner died (or released the claim without writing), so the caller
    computes them itself. ``timeout_s`` bounds the wait (a ``TimeoutError`` names what is still claimed).
    """
    done = done or (lambda p: p.is_file())
    pending = [Path(t) for t in targets if not done(Path(t))]
    start = time.monotonic()
    orphaned: list[Path] = []
    while pending:
        still = []
        for t in pending:
            if done(t):
                continue
            c = claim_path(t)
            if not c.exists() or is_stale(c, stale_s):
                if not done(t):
                    orphaned.append(t)
                continue
            still.append(t)
        pending = still
        if not pending:
            break
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise TimeoutError(f"{len(pending)} entries are still claimed by other processes, e.g. {pending[0]}")
        time.sleep(poll_s)
    return orphaned
