"""The request bodies the backend reads, as JSON Schema for its OpenAPI document (/openapi.json): what Label
Studio sends, so that a schema-driven fuzzer (bench/fuzz.py) generates realistic requests, and wrong ones.
The handlers read raw JSON and check it themselves (a wrong body is a 4xx that says why, never a 500)."""

from __future__ import annotations

TASK = {"type": "object", "required": ["data"], "properties": {
    "id": {"type": "integer"},
    "data": {"type": "object", "properties": {"image": {"type": "string"}}},
}}

BODIES = {
    "/predict": {"type": "object", "required": ["tasks"], "properties": {
        "tasks": {"type": "array", "minItems": 1, "maxItems": 8, "items": TASK},
        "label_config": {"type": "string"},
        "project": {"type": "string"},
    }},
    "/setup": {"type": "object", "properties": {"project": {"type": "string"}, "schema": {"type": "string"}}},
    "/webhook": {"type": "object", "required": ["action"], "properties": {
        "action": {"type": "string", "enum": ["ANNOTATION_CREATED", "ANNOTATION_UPDATED", "START_TRAINING",
                                              "PROJECT_UPDATED"]},
        "project": {"type": "object", "properties": {"id": {"type": "integer"}}},
    }},
    "/train": {"type": "object", "properties": {"project": {"type": "string"}}},
}


def request_body(path: str) -> dict:
    """openapi_extra for a route: its JSON request body."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": BODIES[path]}}}}
