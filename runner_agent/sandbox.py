"""Confines the tools a job runs (ms-swift, EvalScope, the plot helper) so that they can write only into that job's
own tool directories: the shared cache, which the agent's fetch phase alone writes, is read-only to them, and so is
everything the agent writes itself (--out, its scratch files), so a tool cannot plant a link for it to follow.

The mechanism is Linux Landlock (https://docs.kernel.org/userspace-api/landlock.html): an unprivileged process
restricts itself, every child inherits the restriction, and no process can lift it, root included (Landlock is
checked after the usual permission checks, and CAP_DAC_OVERRIDE does not bypass it). It needs no privilege, so it
works in the runner image as uid 1001 with every capability dropped, and Docker's and containerd's default seccomp
profiles allow its system calls (moby#43199, containerd#6494). Within a ruleset every write-side right is handled
(write, truncate, create, remove, rename/link across directories); reads and execution stay open, so the tools
read the verified snapshots in place.

`python -m runner_agent.sandbox --write DIR [--write DIR ...] -- PROGRAM ARGS...` applies the ruleset and then
executes PROGRAM (a wrapper rather than a `preexec_fn`, which is unsafe in the agent's threaded process). The system
calls go through ctypes: the kernel ABI is three calls and two structs, and the Python bindings on PyPI are
pre-releases.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path

# System call numbers: Landlock came after the syscall tables were unified, so they are the same on x86-64 and
# arm64 (include/uapi/asm-generic/unistd.h and arch/x86/entry/syscalls/syscall_64.tbl).
_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

# Access rights (include/uapi/linux/landlock.h) and the ABI version that introduced each.
_WRITE_FILE = 1 << 1
_REMOVE_DIR = 1 << 4
_REMOVE_FILE = 1 << 5
_MAKE_CHAR = 1 << 6
_MAKE_DIR = 1 << 7
_MAKE_REG = 1 << 8
_MAKE_SOCK = 1 << 9
_MAKE_FIFO = 1 << 10
_MAKE_BLOCK = 1 << 11
_MAKE_SYM = 1 << 12
_REFER = 1 << 13  # ABI 2: link/rename into another directory (ABI 1 refuses every such move)
_TRUNCATE = 1 << 14  # ABI 3: truncate(2) by path (earlier ABIs cannot restrict it)
_WRITES_V1 = (_WRITE_FILE | _REMOVE_DIR | _REMOVE_FILE | _MAKE_CHAR | _MAKE_DIR | _MAKE_REG | _MAKE_SOCK
              | _MAKE_FIFO | _MAKE_BLOCK | _MAKE_SYM)

# Where every process writes whatever the job: device nodes (/dev/null, /dev/shm for data loaders and NCCL, the GPU
# device files, which the driver opens read-write).
SYSTEM_WRITABLE = (Path("/dev"),)


class _PathBeneath(ctypes.Structure):
    _pack_ = 1  # struct landlock_path_beneath_attr is __attribute__((packed))
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def abi_version() -> tuple[int, str]:
    """(Landlock ABI version, "") where the kernel offers it, else (0, why not) — without restricting anything."""
    if platform.system() != "Linux":
        return 0, f"Landlock is a Linux feature (this is {platform.system()})"
    if platform.machine() not in ("x86_64", "aarch64", "arm64"):
        return 0, f"no known Landlock system call numbers for {platform.machine()}"
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    version = libc.syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    if version >= 1:
        return int(version), ""
    err = ctypes.get_errno()
    if err == errno.ENOSYS:
        return 0, "the kernel has no Landlock (Linux 5.13+ built with CONFIG_SECURITY_LANDLOCK)"
    if err == errno.EOPNOTSUPP:
        return 0, "Landlock is built into the kernel but not enabled (add landlock to the lsm= boot parameter)"
    if err == errno.EPERM:
        return 0, "the container's seccomp profile blocks the Landlock system calls"
    return 0, f"Landlock probe failed: {os.strerror(err)}"


def handled_rights(abi: int) -> int:
    rights = _WRITES_V1
    if abi >= 2:
        rights |= _REFER
    if abi >= 3:
        rights |= _TRUNCATE
    return rights


def restrict_writes(writable: Sequence[Path]) -> int:
    """Allow this process and its future children to write only beneath `writable`; returns the ABI used.
    Raises OSError when the kernel cannot do it (nothing is restricted then)."""
    abi, why = abi_version()
    if abi < 1:
        raise OSError(errno.ENOTSUP, why)
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    rights = handled_rights(abi)
    attr = ctypes.c_uint64(rights)  # struct landlock_ruleset_attr, first member only (size tells the kernel)
    ruleset = libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)),
                           ctypes.c_uint32(0))
    if ruleset < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"landlock_create_ruleset: {os.strerror(err)}")
    try:
        for path in writable:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                # A rule on a file (not a directory) may carry only file rights.
                allowed = rights if os.path.isdir(path) else rights & (_WRITE_FILE | _TRUNCATE)
                rule = _PathBeneath(allowed, fd)
                if libc.syscall(_SYS_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(_RULE_PATH_BENEATH),
                                ctypes.byref(rule), ctypes.c_uint32(0)) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"landlock_add_rule {path}: {os.strerror(err)}")
            finally:
                os.close(fd)
        # Required for an unprivileged process; it also stops any set-uid program from regaining privileges.
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(err)}")
        if libc.syscall(_SYS_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"landlock_restrict_self: {os.strerror(err)}")
    finally:
        os.close(ruleset)
    return abi


def wrap(python: str, argv: Sequence[str], writable: Sequence[Path]) -> list[str]:
    """The command line that runs `argv` confined to writing beneath `writable`."""
    out = [python, "-m", "runner_agent.sandbox"]
    for path in writable:
        out += ["--write", str(path)]
    return [*out, "--", *argv]


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    writable: list[Path] = []
    while args and args[0] == "--write" and len(args) >= 2:
        writable.append(Path(args[1]))
        args = args[2:]
    if not args or args[0] != "--" or len(args) < 2:
        print("usage: python -m runner_agent.sandbox --write DIR [--write DIR ...] -- PROGRAM [ARGS...]",
              file=sys.stderr)
        return 2
    command = args[1:]
    try:
        restrict_writes([p for p in writable if p.exists()])
    except OSError as exc:
        print(f"tunebot sandbox: cannot confine {command[0]}: {exc.strerror or exc}", file=sys.stderr)
        return 126
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        print(f"tunebot sandbox: cannot start {command[0]}: {exc.strerror or exc}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main())
