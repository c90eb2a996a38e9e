"""Probes of the sandbox, run inside it by `pytest --upskill-sandbox-check`
(`python -m pytest_upskill.run.probe`): each tries what generated code must not do and
prints one JSON line, `{"probe": ..., "held": ..., "detail": ...}`. Network probes aim only at
the parent's listeners on loopback; the parent judges them by what those heard."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["PROBES", "main"]

_IPPROTO_MPTCP = 262
_TIOCSTI = 0x5412


def _refused(action: Callable[[], object]) -> tuple[bool, str]:
    """Whether `action` was refused, and how it ended."""
    try:
        action()
    except OSError as exc:
        return True, f"{type(exc).__name__}: {exc.strerror or exc}"
    return False, "it worked"


def _environ_of_others() -> tuple[bool, str]:
    """No environment but the sandbox's own (where pytest keeps the API keys) can be read."""
    own = Path("/proc/self/environ").read_bytes()
    read = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and (entry / "environ").read_bytes() not in (own, b""):
                read.append(entry.name)
    return not read, f"read the environment of processes {read}" if read else "none readable"


def _home() -> tuple[bool, str]:
    """Nothing of the home folder but what the sandbox binds (the tests, under it or not)."""
    entries = [Path(entry) for entry in json.loads(sys.argv[2])]  # as the parent lists them
    read = []
    for entry in entries:
        with contextlib.suppress(OSError):
            if entry.is_dir():
                list(entry.iterdir())
            else:
                entry.open("rb").close()
            read.append(entry.name)
    if read:
        return False, f"read {', '.join(read[:5])}"
    return True, f"none of {len(entries)} entries readable"


def _ports() -> dict[str, int]:
    ports: dict[str, int] = json.loads(sys.argv[5])  # the parent's listeners, on loopback
    return ports


def _udp() -> tuple[bool, str]:
    def send() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.sendto(b"probe", ("127.0.0.1", _ports()["udp"]))

    return _refused(send)


def _connect(protocol: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM, protocol) as tcp:
        tcp.settimeout(2)
        tcp.connect(("127.0.0.1", _ports()["tcp"]))


def _tcp() -> tuple[bool, str]:
    return _refused(lambda: _connect(0))


def _mptcp() -> tuple[bool, str]:
    return _refused(lambda: _connect(_IPPROTO_MPTCP))


def _raw() -> tuple[bool, str]:
    return _refused(
        lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()
    )


def _unix_path() -> tuple[bool, str]:
    """No Unix socket on a path (docker.sock, D-Bus, any in a readable folder) can be reached,
    nor a netlink socket made."""
    for path in ("/var/run/docker.sock", "/run/dbus/system_bus_socket"):
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as unix:
            unix.connect(path)
            return False, f"connected to {path}"
    if not _refused(lambda: socket.socket(socket.AF_UNIX).close())[0]:
        return False, "made a Unix socket, which could connect to any it can find by path"
    return _refused(lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW).close())


def _block_device() -> tuple[bool, str]:
    """The machine's disks (as /sys names them) cannot be opened for writing."""
    opened = []
    for name in os.listdir("/sys/class/block"):
        with contextlib.suppress(OSError):
            os.close(os.open(f"/dev/{name}", os.O_WRONLY))
            opened.append(name)
    return not opened, f"opened {opened}" if opened else "none could be opened"


def _mknod() -> tuple[bool, str]:
    node = Path("probe-block-node")
    held, detail = _refused(lambda: os.mknod(node, 0o600 | stat.S_IFBLK, os.makedev(8, 0)))
    node.unlink(missing_ok=True)
    return held, detail


def _tiocsti() -> tuple[bool, str]:
    import fcntl

    def push() -> None:
        for fd in (0, 1, 2):
            with contextlib.suppress(OSError):
                fcntl.ioctl(fd, _TIOCSTI, b"x")
                return
        tty = os.open("/dev/tty", os.O_RDWR)
        try:
            fcntl.ioctl(tty, _TIOCSTI, b"x")
        finally:
            os.close(tty)

    return _refused(push)


def _write_outside() -> tuple[bool, str]:
    target = Path(sys.argv[3]) / ".pytest-upskill-probe"  # where pytest was started
    held, detail = _refused(lambda: target.write_text("probe"))
    if not held:
        target.unlink()
    return held, detail


def _grandchild() -> tuple[bool, str]:
    """A daemon (setsid) started here; the parent checks it is gone once this sandbox ends."""
    code = f"import os, time\n# {sys.argv[4]}\nos.setsid()\nwhile True: time.sleep(1)\n"
    daemon = subprocess.Popen([sys.executable, "-c", code])
    time.sleep(0.2)
    return True, f"pid {daemon.pid}"


def _limits() -> tuple[bool, str]:
    processes = resource.getrlimit(resource.RLIMIT_NPROC)[0]
    file_bytes = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    bounded = resource.RLIM_INFINITY not in (processes, file_bytes)
    return bounded, f"processes {processes}, file size {file_bytes} bytes"


PROBES: dict[str, Callable[[], tuple[bool, str]]] = {
    "reading other processes' environment": _environ_of_others,
    "reading the home folder": _home,
    "UDP": _udp,
    "TCP": _tcp,
    "MPTCP": _mptcp,
    "raw sockets": _raw,
    "Unix and netlink sockets": _unix_path,
    "opening a block device for writing": _block_device,
    "mknod of a block device": _mknod,
    "TIOCSTI into a terminal": _tiocsti,
    "writing outside its folder": _write_outside,
    "limits on processes and file size": _limits,
    "a daemon outliving the sandbox": _grandchild,
}


def main() -> None:
    """`python -m pytest_upskill.run.probe - HOME_ENTRIES_JSON CWD DAEMON_MARK PORTS_JSON`."""
    for name, probe in PROBES.items():
        try:
            held, detail = probe()
        except Exception as exc:  # a probe that breaks says so; the others still run
            held, detail = False, f"the probe broke: {type(exc).__name__}: {exc}"
        print(json.dumps({"probe": name, "held": held, "detail": detail}), flush=True)


if __name__ == "__main__":
    main()
