"""The base of a verb's options object (`BenchOptions`, `TuneOptions`): validated on construction, frozen.

The core knows fields, not flags: `build` turns the first refused value into one `OptionError` naming its
field, and the CLI re-words it with the flag that set the field (`cli/_output.flag_error`).
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from dmlbench.errors import OptionError

SomeOptions = TypeVar("SomeOptions", bound="Options")


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @classmethod
    def build(cls: type[SomeOptions], **values: Any) -> SomeOptions:
        """Validate `values` into options; the first bad value is one OptionError naming its field."""
        try:
            return cls(**values)
        except ValidationError as err:
            first = err.errors()[0]
            key = ".".join(str(part) for part in first["loc"]) or "options"
            if first["type"] == "extra_forbidden":
                raise OptionError(key, f"not an option of {cls.__name__}") from None
            raise OptionError(key, first["msg"]) from None
