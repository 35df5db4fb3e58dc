"""The OpenAPI 3.1 description of the telemetry API, served at ``/openapi.json``.

Written by hand from the same constants the handlers use, so that limits shown here are the
ones enforced; a test checks that every documented path answers.
"""

from __future__ import annotations

from typing import Any

from ._config import ServerConfig
from ._query import MAX_DAYS

__all__ = ["openapi_document"]

_NAME = {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_.:-]{0,63}$"}
_TEXT = {"type": "string", "minLength": 1, "maxLength": 2048}
_MS = {"type": ["number", "null"], "description": "milliseconds"}


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def openapi_document(config: ServerConfig) -> dict[str, Any]:
    """The API description for a server with ``config`` (its limits are in it)."""
    event = {
        "type": "object",
        "additionalProperties": False,
        "required": ["type"],
        "properties": {
            "type": {
                **_NAME,
                "description": "page_view, action, error, api_call, "
                "session_start, session_end, or another event name",
            },
            "id": {"type": "string", "format": "uuid", "description": "idempotency key"},
            "timestamp": {
                "type": "string",
                "format": "date-time",
                "description": "with a time zone; within the last 30 days",
            },
            "page": {**_TEXT, "description": "path or URL; stored anonymised"},
            "action": {**_NAME, "description": "required for action events"},
            "endpoint": {**_TEXT, "description": "required for api_call events; anonymised"},
            "status": {"type": "integer", "minimum": 100, "maximum": 599},
            "duration": {
                "type": "number",
                "minimum": 0,
                "maximum": 1e9,
                "description": "milliseconds",
            },
            "sessionId": {
                "type": "string",
                "minLength": 1,
                "maxLength": 128,
                "description": "random per session; stored as a keyed pseudonym",
            },
            "platform": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,32}$"},
            "deployment": _NAME,
            "metadata": {
                "type": "object",
                "maxProperties": 32,
                "additionalProperties": {"type": ["number", "boolean"]},
            },
            "error": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"name": _NAME, "message": {"type": "string", "maxLength": 1000}},
            },
            "user": {
                "type": "string",
                "maxLength": 256,
                "description": "stored only as a keyed pseudonym",
            },
        },
    }
    aggregate = {
        "type": "object",
        "properties": {
            "date": {"type": "string", "format": "date"},
            "type": {"type": "string"},
            "context": {"type": ["string", "null"]},
            "count": {"type": "integer"},
            "errors": {"type": "integer"},
            "errorRate": {"type": "number", "description": "percent of count"},
            "avgDuration": _MS,
            "p50Duration": _MS,
            "p95Duration": _MS,
            "p99Duration": _MS,
        },
    }
    period_params = [
        {
            "name": "days",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_DAYS, "default": 7},
        },
        {
            "name": "type",
            "in": "query",
            "schema": _NAME,
            "description": "keep only aggregates of this event type",
        },
    ]
    admin: list[dict[str, list[str]]] = [{"adminToken": []}, {"adminSession": []}]
    unauthorized = _error_response("no valid admin token or session")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "brickrun telemetry API",
            "version": "1",
            "description": "Privacy-filtered product telemetry: ingest events, read aggregates.",
        },
        "paths": {
            "/api/telemetry": {
                "post": {
                    "summary": "Record one event or a batch",
                    "description": (
                        f"At most {config.max_body_bytes} bytes and {config.max_batch} events "
                        "per request; the whole request is validated before anything is "
                        "stored; events are privacy-filtered before storing; a repeated id "
                        "is stored once. The token may also be sent as ?token= (for "
                        "navigator.sendBeacon); text/plain bodies are read as JSON."
                    ),
                    "security": [{"ingestToken": []}],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        {"$ref": "#/components/schemas/Event"},
                                        {
                                            "type": "array",
                                            "minItems": 1,
                                            "maxItems": config.max_batch,
                                            "items": {"$ref": "#/components/schemas/Event"},
                                        },
                                    ]
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "stored (recorded is false when tracking is off)",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {
                                            "success": {"type": "boolean"},
                                            "accepted": {"type": "integer"},
                                            "recorded": {"type": "boolean"},
                                        },
                                    }
                                }
                            },
                        },
                        "400": _error_response("malformed JSON or an invalid field (named)"),
                        "401": _error_response("missing, unknown or revoked token"),
                        "403": _error_response("not an ingest token, or origin not allowed"),
                        "413": _error_response(
                            "body or batch too large, or an event over the record limit"
                        ),
                        "429": _error_response(
                            "over the token's events per second; see Retry-After"
                        ),
                        "503": _error_response("the store failed; retry (ids make it safe)"),
                    },
                },
                "get": {
                    "summary": "Summary and daily aggregates for a period",
                    "security": admin,
                    "parameters": period_params,
                    "responses": {
                        "200": {
                            "description": "the seed's {summary, aggregates, period}",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["summary", "aggregates", "period"],
                                        "properties": {
                                            "summary": {"$ref": "#/components/schemas/Summary"},
                                            "aggregates": {"type": "array", "items": aggregate},
                                            "period": {"$ref": "#/components/schemas/Period"},
                                        },
                                    }
                                }
                            },
                        },
                        "400": _error_response("invalid days or type (named)"),
                        "401": unauthorized,
                    },
                },
            },
            "/api/telemetry/report": {
                "get": {
                    "summary": "Dashboard breakdowns: top pages, endpoints, errors, daily, "
                    "deployments",
                    "security": admin,
                    "parameters": period_params[:1],
                    "responses": {
                        "200": {
                            "description": "the report",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "400": _error_response("invalid days"),
                        "401": unauthorized,
                    },
                }
            },
            "/admin/login": {
                "get": {
                    "summary": "Admin sign-in page",
                    "responses": {"200": {"description": "HTML"}},
                },
                "post": {
                    "summary": "Sign in with an admin token (form field token)",
                    "responses": {
                        "303": {"description": "signed in"},
                        "401": {"description": "not an active admin token"},
                    },
                },
            },
            "/admin/telemetry": {
                "get": {
                    "summary": "The dashboard (signed in) or a redirect to sign in",
                    "responses": {
                        "200": {"description": "HTML"},
                        "303": {"description": "sign in first"},
                    },
                },
            },
            "/static/brickrun.js": {
                "get": {
                    "summary": "The browser client",
                    "responses": {"200": {"description": "JavaScript"}},
                },
            },
            "/healthz": {
                "get": {"summary": "Liveness", "responses": {"200": {"description": "ok"}}}
            },
        },
        "components": {
            "schemas": {
                "Event": event,
                "Summary": {
                    "type": "object",
                    "properties": {
                        "pageViews": {"type": "integer"},
                        "actions": {"type": "integer"},
                        "errors": {"type": "integer"},
                        "apiCalls": {"type": "integer"},
                        "sessions": {"type": "integer"},
                        "avgApiLatency": _MS,
                        "errorRate": {
                            "type": ["number", "null"],
                            "description": "errors per 100 actions",
                        },
                        "avgSessionLength": _MS,
                    },
                },
                "Period": {
                    "type": "object",
                    "properties": {
                        "days": {"type": "integer"},
                        "startDate": {"type": "string", "format": "date-time"},
                        "endDate": {"type": "string", "format": "date-time"},
                    },
                },
                "Error": {
                    "type": "object",
                    "properties": {
                        "error": {
                            "type": "object",
                            "properties": {
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                                "field": {
                                    "type": "string",
                                    "description": "where, e.g. [3].duration",
                                },
                            },
                        }
                    },
                },
            },
            "securitySchemes": {
                "ingestToken": {"type": "http", "scheme": "bearer"},
                "adminToken": {"type": "http", "scheme": "bearer"},
                "adminSession": {"type": "apiKey", "in": "cookie", "name": "brickrun_admin"},
            },
        },
    }
