"""Old spellings that still work, with a DeprecationWarning: results that used to be bare tuples
(Modules with named fields that still unpack) and renamed fields."""

from __future__ import annotations

import warnings

import equinox as eqx


class Unpackable(eqx.Module):
    """A result Module whose fields can still be unpacked in the order of the tuple it replaced
    (`_legacy_order`), with a DeprecationWarning; read the fields by name instead."""

    def __iter__(self):
        warnings.warn(
            f"unpacking a {type(self).__name__} is deprecated: read its fields by name "
            f"({', '.join(self._legacy_order)}).",
            DeprecationWarning,
            stacklevel=2,
        )
        return iter(getattr(self, f) for f in self._legacy_order)


def renamed(old: str, new: str) -> None:
    """Warn that `old` is now `new` (call it from the property that keeps the old name readable)."""
    warnings.warn(f"{old} is now {new}.", DeprecationWarning, stacklevel=3)
