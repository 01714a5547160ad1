"""One process per cell: a lock file that works on shared network file systems (NFS, Lustre, GPFS).

Two processes training one cell interleave its log and, worse, one resumes from
the other's checkpoint under a different config. `CellLock` keeps a second
process out of a cell folder while the first works there.

How, and why that way:

- The lock is the file `<run_dir>/.lock`, JSON with host, pid, slurm_job_id and
  started (unix time), plus a random `token` that names this acquisition.
  `flock`/`fcntl` locks are not reliable across NFS clients, and `O_EXCL` was
  not atomic on older NFS; `link(2)` is. So a claim file with the complete
  record is written first and hard-linked to `.lock`: `.lock` never exists
  half written. When NFS reports the link as failed (a retransmitted request),
  the claim's link count of 2 still tells that it succeeded.
- A lock whose holder is gone is stale and taken over: the same host and a pid
  that no longer runs (or now runs a process started at another time); a
  SLURM job that is our own, restarted (a requeued job takes over its own
  lock); a SLURM job that `squeue` says is no longer pending or running. What
  cannot be decided (another host without SLURM, no `squeue`) counts as live.
- Taking over is race-safe: every taker of the stale lock with token T tries to
  hard-link its claim to `.lock-takeover-T`, which only one can do. The winner
  checks that `.lock` still holds T and renames its claim over it, so `.lock`
  never disappears on the way. A taker killed half way leaves its marker; the
  next taker judges that marker's holder like a lock and, if it is gone, takes
  over the marker the same way.
- Re-acquiring in the process that holds the lock is reentrant (a counter):
  code that runs under the lock may call a helper that takes it again. The lock
  is between processes, not threads.
- Release removes `.lock` only while it still holds our token (read, compare,
  unlink: a holder that is alive is never taken over, so nobody replaces it in
  between).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from runner.folder import JOB_ALIVE, LOCK_CLAIM_PREFIX, LOCK_FILE, LOCK_TAKEOVER_PREFIX, base_state

# Claim files older than this are leftovers of a killed process (a live claim exists for milliseconds).
_LEFTOVER_CLAIM_AGE_S = 60.0
_MAX_ATTEMPTS = 20

_held: dict[Path, dict[str, Any]] = {}  # lock path -> {"pid", "token", "count"} of this process
_held_guard = threading.Lock()


class CellBusy(Exception):
    """Another live process holds the cell's lock; the message is one line that says who and what to do."""

    def __init__(self, run_dir: Path, holder: dict[str, Any]) -> None:
        self.run_dir = Path(run_dir)
        self.holder = holder
        super().__init__(describe_holder(self.run_dir, holder))


def describe_holder(run_dir: Path, holder: dict[str, Any]) -> str:
    """One line naming the holder of `run_dir`'s lock and how to get past it."""
    job = f" (SLURM job {holder['slurm_job_id']})" if holder.get("slurm_job_id") else ""
    try:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(holder.get("started"))))
    except (TypeError, ValueError, OverflowError):
        since = "an unknown time"
    return (
        f"{run_dir} is being trained by pid {holder.get('pid', '?')} on host {holder.get('host', '?')}{job} "
        f"since {since}; wait for it, or delete {Path(run_dir) / LOCK_FILE} if that process is gone"
    )


def slurm_job_id() -> str | None:
    """This process's SLURM job as `squeue -j` takes it; the same before and after a requeue.

    An array task is `<array job id>_<task id>` (the name submitit, sacct and the
    submitit folders use); a plain job is SLURM_JOB_ID. Both survive a requeue.
    """
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_job and task:
        return f"{array_job}_{task}"
    return os.environ.get("SLURM_JOB_ID") or None


def _restart_count() -> int:
    try:
        return int(os.environ.get("SLURM_RESTART_COUNT") or 0)
    except ValueError:
        return 0


def _process_start(pid: int) -> str | None:
    """When `pid` started (clock ticks since boot, from /proc), to tell a reused pid; None off Linux."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            stat = handle.read()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # after the command name, which may hold spaces
    return fields[19] if len(fields) > 19 else None


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            stat = handle.read()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :][:1] == "Z"


def _pid_alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    except OverflowError:
        return False
    if _is_zombie(pid):
        return False
    current = _process_start(pid)
    return started is None or current is None or current == started


def _slurm_job_active(job_id: str) -> bool | None:
    """Whether squeue knows `job_id` as pending/running; None when squeue cannot tell (missing, failing)."""
    try:
        result = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        # A job squeue has forgotten (finished a while ago) is an error on some Slurm versions.
        return False if "invalid job id" in result.stderr.lower() else None
    # A job that still runs or will run (again) is alive; any other state, or none, means it is over.
    states = {base_state(line) for line in result.stdout.splitlines() if line.strip()}
    return bool(states & JOB_ALIVE)


def holder_is_live(holder: dict[str, Any]) -> bool:
    """Whether the process a lock record names may still be working; False only when it is surely gone."""
    pid, host, job = holder.get("pid"), holder.get("host"), holder.get("slurm_job_id")
    if not isinstance(pid, int) or not isinstance(host, str):
        return False  # not a lock record of ours: nobody can be holding it
    mine = _held.get(_lock_path_of(holder))
    if mine is not None and mine["pid"] == os.getpid() and mine["token"] == holder.get("token"):
        return True
    if job and job == slurm_job_id():
        try:
            theirs = int(holder.get("slurm_restart_count") or 0)
        except (TypeError, ValueError):
            theirs = 0
        if theirs < _restart_count():
            return False  # an earlier run of this very job, requeued since
    if host == socket.gethostname():
        if pid == os.getpid():
            return False  # a dead process that had our pid (containers reuse pids): we are not holding it
        return _pid_alive(pid, holder.get("proc_start"))
    if job:
        active = _slurm_job_active(str(job))
        return True if active is None else active
    return True  # another host, no job to ask about: cannot tell, so assume it works


def _lock_path_of(holder: dict[str, Any]) -> Path | None:
    path = holder.get("_path")
    return Path(path) if path else None


def _identity(record: dict[str, Any] | None, raw: bytes) -> str:
    """What names one acquisition: its token, or a digest of the bytes of a file not written by us."""
    token = record.get("token") if isinstance(record, dict) else None
    if isinstance(token, str) and token.isalnum():
        return token
    return "x" + hashlib.sha256(raw).hexdigest()[:24]


def _read(path: Path) -> tuple[dict[str, Any], str]:
    """The lock record at `path` and its identity; FileNotFoundError when it is gone."""
    raw = path.read_bytes()
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        record = None
    if not isinstance(record, dict):
        record = {}
    record["_path"] = str(path.parent / LOCK_FILE)
    return record, _identity(record, raw)


def _public(record: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in record.items() if not key.startswith("_")}


def lock_holder(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The live holder of the cell's lock (host, pid, slurm_job_id, started, ...); None when free or stale."""
    path = Path(run_dir).resolve() / LOCK_FILE
    try:
        record, _ = _read(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return _public(record) if holder_is_live(record) else None


def _linked(source: Path, target: Path) -> bool:
    """Hard-link `source` to `target`; True when this process made `target` (NFS-safe)."""
    try:
        os.link(source, target)
        return True
    except FileExistsError:
        return os.stat(source).st_nlink == 2  # the link went through; NFS reported a retransmission's error


class CellLock:
    """`with CellLock(run_dir):` holds `<run_dir>/.lock`, or raises `CellBusy` naming the live holder.

    `wait_s` > 0 keeps trying that long (every `poll_s`) before raising. The
    lock is reentrant within the process that holds it.
    """

    def __init__(self, run_dir: str | os.PathLike, wait_s: float = 0.0, poll_s: float = 2.0) -> None:
        self.run_dir = Path(run_dir).resolve()
        self.path = self.run_dir / LOCK_FILE
        self.wait_s = float(wait_s)
        self.poll_s = float(poll_s)
        self._acquired = 0

    # -- public ---------------------------------------------------------------------------------------------
    def acquire(self) -> CellLock:
        """Take the lock (or count one more use of it in this process)."""
        with _held_guard:
            mine = _held.get(self.path)
            if mine is not None and mine["pid"] == os.getpid():
                mine["count"] += 1
                self._acquired += 1
                return self
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                token = self._acquire_once()
                break
            except CellBusy:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(max(0.01, min(self.poll_s, deadline - time.monotonic())))
        with _held_guard:
            _held[self.path] = {"pid": os.getpid(), "token": token, "count": 1}
        self._acquired += 1
        self._remove_leftovers(token)
        return self

    def release(self) -> None:
        """Give up one use; the last one removes `.lock` if it is still ours."""
        if self._acquired == 0:
            raise RuntimeError(f"{self.path}: release() without a matching acquire()")
        self._acquired -= 1
        with _held_guard:
            mine = _held.get(self.path)
            if mine is None or mine["pid"] != os.getpid():
                return
            mine["count"] -= 1
            if mine["count"] > 0:
                return
            del _held[self.path]
        try:
            _, identity = _read(self.path)
        except FileNotFoundError:
            return
        if identity == mine["token"]:
            self.path.unlink(missing_ok=True)

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._acquired > 0

    def __enter__(self) -> CellLock:
        return self.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release()

    # -- the protocol ---------------------------------------------------------------------------------------
    def _record(self, token: str) -> dict[str, Any]:
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "slurm_job_id": slurm_job_id(),
            "started": time.time(),
            "token": token,
            "slurm_restart_count": _restart_count(),
            "proc_start": _process_start(os.getpid()),
        }

    def _acquire_once(self) -> str:
        """One acquisition; returns our token or raises CellBusy."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        token = secrets.token_hex(12)
        claim = self.run_dir / f"{LOCK_CLAIM_PREFIX}{token}"
        claim.write_text(json.dumps(self._record(token)) + "\n", encoding="utf-8")
        won: list[Path] = []
        try:
            for _ in range(_MAX_ATTEMPTS):
                if _linked(claim, self.path):
                    return token
                try:
                    holder, identity = _read(self.path)
                except FileNotFoundError:
                    continue  # released meanwhile: try again
                if holder_is_live(holder):
                    raise CellBusy(self.run_dir, _public(holder))
                if self._take_over(claim, identity, identity, won):
                    return token
                for marker in won:
                    marker.unlink(missing_ok=True)
                won.clear()
            raise CellBusy(self.run_dir, self._current_holder())
        finally:
            claim.unlink(missing_ok=True)
            for marker in won:
                marker.unlink(missing_ok=True)

    def _take_over(self, claim: Path, stale: str, guarded: str, won: list[Path]) -> bool:
        """Replace the stale `.lock` (identity `stale`) by our claim if we win the marker guarding `guarded`."""
        marker = self.run_dir / f"{LOCK_TAKEOVER_PREFIX}{guarded}"
        for _ in range(_MAX_ATTEMPTS):
            if _linked(claim, marker):
                won.append(marker)
                try:
                    _, current = _read(self.path)
                except FileNotFoundError:
                    return False
                if current != stale:
                    return False  # someone else took it over first
                os.replace(claim, self.path)
                return True
            try:
                other, other_identity = _read(marker)
            except FileNotFoundError:
                continue
            if holder_is_live(other):
                raise CellBusy(self.run_dir, _public(other))  # it is being taken over by a live process
            # That taker died half way: take over its marker, still guarding the same stale lock.
            if self._take_over(claim, stale, other_identity, won):
                won.append(marker)  # the dead taker's marker is garbage now
                return True
            return False
        return False

    def _current_holder(self) -> dict[str, Any]:
        try:
            return _public(_read(self.path)[0])
        except FileNotFoundError:
            return {}

    def _remove_leftovers(self, token: str) -> None:
        """Markers of finished take-overs and claims of killed processes; only under our lock."""
        for entry in self.run_dir.glob(f"{LOCK_TAKEOVER_PREFIX}*"):
            entry.unlink(missing_ok=True)
        now = time.time()
        for entry in self.run_dir.glob(f"{LOCK_CLAIM_PREFIX}*"):
            try:
                if now - entry.stat().st_mtime > _LEFTOVER_CLAIM_AGE_S:
                    entry.unlink(missing_ok=True)
            except FileNotFoundError:
                pass
