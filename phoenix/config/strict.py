"""The base of every config model."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """Base of every config model: unknown keys are errors, so typos are caught; numbers are finite."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)

    # Keys of an older format, still read, each with a deprecation note (the loader gives them):
    # renamed: old key -> its new spelling (a before-validator of the model moves it there);
    # retired: a key still accepted but unused -> why, and what to do instead.
    renamed: ClassVar[dict[str, str]] = {}
    retired: ClassVar[dict[str, str]] = {}
