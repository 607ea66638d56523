"""The one error body builder: OpenStack-style `{"<kind>": {"message", "code"}}` bodies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

from flask import Response, jsonify
from werkzeug.exceptions import HTTPException

# The key each status is answered under, as the compatible API names them.
KINDS = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "itemNotFound",
    405: "badMethod",
    409: "conflictingRequest",
    413: "overLimit",
    415: "badMediaType",
    422: "badRequest",
    429: "overLimit",
    500: "computeFault",
    503: "serviceUnavailable",
}
# The key of any other status.
FALLBACK_KIND = "error"

RETRY_AFTER_S = 5


class ApiError(HTTPException):
    """An error answer raised from anywhere in a request, carrying its status and message."""

    def __init__(self, code: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(description=message)
        self.code = code
        self.extra_headers = dict(headers or {})


def abort(code: int, message: str, headers: Mapping[str, str] | None = None) -> NoReturn:
    raise ApiError(code, message, headers)


def unavailable(what: str) -> NoReturn:
    abort(503, f"{what} is unavailable; retry later", {"Retry-After": str(RETRY_AFTER_S)})


def error_response(code: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    status = 400 if code == 422 else code
    kind = KINDS.get(status, FALLBACK_KIND)
    response = jsonify({kind: {"message": message, "code": status}})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def validation_message(messages: Any, path: str = "") -> str:
    """Flatten webargs/marshmallow messages into one line naming each bad field."""
    if isinstance(messages, Mapping):
        parts = []
        for key, value in messages.items():
            if key == "json":
                name = path
            elif key == "_schema":
                name = path or "body"
            else:
                name = f"{path}.{key}" if path else str(key)
            parts.append(validation_message(value, name))
        return "; ".join(p for p in parts if p)
    if isinstance(messages, list | tuple):
        text = " ".join(str(m) for m in messages if not isinstance(m, Mapping | list))
        nested = "; ".join(validation_message(m, path) for m in messages if isinstance(m, Mapping))
        line = f"{path}: {text}" if path and text else text
        return "; ".join(p for p in (line, nested) if p)
    return f"{path}: {messages}" if path else str(messages)


def from_http_exception(error: HTTPException) -> Response:
    if isinstance(error.response, Response):
        # Built already, in the compatible shape (the rate limits' 429).
        return error.response
    code = error.code or 500
    headers = getattr(error, "extra_headers", None) or {}
    data = getattr(error, "data", None) or {}
    if "messages" in data:
        message = validation_message(data["messages"])
    elif code == 413:
        message = "Request body is larger than 64 KiB"
    elif code == 404 and not isinstance(error, ApiError):
        message = "The resource could not be found."
    else:
        message = error.description or error.name
    response = error_response(code, message, headers)
    if code == 405 and (allowed := error.get_headers()):
        for name, value in allowed:
            if name.lower() == "allow":
                response.headers["Allow"] = value
    return response
