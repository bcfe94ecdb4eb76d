"""Typed records: dataclasses with ``__slots__`` wherever Python has them.

``dataclass(slots=True)`` arrived in Python 3.10; halfopen supports 3.9 (RHEL 9,
Amazon Linux 2023), where a record is a plain dataclass.  Type checkers see
``dataclasses.dataclass`` itself.
"""

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dataclasses import dataclass as record
else:

    def record(cls: Any = None, /, **options: Any) -> Any:
        """``@record`` or ``@record(frozen=True)``: a dataclass with slots (3.10+)."""
        if sys.version_info >= (3, 10):
            options.setdefault("slots", True)
        if cls is None:
            return dataclass(**options)
        return dataclass(cls, **options)


__all__ = ["record"]
