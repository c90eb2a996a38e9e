"""Import a built kernel package under a name of its own and check its ops are registered."""

from __future__ import annotations

import importlib.util
import sys
import traceback
from types import ModuleType

from ..errors import SampleFailed
from ..project.build import Build

__all__ = ["NO_DEVICE", "device_mismatch", "load_kernel"]

NO_DEVICE = "no CUDA device here"

# One import per build and process: a second import would register the op namespace twice.
_loaded: dict[str, ModuleType] = {}


def load_kernel(build: Build, name: str, *, require_ops: bool = True) -> ModuleType:
    """The package `torch-ext/<name>` of `build`, imported; SampleFailed at `load` otherwise.

    `require_ops`: the build's op namespace must hold ops (kernel-builder's binding)."""
    if build.key in _loaded:
        return _loaded[build.key]
    import torch

    package_dir = build.package_dir / name
    module_name = f"upskill_kernel_{build.ext_name.lstrip('_')}"
    spec = importlib.util.spec_from_file_location(
        module_name, package_dir / "__init__.py", submodule_search_locations=[str(package_dir)]
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # generated code may raise anything, SystemExit included
        for loaded in [
            m for m in sys.modules if m == module_name or m.startswith(module_name + ".")
        ]:
            del sys.modules[loaded]
        last = traceback.extract_tb(exc.__traceback__)[-1:]
        where = f" ({last[0].filename.rsplit('/pkg/', 1)[-1]}:{last[0].lineno})" if last else ""
        message = str(exc).splitlines()[0] if str(exc) else ""
        raise SampleFailed(
            "load", f"importing the package raised {type(exc).__name__}: {message}{where}"
        ) from None
    prefix = f"{build.ext_name}::"
    names = torch._C._dispatch_get_all_op_names
    if require_ops and not any(op.startswith(prefix) for op in names()):
        raise SampleFailed(
            "load",
            "the extension registered no ops: torch_binding.cpp must define them in "
            "TORCH_LIBRARY_EXPAND(TORCH_EXTENSION_NAME, ops)",
        )
    _loaded[build.key] = module
    return module


def device_mismatch(targets: tuple[str, ...]) -> str | None:
    """Why this machine cannot run code built for `targets` (`sm_90a`, ...), or None if it can."""
    import torch

    if not torch.cuda.is_available():
        return NO_DEVICE
    major, minor = torch.cuda.get_device_capability()
    for target in targets:
        number = target.removeprefix("sm_")
        arch_specific = number.endswith(("a", "f"))
        digits = number.rstrip("af")
        t_major, t_minor = int(digits[:-1]), int(digits[-1])
        # Device code runs on its own major version at the same or a later minor; `a` code
        # (wgmma, setmaxnreg, ...) only on exactly its own capability.
        if t_major == major and (t_minor == minor or (not arch_specific and t_minor < minor)):
            return None
    return f"the CUDA device here is sm_{major}{minor}"
