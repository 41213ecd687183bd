"""The API's contract: pydantic schemas that validate every request and describe it in /openapi.json.

schemas     the building blocks: strict JSON bodies, query strings, text fields, the error envelope
validation  `contract`, the SpecTree that validates each view's request and response, and the hooks
            that turn its findings into the service's JSON errors
document    /openapi.json: SpecTree's document completed with what the hooks add (headers, keys,
            errors shared by every route)
"""

from appfactory.contract.schemas import Body, Changes, ErrorEnvelope, Integer, NoQuery, Query, Text
from appfactory.contract.validation import answers, contract, query_of

__all__ = [
    "Body",
    "Changes",
    "ErrorEnvelope",
    "Integer",
    "NoQuery",
    "Query",
    "Text",
    "answers",
    "contract",
    "query_of",
]
