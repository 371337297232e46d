"""Series keys that cannot collide: tenant, application and model kept apart end to end.

Ids are free text and may contain any separator: joined with "/", ``acme/app`` + ``openai`` +
``gpt-4o`` and ``acme`` + ``app`` + ``openai/gpt-4o`` were one series, and a published row could
land on another tenant's key. Code holds a :class:`RouteKey` (a tuple); where one string is
needed (a dict key inside the detector fleet, an MLflow tag, the ``series_key`` column) it is
:func:`encode_key`, a JSON array, which :func:`decode_key` inverts exactly whatever the ids
contain. Tables store the parts in their own columns (``tenant_id``, ``asset_id``, ``model``).
"""

from __future__ import annotations

import json
from dataclasses import astuple, dataclass


def encode_key(*parts: str) -> str:
    """One string for the parts, invertible whatever they contain (a compact JSON array)."""
    for part in parts:
        if not isinstance(part, str):
            raise TypeError(f"key parts must be strings, got {type(part).__name__}")
    return json.dumps(list(parts), ensure_ascii=False, separators=(",", ":"))


def decode_key(text: str, parts: int | None = None) -> tuple[str, ...]:
    """The parts of an :func:`encode_key` string.

    Raises:
        ValueError: ``text`` is not an encoded key (of ``parts`` parts, when given).
    """
    try:
        decoded = json.loads(text)
    except json.JSONDecodeError:
        raise ValueError(f"not an encoded series key: {text!r}") from None
    if not isinstance(decoded, list) or not all(isinstance(p, str) for p in decoded):
        raise ValueError(f"not an encoded series key: {text!r}")
    if parts is not None and len(decoded) != parts:
        raise ValueError(f"expected {parts} key parts, got {len(decoded)} in {text!r}")
    return tuple(decoded)


@dataclass(frozen=True, order=True)
class RouteKey:
    """One route: a tenant's application calling one model."""

    tenant_id: str
    application_id: str
    model: str

    def encode(self) -> str:
        """The key as one collision-free string (see :func:`encode_key`)."""
        return encode_key(*astuple(self))

    @classmethod
    def decode(cls, text: str) -> RouteKey:
        """The key :meth:`encode` wrote."""
        return cls(*decode_key(text, 3))

    def __str__(self) -> str:
        return self.encode()
