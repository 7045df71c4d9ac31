"""The JSON Schema (draft 2020-12) of the envelope and of every event type's ``data``.

Built from the field tables of :mod:`dicombus.bus.event_data`, and shipped as
``dicombus/bus/schema/v<SCHEMA_VERSION>.json`` (written by
scripts/gen_events_doc.py; a test checks the shipped file is what
:func:`json_schema` builds). Every ``data`` object lists all of its fields as
required and allows no others, so an event that validates has exactly the
documented shape.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from importlib import resources
from typing import Any

from dicombus.bus.envelope import (
    DATA_CONTENT_TYPE,
    DICOM_SCHEME,
    DICOM_TLS_SCHEME,
    REQUIRED_ATTRIBUTES,
    SCHEMA_VERSION,
    SOURCE_SCHEME,
    SPEC_VERSION,
)
from dicombus.bus.event_data import (
    ASSOCIATION_FIELDS,
    CONTEXTS_FIELD,
    EVENT_SPECS,
    PDV_FIELDS,
    PRESENTATION_CONTEXT_FIELDS,
    Field,
)

SCHEMA_ID = f"urn:dicombus:events:schema:{SCHEMA_VERSION}"
SCHEMA_FILE = f"v{SCHEMA_VERSION}.json"

# Crockford base32, 26 characters (dicombus.ulid).
_ULID = {"type": "string", "pattern": "^[0-9A-HJKMNP-TV-Z]{26}$"}
_STRING = {"type": "string"}
# PS3.5 6.2: every VR, as the DICOM JSON model names them.
_VRS = [
    "AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "OB", "OD", "OF",
    "OL", "OV", "OW", "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UN",
    "UR", "US", "UT", "UV",
]  # fmt: skip


def json_schema() -> dict[str, Any]:
    """The schema, built now from the field tables."""
    defs: dict[str, Any] = {
        "dicom_json": _dicom_json(),
        "association": _object(ASSOCIATION_FIELDS),
        "association_with_contexts": _object((*ASSOCIATION_FIELDS, CONTEXTS_FIELD)),
        "presentation_context": _object(PRESENTATION_CONTEXT_FIELDS),
        "pdv": _object(PDV_FIELDS),
    }
    for spec in EVENT_SPECS.values():
        block = "association_with_contexts" if spec.with_contexts else "association"
        association = Field("association", {"$ref": f"#/$defs/{block}"}, "The association.")
        defs[spec.name] = {
            **_object((association, *spec.fields)),
            "description": f"{spec.name}: published {spec.when}.",
        }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": f"dicombus event (CloudEvents {SPEC_VERSION}), schema version {SCHEMA_VERSION}",
        "type": "object",
        "properties": _envelope_attributes(),
        "required": [*REQUIRED_ATTRIBUTES, *_REQUIRED_BY_US],
        # CloudEvents 1.0: attribute names, extensions included, are lower-case
        # letters and digits.
        "propertyNames": {"pattern": "^[a-z0-9]{1,20}$"},
        "allOf": [
            {
                "if": {"properties": {"type": {"const": name}}, "required": ["type"]},
                "then": {"properties": {"data": {"$ref": f"#/$defs/{name}"}}},
            }
            for name in EVENT_SPECS
        ],
        "$defs": defs,
    }


def load_schema() -> dict[str, Any]:
    """The schema file shipped with the package."""
    text = resources.files("dicombus.bus").joinpath("schema", SCHEMA_FILE).read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def schema_text() -> str:
    """:func:`json_schema` as the shipped file holds it."""
    return json.dumps(json_schema(), indent=2, sort_keys=False) + "\n"


# Optional in CloudEvents, always present in ours.
_REQUIRED_BY_US = ("time", "subject", "datacontenttype", "sequence", "schemaversion", "data")


def _envelope_attributes() -> dict[str, Any]:
    return {
        "specversion": {"const": SPEC_VERSION},
        "id": {**_ULID, "description": "The event's ULID: unique, the same in every retry."},
        "source": {
            "type": "string",
            "pattern": f"^{SOURCE_SCHEME}://[^/]+/[^/]*$",
            "description": f"{SOURCE_SCHEME}://<edge id>/<AE title>, both percent-encoded.",
        },
        "type": {"enum": list(EVENT_SPECS), "description": "The event type's name."},
        "time": {
            "type": "string",
            "format": "date-time",
            "pattern": "Z$",
            "description": "When it happened, UTC (RFC 3339).",
        },
        "subject": {**_ULID, "description": "The association's ULID."},
        "datacontenttype": {"const": DATA_CONTENT_TYPE},
        "sequence": {
            "type": "integer",
            "minimum": 1,
            "description": "1, 2, 3 ... per association (subject): the order to restore.",
        },
        "schemaversion": {"const": SCHEMA_VERSION},
        "retrieveuri": {
            "type": "string",
            "pattern": f"^({DICOM_SCHEME}|{DICOM_TLS_SCHEME})://[^@/]+@[^/]+:[0-9]+$",
            "description": (
                f"{DICOM_SCHEME}://<AE title>@<host>:<port>: where the edge serves C-GET "
                f"for what it stored ({DICOM_TLS_SCHEME}://: over TLS only; absent: it does "
                "not)."
            ),
        },
        "data": {"type": "object"},
    }


def _object(fields: Iterable[Field]) -> dict[str, Any]:
    listed = list(fields)
    return {
        "type": "object",
        "properties": {
            field.name: {**field.schema, "description": field.description} for field in listed
        },
        "required": [field.name for field in listed],
        "additionalProperties": False,
    }


def _dicom_json() -> dict[str, Any]:
    """PS3.18 F.2: attributes by tag, each a VR and at most one of its three value keys."""
    person_name = {
        "type": "object",
        "properties": {"Alphabetic": _STRING, "Ideographic": _STRING, "Phonetic": _STRING},
        "additionalProperties": False,
    }
    value = {
        "anyOf": [
            {"type": ["string", "number", "null"]},
            {"$ref": "#/$defs/dicom_json"},
            person_name,
        ]
    }
    return {
        "type": "object",
        "propertyNames": {"pattern": "^[0-9A-F]{8}$"},
        "additionalProperties": {
            "type": "object",
            "properties": {
                "vr": {"enum": _VRS},
                "Value": {"type": "array", "items": value},
                "BulkDataURI": {"type": "string", "format": "uri-reference"},
                "InlineBinary": {"type": "string", "contentEncoding": "base64"},
            },
            "required": ["vr"],
            "additionalProperties": False,
            "maxProperties": 2,
        },
    }
