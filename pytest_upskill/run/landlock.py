"""Landlock (Linux >= 5.13): let a process read only beneath an allow-list and write only
beneath a few folders, for good; where the kernel can, also no TCP and no signals or abstract
sockets reaching processes outside the sandbox. Landlock also keeps the process from ptracing
(and so from reading `/proc/PID/environ` of) any process outside its domain.

Called through the three system calls directly: the `landlock` package on PyPI is a
pre-release (1.0.0.dev5), and what is needed here is one ruleset.
"""

from __future__ import annotations

import ctypes
import os
import platform
import stat
import sys
from collections.abc import Iterable
from pathlib import Path

__all__ = ["abi_version", "restrict"]

# asm-generic numbers, shared by x86_64 and aarch64.
_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

_EXECUTE = 1 << 0
_WRITE_FILE = 1 << 1
_READ_FILE = 1 << 2
_READ_DIR = 1 << 3
_REMOVE_DIR = 1 << 4
_REMOVE_FILE = 1 << 5
_MAKE_CHAR = 1 << 6
_MAKE_DIR = 1 << 7
_MAKE_REG = 1 << 8
_MAKE_SOCK = 1 << 9
_MAKE_FIFO = 1 << 10
_MAKE_BLOCK = 1 << 11
_MAKE_SYM = 1 << 12
_REFER = 1 << 13  # ABI 2
_TRUNCATE = 1 << 14  # ABI 3

_READ = _EXECUTE | _READ_FILE | _READ_DIR
_FILE_RIGHTS = _EXECUTE | _WRITE_FILE | _READ_FILE | _TRUNCATE  # what a rule on a file may hold
_BIND_TCP, _CONNECT_TCP = 1 << 0, 1 << 1  # ABI 4
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1 << 0, 1 << 1  # ABI 6


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),  # ABI 4
        ("scoped", ctypes.c_uint64),  # ABI 6
    ]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1  # the kernel's struct is packed
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def abi_version() -> int:
    """The Landlock ABI this kernel offers; 0 where there is none (not Linux, disabled, old)."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "aarch64"):
        return 0
    version = _libc().syscall(_CREATE_RULESET, None, ctypes.c_size_t(0), _CREATE_RULESET_VERSION)
    return max(int(version), 0)


def _handled(abi: int) -> int:
    rights = (_MAKE_SYM << 1) - 1  # EXECUTE .. MAKE_SYM: ABI 1
    if abi >= 2:
        rights |= _REFER
    if abi >= 3:
        rights |= _TRUNCATE
    return rights


def restrict(
    readable: Iterable[Path],
    writable: Iterable[Path],
    devices: Iterable[Path] = (),
    network: bool = False,
) -> int:
    """From now on this thread and every thread and process it starts may read and execute only
    beneath `readable` and `writable`, create, change or delete files only beneath `writable`
    (never device nodes), and open only the device files `devices` for writing. From ABI 4 it
    may neither connect nor bind TCP sockets, from ABI 6 neither signal nor reach the abstract
    sockets of processes outside. With `network` TCP is left alone: an agent CLI's sandbox,
    whose network namespace reaches nothing but its proxy. Paths that do not exist are left
    out. Call it before starting threads. Returns the ABI used; OSError where Landlock is not
    available."""
    abi = abi_version()
    if abi < 1:
        raise OSError("Landlock is not available on this kernel")
    libc = _libc()
    handled = _handled(abi)
    attr = _RulesetAttr(handled, 0, 0)
    size = 8  # each ABI reads the fields it knows: the kernel refuses unknown ones
    if abi >= 4:
        attr.handled_access_net, size = 0 if network else _BIND_TCP | _CONNECT_TCP, 16
    if abi >= 6:
        attr.scoped, size = _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL, 24
    ruleset = libc.syscall(_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0)
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    write = handled & ~(_MAKE_BLOCK | _MAKE_CHAR)  # no device nodes, even in its own folder
    rules = [(path, _READ) for path in readable]
    rules += [(path, write) for path in writable]
    rules += [(path, _READ_FILE | _WRITE_FILE) for path in devices]
    try:
        for path, rights in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                if not stat.S_ISDIR(os.fstat(fd).st_mode):
                    rights &= _FILE_RIGHTS  # the kernel refuses directory rights on a file
                rule = _PathBeneath(rights & handled, fd)
                if libc.syscall(_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0):
                    raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
            finally:
                os.close(fd)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0):
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        if libc.syscall(_RESTRICT_SELF, ruleset, 0):
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(ruleset)
    return abi
