"""
The one place that says what a call UUID is.

A call's UUID is the only thing that ties a resident's leg to the visitor's,
so it must never be reformatted, regenerated or half-parsed on the way.  We
accept exactly what Asterisk's ``AudioSocket()`` accepts (libuuid's
``uuid_parse``: 36 characters, dashes at offsets 8, 13, 18 and 23, hex
elsewhere, any case, any version) and pass on one form only: lowercase.
Braces, ``urn:uuid:`` prefixes and dash-less hex are refused, since Asterisk
refuses them too and a UUID we accept must be one it can dial back with.
"""

from __future__ import annotations

import re

__all__ = ["InvalidCallUUID", "canonical_uuid", "is_canonical_uuid"]

_UUID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class InvalidCallUUID(ValueError):
    """Text that Asterisk's ``uuid_parse`` would refuse."""


def canonical_uuid(text: str) -> str:
    """The lowercase dashed form of ``text``, or :class:`InvalidCallUUID`."""
    if not isinstance(text, str) or _UUID.fullmatch(text) is None:
        raise InvalidCallUUID(
            f"{text!r} is not a call UUID (36 characters, hex with dashes at "
            f"8, 13, 18 and 23, as Asterisk's AudioSocket() takes)"
        )
    return text.lower()


def is_canonical_uuid(text: object) -> bool:
    """True only for the one form gatekeeper passes around."""
    return isinstance(text, str) and _CANONICAL.fullmatch(text) is not None
