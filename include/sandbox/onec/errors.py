"""OData errors as 1C reports them: an HTTP status plus an ``odata.error`` body with 1C's internal code.

The body is ``{"odata.error": {"code": "9", "message": {"lang": "ru", "value": "..."}}}`` in JSON and
``<m:error><m:code>9</m:code><m:message xml:lang="ru">...</m:message></m:error>`` otherwise (``atom``).
Codes 9, 13, 15, 21 and -1 are the ones public clients and forum reports of real bases show (DESIGN §8; 20,
access denied, is not modelled); 5 and 6 are the stand-in's choice, not checked against the guide's table:
clients should branch on the HTTP status for those.
"""
from __future__ import annotations

from ..httpbase import Response

# Codes named by the 1C developer guide and confirmed by public clients.
NOT_FOUND = "9"  # the object with this key does not exist
NOT_SUPPORTED = "13"  # e.g. creating tabular-part rows directly
KEY_EXISTS = "15"  # POST with a Ref_Key that is taken
BAD_FILTER = "21"  # unsupported $filter function or malformed expression
BUSINESS = "-1"  # the configuration's own code refused (posting checks, write conflicts)
# Codes the stand-in chose where the guide was not at hand; clients should branch on the HTTP status here.
BAD_REQUEST = "5"  # malformed body, value of the wrong type, bad query option
UNKNOWN_RESOURCE = "6"  # unknown entity set, property or navigation property


class ODataError(Exception):
    """An error answered to the client; ``status`` is the HTTP status, ``code`` 1C's internal code."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def to_response(self) -> Response:
        return Response.json(
            self.status, {"odata.error": {"code": self.code, "message": {"lang": "ru", "value": self.message}}}
        )


def not_found(entity_set: str, ref_key: str) -> ODataError:
    return ODataError(404, NOT_FOUND, f"Экземпляр сущности не найден: {entity_set}(guid'{ref_key}')")


def bad_request(message: str) -> ODataError:
    return ODataError(400, BAD_REQUEST, message)


def business(message: str) -> ODataError:
    return ODataError(500, BUSINESS, message)
