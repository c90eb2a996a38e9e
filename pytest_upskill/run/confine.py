"""Confine this process for good, then (as `python -m pytest_upskill.run.confine SPEC -- ARGV`)
run ARGV: resource limits, death with the parent, Landlock reads and writes, and a seccomp
filter (no sockets but Unix socket pairs, no device nodes, no keystrokes pushed into a terminal,
no reaching into another process).
An agent CLI's sandbox may open Internet and Unix sockets (`network`): bubblewrap gave it a
network namespace of its own, whose only way out is the model endpoint's proxy.

The seccomp filter is a dozen BPF instructions written here: libseccomp's Python bindings come
only with the system's packages (not from PyPI), and the filter is small enough to read.
"""

from __future__ import annotations

import ctypes
import os
import platform
import resource
import sys
from pathlib import Path

from pydantic import BaseModel

from .landlock import abi_version, restrict
from .processes import become_subreaper, die_with_parent, kill_orphans

__all__ = ["Confinement", "apply", "seccomp_filter"]

_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 2
_PR_CAPBSET_DROP = 24
_CAPABILITY_VERSION_3 = 0x20080522


class Confinement(BaseModel):
    """What `apply` does: the sandbox's allow-lists and limits, as the parent wrote them."""

    readable: list[str]
    writable: list[str]
    devices: list[str]
    processes: int
    file_bytes: int
    network: bool = False  # sockets of the sandbox's own network namespace (agent CLIs)
    usage: str | None = None  # where to write the CPU seconds the program took, at its end


# seccomp: (audit arch, socket, socketpair, mknod, mknodat, ioctl, io_uring_setup); -1: none.
_ARCHES = {
    "x86_64": (0xC000003E, 41, 53, 133, 259, 16, 425),
    "aarch64": (0xC00000B7, 198, 199, -1, 33, 29, 425),
}
# Calls that reach into another process of the same sandbox (ptrace, process_vm_readv,
# process_vm_writev, kcmp, pidfd_getfd): a program's children could take its descriptors (an
# agent CLI's output) or its memory.
_TRACING = {"x86_64": (101, 310, 311, 312, 438), "aarch64": (117, 270, 271, 272, 438)}
_X32_BIT = 0x40000000  # x86_64's x32 system calls: other numbers for the same calls
_ALLOW, _KILL, _ERRNO = 0x7FFF0000, 0x80000000, 0x00050000
_EPERM, _EACCES = 1, 13
_AF_UNIX, _AF_INET, _AF_INET6 = 1, 2, 10
_TIOCSTI, _TIOCLINUX = 0x5412, 0x541C
_LD, _JEQ, _JGE, _RET = 0x20, 0x15, 0x35, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, ..|JGE|K, BPF_RET|K


class _Instruction(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_Instruction))]


def seccomp_filter(machine: str, network: bool = False) -> list[tuple[int, int, int, int]]:
    """The filter's instructions for `machine` (`x86_64`, `aarch64`); jumps go to labels,
    resolved here into BPF's relative offsets. With `network`, socket() may make Unix and
    Internet sockets (never raw, packet or netlink ones)."""
    arch, socket_, socketpair, mknod, mknodat, ioctl, io_uring = _ARCHES[machine]
    families: list[tuple[int | str, int | str, int | str, int]] = [
        (_LD, 0, 0, 16),  # args[0]: the address family
        (_JEQ, "allow", 0, _AF_UNIX),
        (_JEQ, "allow", 0, _AF_INET),
        (_JEQ, "allow", 0, _AF_INET6),
    ]
    program: list[tuple[int | str, int | str, int | str, int]] = [
        (_LD, 0, 0, 4),  # seccomp_data.arch
        (_JEQ, 1, 0, arch),
        (_RET, 0, 0, _KILL),
        (_LD, 0, 0, 0),  # seccomp_data.nr
        (_JGE, "deny", 0, _X32_BIT),
        (_JEQ, "no_socket", 0, socket_),  # a Unix socket by path would reach docker.sock
        (_JEQ, "socketpair", 0, socketpair),
        (_JEQ, "deny", 0, mknod),
        (_JEQ, "deny", 0, mknodat),
        (_JEQ, "deny", 0, io_uring),  # its socket operations would pass the checks above
        *((_JEQ, "deny", 0, number) for number in _TRACING[machine]),
        (_JEQ, "ioctl", 0, ioctl),
        (_RET, 0, 0, _ALLOW),
        ("socketpair", 0, 0, 0),
        (_LD, 0, 0, 16),  # args[0]: the address family
        (_JEQ, "allow", 0, _AF_UNIX),
        ("no_socket", 0, 0, 0),
        *(families if network else []),
        (_RET, 0, 0, _ERRNO | _EACCES),
        ("ioctl", 0, 0, 0),
        (_LD, 0, 0, 24),  # args[1]: the request, whose low 32 bits the kernel reads
        (_JEQ, "deny", 0, _TIOCSTI),
        (_JEQ, "deny", 0, _TIOCLINUX),
        ("allow", 0, 0, 0),
        (_RET, 0, 0, _ALLOW),
        ("deny", 0, 0, 0),
        (_RET, 0, 0, _ERRNO | _EPERM),
    ]
    labels: dict[str, int] = {}
    code: list[tuple[int | str, int | str, int | str, int]] = []
    for instruction in program:
        if isinstance(instruction[0], str):
            labels[instruction[0]] = len(code)
        elif instruction[3] != -1:  # a call this machine does not have
            code.append(instruction)
    resolved = []
    for index, (op, jt, jf, k) in enumerate(code):
        offsets = [labels[j] - index - 1 if isinstance(j, str) else j for j in (jt, jf)]
        resolved.append((int(op), int(offsets[0]), int(offsets[1]), int(k)))
    return resolved


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _drop_capabilities() -> None:
    """No capability left, for this process or what it executes: root (as CI runs) keeps
    CAP_SYS_PTRACE otherwise, which reads other processes' environment despite Landlock."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in range(64):
        libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0)  # EINVAL past the last one
    data = (_CapData * 2)()
    if libc.capset(ctypes.byref(_CapHeader(_CAPABILITY_VERSION_3, 0)), data):
        raise OSError(ctypes.get_errno(), "capset failed")


def _install_seccomp(network: bool) -> bool:
    machine = platform.machine()
    if sys.platform != "linux" or machine not in _ARCHES:
        return False
    instructions = seccomp_filter(machine, network)
    array = (_Instruction * len(instructions))(*(_Instruction(*i) for i in instructions))
    program = _Program(len(instructions), array)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0):
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(program), 0, 0):
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP) failed")
    return True


def apply(confinement: Confinement, parent: int | None = None) -> None:
    """Confine this process and all it starts: call before any thread starts. `parent`: the
    process whose death ends this one (default: the current parent)."""
    # A parent killed outright takes this process with it: a kernel spinning here never reads
    # the end of its connection.
    die_with_parent(parent or os.getppid())
    for limit, value in (
        (resource.RLIMIT_NPROC, confinement.processes),
        (resource.RLIMIT_FSIZE, confinement.file_bytes),
        (resource.RLIMIT_CORE, 0),
    ):
        hard = resource.getrlimit(limit)[1]
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(limit, (value, value))
    if sys.platform == "linux":
        _drop_capabilities()
    if abi_version() >= 1:
        restrict(
            [Path(p) for p in confinement.readable],
            [Path(p) for p in confinement.writable],
            [Path(p) for p in confinement.devices],
            network=confinement.network,
        )
    _install_seccomp(confinement.network)


def main() -> None:
    spec, separator, *argv = sys.argv[1:]
    if separator != "--" or not argv:
        sys.exit("usage: python -m pytest_upskill.run.confine SPEC -- PROGRAM [ARGS...]")
    confinement = Confinement.model_validate_json(spec)
    apply(confinement)
    # The program runs as this process's child, and when it ends so does all it started: as
    # a subreaper this process inherits every orphan, a daemon that called setsid() too.
    become_subreaper()
    launcher = os.getpid()
    pid = os.fork()
    if pid == 0:
        try:
            die_with_parent(launcher)
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    kill_orphans()
    if confinement.usage:
        _write_usage(confinement.usage)
    sys.exit(status if status >= 0 else 128 - status)


def _write_usage(path: str) -> None:
    """The CPU seconds of every process this one reaped, for a parent whose wait4 cannot see
    them through bubblewrap's PID namespace. Never through a link, never blocked by a FIFO."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        handle = os.open(path, flags, 0o600)
    except OSError:
        return
    with os.fdopen(handle, "w") as stream:
        stream.write(f"{usage.ru_utime + usage.ru_stime:.3f}")


if __name__ == "__main__":
    main()
