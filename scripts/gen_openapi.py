"""Generate gateway/openapi.json, the OpenAPI 3 document of the HTTP/JSON door,
from the protos: paths from the google.api.http rules (the very bindings the
gateway serves, gateway.transcoding.bindings), schemas from the messages in
their proto3 JSON form, descriptions from the proto comments.

Run with `make protos` (after the stubs); tests/test_contracts.py fails when
the committed document is stale.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from gen_docs import first_sentence  # noqa: E402
from gen_protos import descriptor_set  # noqa: E402
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor  # noqa: E402

from automl import __version__  # noqa: E402
from automl.v1 import automl_service_pb2  # noqa: E402
from gateway.transcoding import Binding, bindings  # noqa: E402

OUTPUT = ROOT / "gateway" / "openapi.json"
SERVICE = automl_service_pb2.DESCRIPTOR.services_by_name["AutoML"]
DOWNLOAD_TYPES = (
    "text/csv",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/x-ndjson",
    "application/octet-stream",
)
INT32 = {
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_SFIXED32,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_FIXED32,
}
INT64 = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_SFIXED64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_FIXED64,
}
# The proto3 JSON forms of the well-known types.
WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$", "example": "60s"},
    "google.protobuf.FieldMask": {"type": "string", "description": "Comma-separated field paths."},
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.Value": {},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "additionalProperties": True,
    },
}


def comments() -> dict[str, str]:
    """Leading comments of the automl.v1 protos, by full name of what they document."""
    out: dict[str, str] = {}

    def text(loc: Any) -> str:
        return " ".join(line.strip() for line in loc.leading_comments.strip().splitlines())

    def walk_message(by_path: dict[tuple[int, ...], str], message: Any, prefix: str, path: tuple[int, ...]) -> None:
        name = f"{prefix}.{message.name}"
        out[name] = by_path.get(path, "")
        for i, field in enumerate(message.field):
            out[f"{name}.{field.name}"] = by_path.get((*path, 2, i), "")
        for i, nested in enumerate(message.nested_type):
            walk_message(by_path, nested, name, (*path, 3, i))
        for i, enum in enumerate(message.enum_type):
            out[f"{name}.{enum.name}"] = by_path.get((*path, 4, i), "")

    for file in descriptor_set().file:
        by_path = {tuple(loc.path): text(loc) for loc in file.source_code_info.location if loc.leading_comments}
        for i, message in enumerate(file.message_type):
            walk_message(by_path, message, file.package, (4, i))
        for i, enum in enumerate(file.enum_type):
            out[f"{file.package}.{enum.name}"] = by_path.get((5, i), "")
        for s, service in enumerate(file.service):
            for m, method in enumerate(service.method):
                out[f"{file.package}.{service.name}.{method.name}"] = by_path.get((6, s, 2, m), "")
    return out


class Builder:
    def __init__(self) -> None:
        self.docs = comments()
        self.schemas: dict[str, Any] = {}

    def ref(self, message: Descriptor) -> dict[str, Any]:
        if message.full_name in WELL_KNOWN:
            return dict(WELL_KNOWN[message.full_name])
        if message.full_name not in self.schemas:
            self.schemas[message.full_name] = {}  # placeholder against recursion
            self.schemas[message.full_name] = self.message(message)
        return {"$ref": f"#/components/schemas/{message.full_name}"}

    def enum(self, enum: EnumDescriptor) -> dict[str, Any]:
        if enum.full_name not in self.schemas:
            self.schemas[enum.full_name] = {
                "type": "string",
                "enum": [v.name for v in enum.values],
                "description": self.docs.get(enum.full_name, ""),
            }
        return {"$ref": f"#/components/schemas/{enum.full_name}"}

    def message(self, message: Descriptor) -> dict[str, Any]:
        properties = {f.json_name: self.field(f) for f in message.fields}
        return {"type": "object", "description": self.docs.get(message.full_name, ""), "properties": properties}

    def value(self, field: FieldDescriptor) -> dict[str, Any]:
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            return self.ref(field.message_type)
        if field.type == FieldDescriptor.TYPE_ENUM:
            return self.enum(field.enum_type)
        if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            return {"type": "number"}
        if field.type in INT32:
            return {"type": "integer", "format": "int32"}
        if field.type in INT64:  # proto3 JSON writes 64-bit integers as strings
            return {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"}
        if field.type == FieldDescriptor.TYPE_BOOL:
            return {"type": "boolean"}
        if field.type == FieldDescriptor.TYPE_BYTES:
            return {"type": "string", "format": "byte"}
        return {"type": "string"}

    def field(self, field: FieldDescriptor) -> dict[str, Any]:
        doc = self.docs.get(field.full_name, "")
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            schema = {"type": "object", "additionalProperties": self.value(field.message_type.fields_by_name["value"])}
        elif field.is_repeated:
            schema = {"type": "array", "items": self.value(field)}
        else:
            schema = self.value(field)
        if "$ref" in schema:  # OpenAPI 3.0 ignores siblings of $ref
            return {"allOf": [schema], "description": doc}
        return {**schema, "description": doc} if doc else schema

    def query_parameters(self, message: Descriptor, skip: set[str], prefix: str = "") -> list[dict[str, Any]]:
        """Scalar fields (and one level of nested messages) as query parameters."""
        out = []
        for field in message.fields:
            name = prefix + field.name
            if name in skip:
                continue
            wkt = field.message_type is not None and field.message_type.full_name in WELL_KNOWN
            if field.type == FieldDescriptor.TYPE_MESSAGE and not wkt:
                if not prefix and not field.is_repeated:
                    out += self.query_parameters(field.message_type, skip, f"{name}.")
                continue
            schema = self.field(field)
            out.append(
                {
                    "name": name,
                    "in": "query",
                    "required": False,
                    "schema": {k: v for k, v in schema.items() if k != "description"},
                    "description": self.docs.get(field.full_name, ""),
                    **({"style": "form", "explode": True} if schema.get("type") == "array" else {}),
                }
            )
        return out


def openapi_path(binding: Binding) -> tuple[str, list[dict[str, Any]]]:
    """ "/v1/{name=runs/*}:watch" -> ("/v1/runs/{runsId}:watch", [that path parameter])."""
    parameters = []

    def replace(match: re.Match[str]) -> str:
        field, pattern = match.group(1), match.group(2) or "*"
        segments = pattern.split("/")
        collection = segments[0] if len(segments) == 2 else field.split(".")[-1]
        param = f"{collection}Id"
        parameters.append(
            {
                "name": param,
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$"},
                "description": f"The id in the `{field}` field: {pattern.replace('*', '{' + param + '}')}.",
            }
        )
        return "/".join([*segments[:-1], "{" + param + "}"])

    return re.sub(r"\{([\w.]+)(?:=([^}]+))?\}", replace, binding.template), parameters


def operation(builder: Builder, binding: Binding, path_parameters: list[dict[str, Any]]) -> dict[str, Any]:
    method = binding.method
    doc = builder.docs.get(method.full_name, "")
    bound = {v for v in binding.variables.values()}
    op: dict[str, Any] = {
        "operationId": method.name + ("" if binding.verb != "PUT" else "Put"),
        "summary": first_sentence(doc),
        "description": doc,
        "tags": [tag(method.name)],
        "parameters": list(path_parameters),
        "responses": {"default": {"description": "An error.", "content": json_content(ERROR_REF)}},
    }
    kind = binding.kind
    if kind in ("upload", "bidi_upload"):
        header = next(f for f in method.input_type.oneofs[0].fields if f.type == FieldDescriptor.TYPE_MESSAGE)
        skip = {v.removeprefix(header.name + ".") for v in bound}
        op["parameters"] += builder.query_parameters(header.message_type, skip)
        op["requestBody"] = {
            "required": True,
            "description": "The file's bytes (a CSV file with its header row).",
            "content": {
                t: {"schema": {"type": "string", "format": "binary"}} for t in ("text/csv", "application/octet-stream")
            },
        }
    elif binding.body == "*":
        op["requestBody"] = {"required": False, "content": json_content(builder.ref(method.input_type))}
    elif binding.body:
        field = method.input_type.fields_by_name[binding.body]
        op["requestBody"] = {"required": True, "content": json_content(builder.ref(field.message_type))}
        op["parameters"] += builder.query_parameters(method.input_type, bound | {binding.body})
    else:
        op["parameters"] += builder.query_parameters(method.input_type, bound)
    output = builder.ref(method.output_type)
    if kind == "download":
        op["responses"]["200"] = {
            "description": "The file (Content-Disposition names it).",
            "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in DOWNLOAD_TYPES},
        }
    elif kind in ("server_stream", "bidi_upload"):
        op["responses"]["200"] = {
            "description": "A stream: one JSON message per line, or server-sent events with "
            "`Accept: text/event-stream` (each event's id resumes the stream as Last-Event-ID).",
            "content": {
                "application/x-ndjson": {"schema": output},
                "text/event-stream": {"schema": {"type": "string"}},
            },
        }
    else:
        op["responses"]["200"] = {"description": "OK.", "content": json_content(output)}
    if binding.verb == "GET" and kind == "unary":
        op["responses"]["304"] = {"description": "Not modified (If-None-Match matched the ETag)."}
    return op


def tag(method: str) -> str:
    for word, name in (
        ("Dataset", "Datasets"),
        ("Experiment", "Experiments"),
        ("Subscri", "Subscriptions"),
        ("Model", "Models"),
        ("Leaderboard", "Runs"),
        ("Export", "Runs"),
        ("Predict", "Models"),
    ):
        if word in method:
            return name
    return "Runs"


def json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
ERROR_SCHEMAS = {
    "ErrorResponse": {
        "type": "object",
        "description": "An error: the google.rpc.Status of the call.",
        "properties": {"error": {"$ref": "#/components/schemas/google.rpc.Status"}},
    },
    "google.rpc.Status": {
        "type": "object",
        "properties": {
            "code": {"type": "integer", "description": "The gRPC status code (3: INVALID_ARGUMENT, 5: NOT_FOUND...)."},
            "message": {"type": "string", "description": "What went wrong, for a person."},
            "details": {
                "type": "array",
                "description": "Rich details: google.rpc.BadRequest (fieldViolations), google.rpc.RequestInfo.",
                "items": WELL_KNOWN["google.protobuf.Any"],
            },
        },
    },
}


def document() -> dict[str, Any]:
    builder = Builder()
    paths: dict[str, dict[str, Any]] = {}
    for binding in bindings(SERVICE):
        path, parameters = openapi_path(binding)
        paths.setdefault(path, {})[binding.verb.lower()] = operation(builder, binding, parameters)
    builder.schemas.update(ERROR_SCHEMAS)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "AutoML service suite: HTTP/JSON API",
            "version": __version__,
            "description": builder.docs.get("automl.v1.AutoML", "")
            or "The public automl.v1.AutoML service over HTTP/JSON, transcoded from its protos.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "An API key."}},
            "schemas": dict(sorted(builder.schemas.items())),
        },
    }


def render() -> str:
    return json.dumps(document(), indent=1, sort_keys=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if gateway/openapi.json is stale")
    args = parser.parse_args()
    fresh = render()
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != fresh:
            print("gateway/openapi.json is stale: run `make protos`", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(fresh)
    print(f"wrote {OUTPUT.relative_to(ROOT)} ({len(fresh) // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
