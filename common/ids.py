"""The ids the cloud gives servers and images: UUIDs, checked before they reach a URL."""

from __future__ import annotations

import re

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


def is_uuid(value: object) -> bool:
    """True for a UUID in its usual written form, the only form Nova and Glance give ids in.

    An allow-list, not a deny-list: an id goes into a compute URL's path, and one with a
    slash, dots, a query or an encoded character could reach another route as the service.
    """
    return isinstance(value, str) and _UUID.fullmatch(value) is not None
