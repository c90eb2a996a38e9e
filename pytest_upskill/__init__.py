"""pytest-upskill: does a skill make a model write kernels that build and pass real tests?"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import SampleError, SampleFailed, UpskillIssue

if TYPE_CHECKING:
    from .sample import Sample

__all__ = ["Sample", "SampleError", "SampleFailed", "UpskillIssue", "__version__"]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Sample pulls in pydantic; the plugin imports this package at every pytest start-up.
    if name == "Sample":
        from .sample import Sample

        return Sample
    raise AttributeError(f"module 'pytest_upskill' has no attribute {name!r}")
