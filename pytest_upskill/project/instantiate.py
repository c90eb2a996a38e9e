"""A GCC plugin that makes a precompiled header hold the template instantiations its headers'
inline functions need. g++ leaves those to the end of every source that includes the header,
where they are most of what a small source costs (5-7 s of a 7 s compile against
`<torch/all.h>`). Built once per compiler where g++ has its plugin headers (Debian:
`gcc-12-plugin-dev`), beside the precompiled headers; without them, headers are precompiled as
before.

The plugin adds `#pragma upskill instantiate`, which the copy of the header that is precompiled
ends with. The sources that include the header compile without the plugin; only the making of
the header loads it. Instantiating at the header's end rather than at the source's end is one of
the points of instantiation the standard allows; what g++ emits for a source is the same code,
though not always in the same order (the objects differ in layout, not in what they do).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import subprocess
import threading
from pathlib import Path

__all__ = ["PRAGMA", "instantiating_plugin"]

PRAGMA = b"\n#pragma upskill instantiate\n"

# Apache-2.0, as the rest of pytest-upskill: GPLv3-compatible, as GCC asks of its plugins.
_SOURCE = """\
#include "gcc-plugin.h"
#include "plugin-version.h"
#include "tree.h"
#include "cp/cp-tree.h"
#include "c-family/c-pragma.h"

int plugin_is_GPL_compatible;

static void instantiate(cpp_reader *) { instantiate_pending_templates(0); }

static void add_pragma(void *, void *) {
  c_register_pragma("upskill", "instantiate", instantiate);
}

int plugin_init(plugin_name_args *info, plugin_gcc_version *version) {
  if (!plugin_default_version_check(version, &gcc_version)) return 1;
  register_callback(info->base_name, PLUGIN_PRAGMAS, add_pragma, nullptr);
  return 0;
}
"""
_BUILD_S = 300.0
_BUILDING = threading.Lock()  # builds ahead ask from several threads: one builds


def instantiating_plugin(cxx: str, fingerprint: str, folder: Path) -> Path | None:
    """The plugin for the compiler `cxx` (whose `fingerprint` names its version), built in
    `folder` unless a process built it before; None where g++ has no plugin headers, or the
    plugin does not build (not g++, say)."""
    with _BUILDING:
        return _plugin(cxx, fingerprint, folder)


@functools.cache
def _plugin(cxx: str, fingerprint: str, folder: Path) -> Path | None:
    digest = hashlib.sha256(f"{cxx}\0{fingerprint}\0{_SOURCE}".encode()).hexdigest()[:16]
    plugin = folder / f"instantiate-{digest}.so"
    if plugin.is_file():
        return plugin
    try:
        headers = subprocess.run(
            [cxx, "-print-file-name=plugin"], capture_output=True, text=True, timeout=60
        ).stdout.strip()
        if not (Path(headers) / "include" / "gcc-plugin.h").is_file():
            return None
        folder.mkdir(parents=True, exist_ok=True)
        source = folder / f".instantiate-{digest}-{os.getpid()}.cc"
        built = source.with_suffix(".so")
        source.write_text(_SOURCE)
        try:
            command = [cxx, "-shared", "-fPIC", "-fno-rtti", "-O2", "-I", f"{headers}/include"]
            ran = subprocess.run(
                [*command, str(source), "-o", str(built)], capture_output=True, timeout=_BUILD_S
            )
            if ran.returncode != 0:
                return None
            os.replace(built, plugin)  # whole or not at all, as another process sees it
        finally:
            source.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                built.unlink()
    except (OSError, subprocess.SubprocessError):
        return None
    return plugin
