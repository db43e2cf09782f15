"""Fuzzing the public API (issue 21): Hypothesis strategies built from the
proto descriptors, and the harness that sends what they make to a real
gateway over gRPC and over HTTP/JSON and judges the answers.

Used by tests/test_fuzz.py (a few hundred examples per RPC, in `make test`)
and bench/fuzz.py (10,000 per RPC and transport, with a report).

What is generated
-----------------
Any message type, recursively from its descriptor (`messages()`): every
field may be unset; scalars lean on edge values (empty, huge, unicode,
NUL, right-to-left marks, negative, int32/int64 extremes, NaN and
infinities for floats); enums take known and unknown numbers; repeated
fields take a few elements or a great many copies of one; one member of
each oneof at most; nested messages down to a depth bound; the well-known
types (Timestamp, Duration, FieldMask, Struct/Value/ListValue) with valid
and out-of-range values. Fields are recognised from the descriptors:

- resource names (the collection from the HTTP rule's path template, or the
  field's name: `dataset` -> datasets/..., `model_result` -> modelResults/...)
  are names of resources that exist (`Pool`), well-formed names of none,
  names of the wrong collection, and garbage;
- bytes fields (`chunk`, `csv`, `csv_chunk`) are CSV files (`csv_bytes()`):
  random bytes, ragged rows, huge or odd headers, BOMs, quotes, mixed
  encodings, files past the 256 KiB inline limit (stored as blobs) with a
  defect at the end; bounded sizes;
- client streams (uploads, PredictStream) are message sequences: a header
  (or not, or two), the file cut anywhere, records, mixes.

Each request comes in one of three modes, in equal shares: WILD (all of the
above), PLAUSIBLE (what a careful client sends: existing names, short
words, small numbers, sane CSV options, well-formed CSV of the pool's
columns), and MIXED (plausible fields with a wild one here and there), so
that requests also pass the gateway's checks and reach the services behind
it. HTTP calls (`as_http()`) are the same requests under each method's
google.api.http rule, now and then with what only HTTP can get wrong (JSON
of the wrong type, unknown keys, a body that is not JSON, odd headers).

No generated value makes the suite send traffic outside the loopback range:
webhook URLs come from a fixed list of loopback and malformed targets, and
every other generated text has "://" broken up.

What is judged (`Target.exercise`)
----------------------------------
A server error is a gRPC INTERNAL or UNKNOWN, an HTTP status >= 500, or an
error frame with code INTERNAL or UNKNOWN inside a streamed HTTP answer.

"Left by a refused request" is defined per call: a call answered with an
error (any non-OK gRPC status, HTTP >= 400) must leave no new row in the
tables of the resources a request creates (datasets, experiments, runs,
trained_models, subscriptions), with the two records the contract keeps on
purpose: a refused StartRun may leave its run ended (FAILED or CANCELLED,
with the reason), a refused TrainModel its model FAILED with the reason.
Contents and blobs are also written in the background (the runner's
artifacts), so they are judged at the end (`orphans()`): every file in the
blob folder is some contents row's blob, no temporary file is left, every
contents row is a dataset's or an artifact's and has its blob.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import json
import math
import re
import sqlite3
import string
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from automl.v1 import (
    automl_service_pb2,
    automl_service_pb2_grpc,
    common_pb2,
    dataset_pb2,
    event_pb2,
    experiment_pb2,
    model_pb2,
    run_pb2,
)
from gateway.transcoding import Binding, bindings

SERVICE = automl_service_pb2.DESCRIPTOR.services_by_name["AutoML"]
BINDINGS: dict[str, Binding] = {}
for _binding in bindings(SERVICE):
    BINDINGS.setdefault(_binding.method.name, _binding)  # the first rule of each method (uploads: POST)
METHODS: list[str] = [m.name for m in SERVICE.methods]

MAX_DEPTH = 4
WILD, MIXED, PLAUSIBLE = "wild", "mixed", "plausible"
MODES = (PLAUSIBLE, MIXED, WILD)
MAX_URL = 32 * 1024
INLINE_MAX = 256 * 1024
SERVER_ERRORS = {"INTERNAL", "UNKNOWN"}
STORAGE_GOAL_MB = 200  # storage's peak resident memory, whatever it is sent
FUZZ_ENV = {
    # Subscribe's first message (a heartbeat when there is nothing to replay)
    # comes at once: an HTTP stream answers its status only with it.
    "AUTOML_HEARTBEAT_SECONDS": "0.5",
}
RPC_CODES = {code.value[0]: code.name for code in grpc.StatusCode}

# ------------------------------------------------------------------ the pool


@dataclass(frozen=True)
class Pool:
    """Resources that exist, for valid-looking names: collection -> names.
    `spare` holds the ones the Delete methods may take (so that the others
    live through the whole run)."""

    names: tuple[tuple[str, tuple[str, ...]], ...] = ()
    spare: tuple[tuple[str, tuple[str, ...]], ...] = ()
    tokens: tuple[str, ...] = ()
    page_tokens: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()

    def of(self, collection: str, method: str = "") -> tuple[str, ...]:
        """Names of `collection` for `method`'s requests."""
        table = self.spare if DESTRUCTIVE.get(method) == collection else self.names
        return dict(table).get(collection, ())

    @property
    def every_name(self) -> tuple[str, ...]:
        return tuple(n for _, names in self.names for n in names)


# Methods whose valid names come from Pool.spare: they delete what they name.
DESTRUCTIVE = {"DeleteDataset": "datasets", "DeleteExperiment": "experiments", "DeleteSubscription": "subscriptions"}

# Field names that hold a resource name, when the HTTP rule does not say.
NAME_FIELDS = {
    "dataset": "datasets",
    "experiment": "experiments",
    "run": "runs",
    "model_result": "modelResults",
    "best_model_result": "modelResults",
    "trained_model": "trainedModels",
}
# Resource messages: their `name` field.
RESOURCE_MESSAGES = {
    "automl.v1.Dataset": "datasets",
    "automl.v1.Experiment": "experiments",
    "automl.v1.Run": "runs",
    "automl.v1.ModelResult": "modelResults",
    "automl.v1.TrainedModel": "trainedModels",
    "automl.v1.Subscription": "subscriptions",
}


@functools.cache
def _rule_names() -> dict[tuple[str, str], str]:
    """(message, field) -> collection, from the path templates of the HTTP rules:
    `/v1/{header.name=trainedModels/*}:predictStream` -> (PredictStreamHeader, name)."""
    out = {}
    for binding in bindings(SERVICE):
        for match in re.finditer(r"\{([\w.]+)=([\w]+)/\*\}", binding.template):
            path, collection = match.group(1).split("."), match.group(2)
            message = binding.method.input_type
            for part in path[:-1]:
                message = message.fields_by_name[part].message_type
            out[(message.full_name, path[-1])] = collection
    return out


def collection_of(message: Descriptor, f: FieldDescriptor) -> str | None:
    """The collection a string field names, if it holds a resource name."""
    if f.type != FieldDescriptor.TYPE_STRING:
        return None
    if found := _rule_names().get((message.full_name, f.name)):
        return found
    if f.name == "name":
        return RESOURCE_MESSAGES.get(message.full_name)
    return NAME_FIELDS.get(f.name)


# ------------------------------------------------------------------ scalars

INT32_EDGES = [0, 1, -1, 2, 3, 5, 19, 20, 21, 50, 63, 64, 65, 100, 999, 1000, 1001, 10_000, 2**31 - 1, -(2**31)]
INT64_EDGES = [*INT32_EDGES, 2**31, 2**53 + 1, 2**63 - 1, -(2**63), 10**12]
FLOAT_EDGES = [0.0, -0.0, 0.5, 0.5000001, 1.0, -1.0, 1e-310, 1.7976931348623157e308, math.nan, math.inf, -math.inf]
ODD_STRINGS = [
    "",
    " ",
    "\x00",
    "\t\r\n",
    "é",
    "数据.csv",
    "🙂",
    "\u202eevil",
    "a\u0301",
    "'; DROP TABLE datasets; --",
    '"quoted"',
    "\\",
    "../../etc/passwd",
    "%00%2F",
    "=cmd|' /C calc'!A0",
    "null",
    "NaN",
    "*",
    "a/b:c",
    "\ufeffbom",
    "\U0010ffff",
]
LONG_SIZES = [255, 256, 257, 1023, 1024, 1025, 4096, 4097, 65_536]


def _no_url(text: str) -> str:
    """No generated text is a URL to anywhere: the suite must never be led to
    send traffic outside loopback, even when the code under test is wrong."""
    return text.replace("://", ":/ /").replace("\\\\", "\\ \\")


def texts(max_size: int = 40) -> st.SearchStrategy[str]:
    """Text with edge values: empty, odd characters, long runs around the limits."""
    return st.one_of(
        st.sampled_from(ODD_STRINGS),
        st.text(max_size=max_size),
        st.text(alphabet=string.printable, max_size=max_size),
        st.builds(
            lambda c, n: c * n, st.sampled_from(["a", "é", "数", "🙂", " ", "\x00"]), st.sampled_from(LONG_SIZES)
        ),
    ).map(_no_url)


def int_values(bits: int, unsigned: bool = False) -> st.SearchStrategy[int]:
    low, high = (0, 2**bits - 1) if unsigned else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    edges = [v for v in (INT32_EDGES if bits == 32 else INT64_EDGES) if low <= v <= high]
    return st.one_of(st.sampled_from(edges), st.integers(-5, 100).filter(lambda v: low <= v), st.integers(low, high))


def float_values(width: int = 64) -> st.SearchStrategy[float]:
    edges = FLOAT_EDGES if width == 64 else [v for v in FLOAT_EDGES if not math.isfinite(v) or abs(v) < 3e38]
    return st.one_of(
        st.sampled_from(edges),
        st.floats(-2.0, 2.0),
        st.floats(allow_nan=True, allow_infinity=True, width=width),
    )


def enum_values(f: FieldDescriptor) -> st.SearchStrategy[int]:
    known = [v.number for v in f.enum_type.values]
    return st.one_of(st.sampled_from(known), st.sampled_from([-1, max(known) + 1, 999, 2**31 - 1, -(2**31)]))


def resource_names(collection: str, pool: Pool, method: str) -> st.SearchStrategy[str]:
    """Names that exist, well-formed names of nothing, wrong collections, garbage."""
    ident = st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}", fullmatch=True)
    options: list[st.SearchStrategy[str]] = [
        st.builds(lambda i: f"{collection}/{i}", ident),
        st.builds(lambda i: f"{collection}/{i}", texts(20)),
        st.sampled_from(
            [
                f"{collection}/",
                collection,
                f"{collection}/a/b",
                f"{collection}/-",
                f"{collection}/{'a' * 63}",
                f"{collection}/{'a' * 64}",
                f"/{collection}/abc",
                f"{collection.upper()}/abc",
            ]
        ),
        texts(),
    ]
    if existing := pool.of(collection, method):
        existing_st = st.sampled_from(existing)
        options = [existing_st, existing_st, *options]
        options.append(existing_st.map(lambda n: n + "x"))
        options.append(existing_st.map(lambda n: n.upper()))
    if others := tuple(n for n in pool.every_name if not n.startswith(f"{collection}/")):
        options.append(st.sampled_from(others))  # another collection's resource
    return st.one_of(*options)


# A webhook target is only ever on loopback or malformed: no test or benchmark
# sends traffic outside 127.0.0.0/8 and ::1 (the notifier refuses these anyway).
WEBHOOK_URLS = [
    "",
    "http://127.0.0.1:1/hook",
    "http://127.0.0.1/",
    "https://127.0.0.1:50052/x",
    "http://[::1]:9/",
    "http://[::ffff:127.0.0.1]/",
    "http://2130706433/",
    "http://0x7f.0.0.1/",
    "http://127.1/",
    "ftp://127.0.0.1/",
    "file:///etc/passwd",
    "gopher://127.0.0.1:70/",
    "http://",
    "http:// 127.0.0.1/",
    "http://127.0.0.1:99999/",
    "http://127.0.0.1/" + "a" * 2100,
    "javascript:alert(1)",
    "not a url",
]


def column_names(pool: Pool) -> st.SearchStrategy[str]:
    if pool.columns:
        return st.one_of(st.sampled_from(pool.columns), st.sampled_from(pool.columns), texts())
    return texts()


CODECS = [
    "",
    "utf-8",
    "UTF8",
    "utf-8-sig",
    "latin-1",
    "cp1252",
    "utf-16",
    "utf-16-le",
    "utf-32",
    "ascii",
    "shift_jis",
    "rot13",
    "base64",
    "hex",
    "zlib",
    "bz2",
    "uu",
    "idna",
    "punycode",
    "unicode_escape",
    "raw_unicode_escape",
    "undefined",
    "mbcs",
    "no-such-codec",
    "utf-8\x00",
    "../utf-8",
]
ONE_CHAR = [",", ";", "\t", "|", '"', "'", "\n", "\r", "", "ab", "\x00", "é", "🙂", " ", "\\"]
FAMILIES = [
    "RandomForest",
    "LGBM",
    "ExtraTrees",
    "Linear",
    "RandomForestClassifier",
    "LGBMClassifier",
    "LogisticRegression",
    "Ridge",
    "SVC",
    "KNeighborsClassifier",
]
EXPERIMENT_PATHS = [
    "display_name",
    "description",
    "default_stop_conditions",
    "default_stop_conditions.max_models",
    "displayName",
    "name",
    "dataset",
    "target_column",
    "task",
    "cv_folds",
    "seed",
    "*",
    "",
]


def field_override(
    message: Descriptor, f: FieldDescriptor, pool: Pool, method: str, mode: str = WILD
) -> st.SearchStrategy | None:
    """The strategy of a field whose meaning the descriptor tells (a name, a
    file, a codec...); None for the generic one of its type."""
    if mode == PLAUSIBLE:
        return _plausible_override(message, f, pool, method)
    if collection := collection_of(message, f):
        return resource_names(collection, pool, method)
    name = f.name
    if f.type == FieldDescriptor.TYPE_BYTES and name in ("chunk", "csv", "csv_chunk"):
        return csv_bytes(pool.columns)
    if name == "token":
        return st.one_of(st.sampled_from(pool.tokens or ("",)), st.builds(lambda t: "sub_" + t, texts(64)), texts())
    if name == "page_token":
        return st.one_of(
            st.sampled_from(pool.page_tokens or ("",)),
            texts(),
            st.binary(max_size=40).map(lambda b: base64.urlsafe_b64encode(b).decode()),
        )
    if name == "webhook_url":
        return st.sampled_from(WEBHOOK_URLS)
    if name in ("target_column", "excluded_columns"):
        return column_names(pool)
    if name == "allowed_model_families":
        return st.one_of(st.sampled_from(FAMILIES), texts())
    if name == "encoding":
        return st.one_of(st.sampled_from(CODECS), texts(10))
    if name in ("delimiter", "quote_char"):
        return st.one_of(st.sampled_from(ONE_CHAR), texts(3))
    if name == "expected_sha256":
        return st.one_of(st.just(""), st.from_regex(r"[0-9a-f]{64}", fullmatch=True), texts(70))
    if name == "experiment_id":
        existing = tuple(n.split("/", 1)[1] for n in pool.of("experiments"))
        return st.one_of(
            st.from_regex(r"[a-z][a-z0-9-]{2,61}[a-z0-9]", fullmatch=True),
            st.sampled_from(existing or ("abcd",)),
            texts(70),
        )
    if name == "filter":
        return st.one_of(st.builds(lambda t: f'display_name:"{t}"', texts(20)), texts())
    return None


def _plausible_override(message: Descriptor, f: FieldDescriptor, pool: Pool, method: str) -> st.SearchStrategy | None:
    """Values a careful client would send."""
    if collection := collection_of(message, f):
        existing = pool.of(collection, method)
        made_up = st.from_regex(r"[0-9a-f]{16}", fullmatch=True).map(lambda i: f"{collection}/{i}")
        return st.one_of(st.sampled_from(existing), st.sampled_from(existing), made_up) if existing else made_up
    name = f.name
    if f.type == FieldDescriptor.TYPE_BYTES and name in ("chunk", "csv", "csv_chunk"):
        return plausible_csv(pool.columns)
    choices = {
        "token": pool.tokens or ("",),
        "page_token": ("", *pool.page_tokens),
        "webhook_url": ("",),
        "target_column": pool.columns or ("target",),
        "excluded_columns": pool.columns or ("a",),
        "allowed_model_families": tuple(FAMILIES[:4]),
        "encoding": ("", "utf-8", "latin-1", "utf-8-sig"),
        "delimiter": ("", ",", ";", "\t"),
        "quote_char": ("", '"', "'"),
        "expected_sha256": ("",),
        "na_values": ("NA", "?", "", "-"),
        "filter": ("", 'display_name:"iris"', 'display_name:"x"', "task=TASK_CLASSIFICATION"),
    }
    if name in choices:
        return st.sampled_from(choices[name])
    if name == "experiment_id":
        return st.one_of(st.just(""), st.from_regex(r"[a-z][a-z0-9-]{2,20}[a-z0-9]", fullmatch=True))
    return None


# ------------------------------------------------------------------ messages


def _json_values(depth: int = 3) -> st.SearchStrategy[Any]:
    """JSON-like values for Struct and for the HTTP body mutations."""
    leaves = st.one_of(st.none(), st.booleans(), float_values(), int_values(64), texts(20))
    return st.recursive(
        leaves,
        lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(texts(10), children, max_size=4)),
        max_leaves=12 if depth else 1,
    )


def _well_known(descriptor: Descriptor, pool: Pool, mode: str = WILD) -> st.SearchStrategy[Message] | None:
    from google.protobuf import duration_pb2, empty_pb2, field_mask_pb2, timestamp_pb2

    name = descriptor.full_name
    if mode != WILD and name == "google.protobuf.Duration":
        return st.builds(lambda s: duration_pb2.Duration(seconds=s), st.integers(0, 10))
    if mode != WILD and name == "google.protobuf.FieldMask":
        paths = st.sampled_from(["display_name", "description", "default_stop_conditions"])
        return st.builds(lambda p: field_mask_pb2.FieldMask(paths=p), st.lists(paths, min_size=1, max_size=3))
    if mode != WILD and name == "google.protobuf.Struct":
        values = st.one_of(st.floats(0, 10), st.sampled_from([0.0, 1.0, 5.1, 3.5]))
        return st.dictionaries(st.sampled_from(pool.columns or ("a",)), values, max_size=8).map(_struct)
    if name == "google.protobuf.Duration":
        valid = st.builds(
            lambda s, n: duration_pb2.Duration(seconds=s, nanos=n if s >= 0 else -n),
            st.one_of(st.sampled_from([0, 1, 2, 5, 60, 86_400, 315_576_000_000, -1]), st.integers(-(10**6), 10**6)),
            st.one_of(st.just(0), st.integers(0, 999_999_999)),
        )
        odd = st.builds(
            lambda s, n: duration_pb2.Duration(seconds=s, nanos=n), int_values(64), int_values(32)
        )  # sign mismatch, out of range: refused (gRPC), not representable (JSON)
        return st.one_of(valid, valid, valid, odd)
    if name == "google.protobuf.Timestamp":
        return st.builds(
            lambda s, n: timestamp_pb2.Timestamp(seconds=s, nanos=n),
            st.one_of(st.integers(-62_135_596_800, 253_402_300_799), int_values(64)),
            st.one_of(st.integers(0, 999_999_999), int_values(32)),
        )
    if name == "google.protobuf.FieldMask":
        return st.builds(
            lambda paths: field_mask_pb2.FieldMask(paths=paths),
            st.lists(st.one_of(st.sampled_from(EXPERIMENT_PATHS), texts(20)), max_size=5),
        )
    if name == "google.protobuf.Struct":
        return st.dictionaries(column_names(pool), _json_values(), max_size=8).map(_struct)
    if name == "google.protobuf.ListValue":
        return st.lists(_json_values(), max_size=6).map(_list_value)
    if name == "google.protobuf.Value":
        return _json_values().map(_value)
    if name == "google.protobuf.Empty":
        return st.just(empty_pb2.Empty())
    return None


def _value(v: Any) -> Message:
    from google.protobuf import struct_pb2

    out = struct_pb2.Value()
    if v is None:
        out.null_value = 0
    elif isinstance(v, bool):
        out.bool_value = v
    elif isinstance(v, (int, float)):
        out.number_value = float(v)
    elif isinstance(v, str):
        out.string_value = v
    elif isinstance(v, list):
        out.list_value.CopyFrom(_list_value(v))
    else:
        out.struct_value.CopyFrom(_struct(v))
    return out


def _list_value(values: list[Any]) -> Message:
    from google.protobuf import struct_pb2

    out = struct_pb2.ListValue()
    for v in values:
        out.values.add().CopyFrom(_value(v))
    return out


def _struct(values: dict[str, Any]) -> Message:
    from google.protobuf import struct_pb2

    out = struct_pb2.Struct()
    for k, v in values.items():
        out.fields[k].CopyFrom(_value(v))
    return out


REPEATED_BYTES = 512 * 1024


def _size(value: Any) -> int:
    if isinstance(value, Message):
        return value.ByteSize() + 2
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass")) + 2
    if isinstance(value, bytes):
        return len(value) + 2
    return 8


def _copies(element: Any, count: int) -> list[Any]:
    """`count` copies of `element`, fewer if they would pass REPEATED_BYTES."""
    return [element] * max(1, min(count, REPEATED_BYTES // _size(element)))


def _repeated(element: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    """A few elements, or a great many copies of one (past every limit of the
    API, bounded in bytes)."""
    return st.one_of(
        st.lists(element, max_size=4),
        st.lists(element, max_size=4),
        st.tuples(element, st.sampled_from([101, 1001, 10_001])).map(lambda t: _copies(*t)),
    )


def _plausible_generic(f: FieldDescriptor) -> st.SearchStrategy[Any]:
    t = f.type
    if t == FieldDescriptor.TYPE_STRING:
        return st.one_of(
            st.sampled_from(["x", "iris", "A first try", "données é"]),
            st.from_regex(r"[a-z][a-z0-9 ]{0,15}", fullmatch=True),
        )
    if t == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=8)
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t == FieldDescriptor.TYPE_ENUM:
        return st.sampled_from([v.number for v in f.enum_type.values])
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.one_of(st.sampled_from([0.0, 0.1, 0.2, 0.5, 0.9]), st.floats(0, 1))
    return st.one_of(st.sampled_from([0, 1, 2, 3, 5, 10]), st.integers(0, 20))


def _generic(f: FieldDescriptor, mode: str = WILD) -> st.SearchStrategy[Any]:
    if mode == PLAUSIBLE:
        return _plausible_generic(f)
    t = f.type
    if t == FieldDescriptor.TYPE_STRING:
        return texts()
    if t == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t == FieldDescriptor.TYPE_ENUM:
        return enum_values(f)
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return float_values(64 if t == FieldDescriptor.TYPE_DOUBLE else 32)
    if f.cpp_type == FieldDescriptor.CPPTYPE_INT32:
        return int_values(32)
    if f.cpp_type == FieldDescriptor.CPPTYPE_UINT32:
        return int_values(32, unsigned=True)
    if f.cpp_type == FieldDescriptor.CPPTYPE_INT64:
        return int_values(64)
    if f.cpp_type == FieldDescriptor.CPPTYPE_UINT64:
        return int_values(64, unsigned=True)
    raise TypeError(f"no strategy for {f.full_name}")


def _is_map(f: FieldDescriptor) -> bool:
    return f.type == FieldDescriptor.TYPE_MESSAGE and f.message_type.GetOptions().map_entry


def _real_oneofs(descriptor: Descriptor) -> list[Any]:
    """Oneofs but the synthetic ones of proto3 `optional` fields."""
    return [o for o in descriptor.oneofs if not (len(o.fields) == 1 and o.name == f"_{o.fields[0].name}")]


def field_values(
    message: Descriptor, f: FieldDescriptor, pool: Pool, depth: int, method: str, mode: str = WILD
) -> st.SearchStrategy:
    """The values of one field (a list for a repeated one). MIXED: mostly what
    a careful client sends, now and then a wild value."""
    if mode == MIXED and f.type != FieldDescriptor.TYPE_MESSAGE:
        plausible = field_values(message, f, pool, depth, method, PLAUSIBLE)
        return st.one_of(plausible, plausible, plausible, field_values(message, f, pool, depth, method, WILD))
    if _is_map(f):
        key_field, value_field = f.message_type.fields_by_name["key"], f.message_type.fields_by_name["value"]
        return st.dictionaries(
            _generic(key_field, mode), field_values(f.message_type, value_field, pool, depth, method, mode), max_size=4
        )
    if f.type == FieldDescriptor.TYPE_MESSAGE:
        element = messages(f.message_type, pool, depth + 1, method, mode)
    else:
        override = field_override(message, f, pool, method, mode)
        element = _generic(f, mode) if override is None else override
    if not f.is_repeated:
        return element
    return st.lists(element, max_size=3) if mode == PLAUSIBLE else _repeated(element)


@functools.cache
def messages(
    descriptor: Descriptor, pool: Pool = Pool(), depth: int = 0, method: str = "", mode: str = WILD
) -> st.SearchStrategy:
    """Any message of `descriptor`'s type, built from its descriptor (see the
    module's doc), in one of the modes: PLAUSIBLE (what a careful client
    sends), MIXED (that, with some fields wild), WILD (anything)."""
    if (known := _well_known(descriptor, pool, mode)) is not None:
        return known
    cls = message_factory.GetMessageClass(descriptor)
    in_oneof = {f.name for o in _real_oneofs(descriptor) for f in o.fields}
    deep = depth >= MAX_DEPTH
    optional = {
        f.name: field_values(descriptor, f, pool, depth, method, mode)
        for f in descriptor.fields
        if f.name not in in_oneof and not (deep and f.type == FieldDescriptor.TYPE_MESSAGE)
    }
    choices = [
        st.one_of(
            st.none(),
            *(
                st.tuples(st.just(f.name), field_values(descriptor, f, pool, depth, method, mode))
                for f in o.fields
                if not (deep and f.type == FieldDescriptor.TYPE_MESSAGE)
            ),
        )
        for o in _real_oneofs(descriptor)
    ]
    return st.builds(
        lambda values, picked: _build(cls, values, picked),
        st.fixed_dictionaries({}, optional=optional),
        st.tuples(*choices),
    )


def _build(cls: type[Message], values: dict[str, Any], picked: tuple[Any, ...]) -> Message:
    out = cls()
    for name, value in [*values.items(), *(p for p in picked if p is not None)]:
        f = cls.DESCRIPTOR.fields_by_name[name]
        if _is_map(f):
            target = getattr(out, name)
            for k, v in value.items():
                if f.message_type.fields_by_name["value"].type == FieldDescriptor.TYPE_MESSAGE:
                    target[k].CopyFrom(v)
                else:
                    target[k] = v
        elif f.is_repeated:
            if f.type == FieldDescriptor.TYPE_MESSAGE:
                getattr(out, name).extend(value)
            else:
                getattr(out, name).extend(value)
        elif f.type == FieldDescriptor.TYPE_MESSAGE:
            getattr(out, name).CopyFrom(value)
        else:
            setattr(out, name, value)
    return out


# ------------------------------------------------------------------ CSV files

CELLS = [
    "1",
    "-2.5",
    "1e308",
    "1e999",
    "nan",
    "NA",
    "",
    " ",
    "yes",
    "no",
    "2024-02-30",
    "0x1F",
    "١٢٣",
    "∞",
    "a,b",
    'say "hi"',
    "line\nbreak",
    "\x00",
    "=1+1",
    "true",
    "-0",
    "00012",
    "1_000",
    "é",
]


def _cell(pool_columns: tuple[str, ...]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(CELLS),
        st.sampled_from(["5.1", "3.5", "1.4", "0.2", "6.7", "0", "1", "2"]),  # the pool's iris values
        st.integers(-(10**6), 10**6).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.text(max_size=12),
    )


def _quote(cell: str, style: str) -> str:
    if style == "plain":
        return cell
    if style == "quoted":
        return '"' + cell.replace('"', '""') + '"'
    if style == "unclosed":
        return '"' + cell
    return '"' + cell + '"x'  # text after the closing quote


@st.composite
def structured_csv(draw: Any, pool_columns: tuple[str, ...] = ()) -> bytes:
    """A text CSV with the oddities of real files."""
    delimiter = draw(st.sampled_from([",", ",", ";", "\t", "|", " "]))
    width = draw(st.one_of(st.integers(0, 6), st.sampled_from([1, 2, 5, 12, 60, 300])))
    header_cells = st.one_of(
        st.sampled_from(pool_columns or ("a",)),
        st.sampled_from(["", "a", "a", "target", "Unnamed: 0", "\ufeffid", "x" * 10_000, "名前", "col,umn", 'co"l']),
        st.text(max_size=16),
    )
    if pool_columns and draw(st.booleans()):
        header = list(pool_columns)
    else:
        header = [draw(header_cells) for _ in range(min(width, 12))] + [f"c{i}" for i in range(12, width)]
    rows = []
    for _ in range(draw(st.integers(0, 12))):
        length = len(header) if draw(st.integers(0, 4)) else draw(st.integers(0, len(header) + 3))  # ragged
        rows.append([draw(_cell(pool_columns)) for _ in range(length)])
    styles = draw(st.sampled_from(["plain", "plain", "quoted", "mixed"]))
    newline = draw(st.sampled_from(["\n", "\r\n", "\r", "mixed"]))

    def line(cells: list[str]) -> str:
        out = []
        for c in cells:
            style = styles if styles != "mixed" else draw(st.sampled_from(["plain", "quoted", "unclosed", "trailing"]))
            out.append(_quote(c, style))
        end = newline if newline != "mixed" else draw(st.sampled_from(["\n", "\r\n", "\r"]))
        return delimiter.join(out) + end

    has_header = draw(st.integers(0, 5)) > 0
    text = "".join(line(r) for r in ([header] if has_header else []) + rows)
    if draw(st.booleans()):
        text = text.rstrip("\r\n")  # no final newline
    return draw(_encode(text))


@st.composite
def _encode(draw: Any, text: str) -> bytes:
    """The text in some encoding, with a BOM or stray bytes at times."""
    how = draw(
        st.sampled_from(
            ["utf-8", "utf-8", "utf-8", "utf-8-sig", "utf-16", "utf-16-be", "latin-1", "cp1252", "mixed", "utf-32"]
        )
    )
    if how == "mixed":  # first half UTF-8, second Latin-1: a file pasted together
        half = len(text) // 2
        data = text[:half].encode("utf-8", "replace") + text[half:].encode("latin-1", "replace")
    else:
        data = text.encode(how, "replace")
    if draw(st.integers(0, 5)) == 0:
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from([b"\xff", b"\x00", b"\xc3", b"\xef\xbb\xbf", b"\r", b'"'])) + data[at:]
    return data


@st.composite
def big_csv(draw: Any, pool_columns: tuple[str, ...] = ()) -> bytes:
    """A file past the inline limit (so stored as a blob), its defect, if any,
    at the very end: found only once the blob is written."""
    header = ",".join(pool_columns) if pool_columns else "a,b,c,label"
    row = ",".join(["5.1", "3.5", "1.4", "0"][: len(header.split(","))] + ["0"] * (len(header.split(",")) - 4)) + "\n"
    size = draw(st.sampled_from([INLINE_MAX - 100, INLINE_MAX + 1000, 600_000]))
    body = (header + "\n" + row * (size // len(row))).encode()
    tail = draw(
        st.sampled_from(
            [
                b"",
                b"",
                b"1,2\n",
                b"\xff\xfe,1,2,3\n",
                b'"unclosed,1,2,3\n',
                b"\x00\n",
                b"x" * 70_000 + b"\n",
                b",".join([b"9"] * 50) + b"\n",
            ]
        )
    )
    return body + tail


@st.composite
def plausible_csv(draw: Any, pool_columns: tuple[str, ...] = ()) -> bytes:
    """A well-formed file of the pool's columns (or some of them) and numbers."""
    header = list(pool_columns or ("a", "b", "target"))
    if draw(st.booleans()):
        header = draw(st.lists(st.sampled_from(header), min_size=1, max_size=len(header), unique=True))
    rows = draw(st.integers(1, 30))
    values = st.sampled_from(["5.1", "3.5", "1.4", "0.2", "6.7", "0", "1", "2", "4.9", ""])
    lines = [",".join(header)] + [",".join(draw(values) for _ in header) for _ in range(rows)]
    return ("\n".join(lines) + "\n").encode()


@st.composite
def wide_csv(draw: Any) -> bytes:
    """Thousands of columns (a few KB to about a MB): what a column limit must
    refuse before the profile spends memory on each."""
    width = draw(st.sampled_from([1000, 4000, 20_000, 100_000]))
    names = draw(st.sampled_from(["c{}", "a very long column name number {}", "{}"]))
    header = ",".join(names.format(i) for i in range(width))
    row = ",".join(["1"] * width)
    return (header + "\n" + (row + "\n") * draw(st.integers(1, 3))).encode()


def csv_bytes(pool_columns: tuple[str, ...] = ()) -> st.SearchStrategy[bytes]:
    """CSV bytes for uploads and predictions (bounded: at most about 2 MB)."""
    return st.one_of(
        plausible_csv(pool_columns),
        structured_csv(pool_columns),
        structured_csv(pool_columns),
        structured_csv(pool_columns),
        st.binary(max_size=512),
        st.sampled_from([b"", b"\n", b"a\n", b"a,b\n", b"\xef\xbb\xbf", b"\xff\xfe", b'"', b"a,a\n1,2\n"]),
        big_csv(pool_columns),
        wide_csv(),
    )


# ------------------------------------------------------------------ requests


@dataclass(frozen=True)
class Request:
    """One generated call: a message (unary, server stream) or the messages of a
    client stream."""

    method: str
    message: Message | None = None
    stream: tuple[Message, ...] = ()

    def describe(self, limit: int = 600) -> str:
        def short(m: Message) -> str:
            text = json.dumps(_to_json(m), ensure_ascii=True, default=str)
            return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"

        if self.message is not None:
            return short(self.message)
        return "[" + ", ".join(short(m) for m in self.stream[:6]) + (", ..." if len(self.stream) > 6 else "") + "]"


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts}) if data else []
    out, last = [], 0
    for p in [*points, len(data)]:
        if p > last:
            out.append(data[last:p])
            last = p
    return out


@st.composite
def client_streams(draw: Any, method: MethodDescriptor, pool: Pool, mode: str = WILD) -> tuple[Message, ...]:
    """A client stream: a header first (mostly), then the file cut anywhere, or
    other members of the oneof, or both; sometimes no header, or two."""
    descriptor = method.input_type
    cls = message_factory.GetMessageClass(descriptor)
    oneof = _real_oneofs(descriptor)[0]
    header_f = next(f for f in oneof.fields if f.type == FieldDescriptor.TYPE_MESSAGE)
    bytes_f = next(f for f in oneof.fields if f.type == FieldDescriptor.TYPE_BYTES)
    others = [f for f in oneof.fields if f not in (header_f, bytes_f)]
    header = draw(messages(header_f.message_type, pool, 1, method.name, mode))
    data = draw(plausible_csv(pool.columns) if mode == PLAUSIBLE else csv_bytes(pool.columns))
    if "expected_sha256" in header_f.message_type.fields_by_name:
        sha = draw(st.sampled_from(["generated", "right", "right", "wrong"] if mode != PLAUSIBLE else ["", "right"]))
        if sha == "":
            header.expected_sha256 = ""
        elif sha == "right":
            header.expected_sha256 = hashlib.sha256(data).hexdigest()
        elif sha == "wrong":
            header.expected_sha256 = hashlib.sha256(data + b"x").hexdigest()
    chunks = _split(data, draw(st.lists(st.integers(0, 2**20), max_size=6)))
    out = [cls(**{bytes_f.name: c}) for c in chunks]
    for f in others:  # records instead of, or among, the chunks
        if draw(st.integers(0, 2)) == 0:
            extra = draw(st.lists(messages(f.message_type, pool, 1, method.name, mode), min_size=1, max_size=3))
            replace = draw(st.booleans())
            out = ([] if replace else out) + [cls(**{f.name: m}) for m in extra]
    shapes = ["header", "header", "header", "header", "none", "two headers", "empty oneof", "empty"]
    shape = draw(st.sampled_from(shapes if mode == WILD else ["header"]))
    first = cls(**{header_f.name: header})
    if shape == "header":
        out = [first, *out]
    elif shape == "two headers":
        out = [first, *out[:1], first, *out[1:]]
    elif shape == "empty oneof":
        out = [first, cls(), *out]
    elif shape == "empty":
        out = []
    return tuple(out)


def requests(method_name: str, pool: Pool = Pool()) -> st.SearchStrategy[Request]:
    """Generated calls of one method of the public service, in every mode:
    plausible ones reach the services behind the gateway's checks, wild ones
    test the checks."""
    method = SERVICE.methods_by_name[method_name]
    if method.client_streaming:
        return st.one_of(
            *(client_streams(method, pool, mode).map(lambda s: Request(method_name, stream=s)) for mode in MODES)
        )
    return st.one_of(*(messages(method.input_type, pool, 0, method_name, mode) for mode in MODES)).map(
        lambda m: Request(method_name, message=m)
    )


# ------------------------------------------------------------------ HTTP form


def _to_json(message: Message) -> Any:
    """The proto3 JSON form; where a value has none (an out-of-range Duration,
    a NaN in a Struct), a string the server must refuse."""
    try:
        return json_format.MessageToDict(message)
    except (ValueError, TypeError, json_format.Error):
        pass
    if message.DESCRIPTOR.full_name.startswith("google.protobuf."):
        return f"not-a-{message.DESCRIPTOR.name}"
    copy = type(message)()
    copy.CopyFrom(message)
    nested = []
    for f, value in message.ListFields():
        if f.type == FieldDescriptor.TYPE_MESSAGE:
            copy.ClearField(f.name)
            nested.append((f, value))
    out = json_format.MessageToDict(copy)
    for f, value in nested:
        if _is_map(f):
            out[f.json_name] = {k: (_to_json(v) if isinstance(v, Message) else v) for k, v in value.items()}
        elif f.is_repeated:
            out[f.json_name] = [_to_json(v) for v in value]
        else:
            out[f.json_name] = _to_json(value)
    return out


def _query(payload: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Dotted query parameters of a JSON dict (repeated scalars repeat)."""
    out: list[tuple[str, str]] = []
    if not isinstance(payload, dict):
        return out
    for key, value in payload.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out += _query(value, name + ".")
        elif isinstance(value, list):
            out += [(name, _scalar(v)) for v in value if not isinstance(v, (dict, list))]
        else:
            out.append((name, _scalar(value)))
    return out


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True)
class HttpMutation:
    """What an HTTP client may do that a gRPC stub cannot."""

    body_edits: tuple[tuple[str, Any], ...] = ()
    raw_body: bytes | None = None
    extra_query: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()


def http_mutations() -> st.SearchStrategy[HttpMutation]:
    header = st.sampled_from(
        [
            ("Accept", "text/event-stream"),
            ("Last-Event-ID", "3"),
            ("Last-Event-ID", "-1"),
            ("Last-Event-ID", "99999999999999999999999"),
            ("Last-Event-ID", "abc"),
            ("If-None-Match", '"x"'),
            ("Content-Type", "text/plain"),
            ("Content-Type", "application/json; charset=latin-1"),
            ("Accept", "*/*"),
        ]  # no wrong API key: failed key checks get the caller throttled (gateway.auth), every call refused
    )
    return st.one_of(
        st.just(HttpMutation()),
        st.just(HttpMutation()),
        st.just(HttpMutation()),
        st.builds(
            HttpMutation,
            body_edits=st.lists(st.tuples(texts(12), _json_values()), max_size=3).map(tuple),
            extra_query=st.lists(st.tuples(texts(12), texts(12)), max_size=2).map(tuple),
            headers=st.lists(header, max_size=2).map(tuple),
        ),
        st.builds(
            HttpMutation,
            raw_body=st.one_of(
                st.binary(max_size=64),
                st.sampled_from([b"[]", b"null", b"1", b'"x"', b"{", b"{}" * 3, b'{"a":' * 70 + b"1" + b"}" * 70]),
            ),
        ),
    )


def _path(binding: Binding, message: Message) -> str:
    path = binding.template
    for match in re.finditer(r"\{([\w.]+)=([\w]+)/\*\}", binding.template):
        value: Any = message
        for part in match.group(1).split("."):
            value = getattr(value, part)
        collection = match.group(2)
        ident = value.removeprefix(f"{collection}/") if value.startswith(f"{collection}/") else value
        quoted = urllib.parse.quote(ident, safe="")
        if len(quoted) > MAX_URL // 2:  # a long id, but the rest of the path kept: the same route
            quoted = urllib.parse.quote(ident[: MAX_URL // 24], safe="")
        path = path.replace(match.group(0), f"{collection}/{quoted}")
    return path


@dataclass(frozen=True)
class HttpCall:
    verb: str
    path: str
    body: bytes | None
    headers: tuple[tuple[str, str], ...]


def as_http(request: Request, mutation: HttpMutation = HttpMutation()) -> HttpCall:
    """The HTTP call of a generated request under its method's HTTP rule: path
    variables from the request, the body the rule names as JSON (an upload's
    file as the raw body), every other field as query parameters."""
    binding = BINDINGS[request.method]
    headers = dict(mutation.headers)
    query: list[tuple[str, str]] = []
    if request.message is None:  # a client stream: the header in path and query, the bytes as the body
        descriptor = binding.method.input_type
        oneof = _real_oneofs(descriptor)[0]
        header_f = next(f for f in oneof.fields if f.type == FieldDescriptor.TYPE_MESSAGE)
        first = next((m for m in request.stream if m.WhichOneof(oneof.name) == header_f.name), None)
        base = first if first is not None else message_factory.GetMessageClass(descriptor)()
        path = _path(binding, base)
        header_json = _to_json(getattr(base, header_f.name))
        if isinstance(header_json, dict):
            header_json.pop("name", None)  # in the path
        query = _query(header_json)
        body = b"".join(
            getattr(m, f.name)
            for m in request.stream
            for f in oneof.fields
            if f.type == FieldDescriptor.TYPE_BYTES and m.WhichOneof(oneof.name) == f.name
        )
    else:
        path = _path(binding, request.message)
        payload = _to_json(request.message)
        if not isinstance(payload, dict):
            payload = {}
        for variable in binding.variables.values():  # carried by the path
            *parents, leaf = variable.split(".")
            node, descriptor = payload, binding.method.input_type
            for part in parents:
                f = descriptor.fields_by_name[part]
                node = node.get(f.json_name) if isinstance(node, dict) else None
                descriptor = f.message_type
            if isinstance(node, dict):
                node.pop(descriptor.fields_by_name[leaf].json_name, None)
        if binding.body == "*":
            document = payload
        elif binding.body:
            body_field = binding.method.input_type.fields_by_name[binding.body]
            document = payload.pop(body_field.json_name, {})
            query = _query(payload)
        else:
            document = None
            query = _query(payload)
        if document is not None:
            if isinstance(document, dict):
                for key, value in mutation.body_edits:
                    if "webhook" not in key.lower():  # never a target of our choosing: see WEBHOOK_URLS
                        document[key] = value
            body = json.dumps(document, allow_nan=True).encode() if mutation.raw_body is None else mutation.raw_body
        else:
            body = None
    query += list(mutation.extra_query)
    encoded = urllib.parse.urlencode(query)
    while len(path) + len(encoded) > MAX_URL and query:  # httpx sends no URL over 64 KiB
        query = query[: len(query) // 2]
        encoded = urllib.parse.urlencode(query)
    if encoded:
        path += "?" + encoded
    return HttpCall(binding.verb, path, body, tuple(headers.items()))


def http_requests(method_name: str, pool: Pool = Pool()) -> st.SearchStrategy[tuple[Request, HttpCall]]:
    return st.tuples(requests(method_name, pool), http_mutations()).map(lambda t: (t[0], as_http(*t)))


# ------------------------------------------------------------------ the harness


@dataclass
class Outcome:
    status: str
    """gRPC: the code's name; HTTP: the status, with `+CODE` for an error inside a stream."""
    server_error: bool
    refused: bool
    message: str = ""


@dataclass
class Finding:
    transport: str
    method: str
    kind: str
    status: str
    message: str
    request: str


@dataclass
class MethodReport:
    examples: int = 0
    statuses: Counter = field(default_factory=Counter)
    server_errors: int = 0
    left_rows: int = 0
    kept_records: int = 0
    seconds: float = 0.0
    samples: dict[str, str] = field(default_factory=dict)
    """One answer per status: its message and the request."""


TRACKED = ("datasets", "experiments", "runs", "trained_models", "subscriptions")
RUN_ENDED = {common_pb2.RUN_STATE_FAILED, common_pb2.RUN_STATE_CANCELLED}
# How long a call may take. Streams are read for a while and then let go:
# Subscribe and a live WatchRun never end by themselves.
DEADLINES = {"WatchRun": 8.0, "Subscribe": 3.0, "PredictStream": 60.0, "TrainModel": 60.0, "TestModel": 120.0}
STREAM_MESSAGES = {"Subscribe": 2, "WatchRun": 200}


class Target:
    """A running suite's public doors (gRPC and HTTP) with an API key, its
    data folder, and the storage process to watch."""

    def __init__(
        self,
        grpc_target: str,
        http_base: str,
        key: str,
        data_dir: Path,
        processes: dict[str, Any],
    ) -> None:
        self.channel = grpc.insecure_channel(
            grpc_target, options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)]
        )
        self.stub = automl_service_pb2_grpc.AutoMLStub(self.channel)
        self.metadata = [("authorization", f"Bearer {key}")]
        self.http = httpx.Client(base_url=http_base, trust_env=False, timeout=httpx.Timeout(120, read=60))
        self.key = key
        self.data_dir = data_dir
        self.db = data_dir / "automl.db"
        self.blobs = data_dir / "blobs"
        self.processes = processes
        """The suite's processes (subprocess.Popen by service name)."""
        self.pool = Pool()
        self.findings: list[Finding] = []
        self.reports: dict[tuple[str, str], MethodReport] = {}
        self.kept: Counter = Counter()

    def close(self) -> None:
        self.http.close()
        self.channel.close()

    # ---------------------------------------------------------------- calls

    def call_grpc(self, request: Request) -> Outcome:
        method = SERVICE.methods_by_name[request.method]
        call = getattr(self.stub, request.method)
        timeout = DEADLINES.get(request.method, 30.0)
        try:
            if method.client_streaming and method.server_streaming:
                responses = call(iter(request.stream), metadata=self.metadata, timeout=timeout)
                for _ in responses:
                    pass
            elif method.client_streaming:
                call(iter(request.stream), metadata=self.metadata, timeout=timeout)
            elif method.server_streaming:
                responses = call(request.message, metadata=self.metadata, timeout=timeout)
                limit = STREAM_MESSAGES.get(request.method, 10_000)
                for i, _ in enumerate(responses):
                    if i + 1 >= limit:
                        responses.cancel()
                        return Outcome("OK", False, False)
            else:
                reply = call(request.message, metadata=self.metadata, timeout=timeout)
                self._after_ok(request.method, reply)
            return Outcome("OK", False, False)
        except grpc.RpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.DEADLINE_EXCEEDED and request.method in ("WatchRun", "Subscribe"):
                return Outcome("DEADLINE_EXCEEDED(client)", False, False)  # a live stream we let go
            return Outcome(code.name, code.name in SERVER_ERRORS, True, exc.details() or "")

    def call_http(self, request: Request, call: HttpCall) -> Outcome:
        headers = {"Authorization": f"Bearer {self.key}", **dict(call.headers)}
        kind = BINDINGS[request.method].kind
        timeout = DEADLINES.get(request.method, 60.0)
        try:
            with self.http.stream(
                call.verb, call.path, content=call.body, headers=headers, timeout=httpx.Timeout(120, read=timeout)
            ) as reply:
                status = reply.status_code
                stream_error = ""
                if kind in ("server_stream", "bidi_upload") and status < 400:
                    limit = STREAM_MESSAGES.get(request.method, 10_000)
                    for i, line in enumerate(reply.iter_lines()):
                        stream_error = stream_error or _stream_error(line)
                        if i + 1 >= limit:
                            break
                    text = ""
                else:
                    data = b""
                    for chunk in reply.iter_bytes():
                        data += chunk
                        if len(data) > 4 * 1024 * 1024:
                            break
                    text = data[:2000].decode(errors="replace")
                    if status == 200 and kind == "unary":
                        with contextlib.suppress(ValueError):
                            self._after_ok_json(request.method, json.loads(data))
        except httpx.ReadTimeout:
            if request.method in ("WatchRun", "Subscribe"):
                return Outcome("timeout(client)", False, False)
            return Outcome("timeout", True, True, f"no answer in {timeout} s")
        except httpx.HTTPError as exc:
            return Outcome(f"transport error {type(exc).__name__}", True, True, str(exc))
        label = str(status) + (f"+{stream_error}" if stream_error else "")
        server_error = status >= 500 or stream_error in SERVER_ERRORS
        message = text if status >= 400 else stream_error
        return Outcome(label, server_error, status >= 400, message)

    def _after_ok(self, method: str, reply: Message) -> None:
        """A started run is stopped at once: no fuzzed search runs for long."""
        if method == "StartRun":
            self.stop_run(reply.name)

    def _after_ok_json(self, method: str, reply: Any) -> None:
        if method == "StartRun" and isinstance(reply, dict) and reply.get("name"):
            self.stop_run(reply["name"])

    def stop_run(self, name: str) -> None:
        with contextlib.suppress(grpc.RpcError):
            self.stub.StopRun(run_pb2.StopRunRequest(name=name), metadata=self.metadata, timeout=30)

    # ---------------------------------------------------------------- judging

    def _marks(self) -> dict[str, int]:
        with contextlib.closing(self._db()) as db:
            return {t: db.execute(f"SELECT coalesce(max(rowid), 0) FROM {t}").fetchone()[0] for t in TRACKED}

    def _db(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)

    def _left(self, marks: dict[str, int]) -> tuple[list[str], list[str]]:
        """Rows made since `marks`: (left behind, kept on purpose as a record of the refusal)."""
        left, kept = [], []
        with contextlib.closing(self._db()) as db:
            for table in TRACKED:
                rows = db.execute(f"SELECT * FROM {table} WHERE rowid > ?", (marks[table],)).fetchall()
                names = [d[0] for d in db.execute(f"SELECT * FROM {table} LIMIT 0").description]
                for row in rows:
                    values = dict(zip(names, row, strict=True))
                    ident = values.get("id")
                    if table == "runs" and values["run_state"] in RUN_ENDED and values["status_message"]:
                        kept.append(f"runs/{ident}")
                    elif (
                        table == "trained_models"
                        and values["model_state"] == model_pb2.TrainedModel.STATE_FAILED
                        and values["error_message"]
                    ):
                        kept.append(f"trainedModels/{ident}")
                    else:
                        left.append(f"{table} row {ident or values}")
        return left, kept

    def exercise(self, transport: str, request: Request, call: HttpCall | None = None) -> Outcome:
        """Send one generated call, judge its answer and what it left; record both."""
        report = self.reports.setdefault((transport, request.method), MethodReport())
        marks = self._marks()
        started = time.monotonic()
        outcome = self.call_grpc(request) if transport == "grpc" else self.call_http(request, call)  # type: ignore[arg-type]
        report.seconds += time.monotonic() - started
        report.examples += 1
        report.statuses[outcome.status] += 1

        def describe() -> str:
            if call is None:
                return request.describe()
            return f"{call.verb} {call.path[:400]} body={call.body[:300] if call.body else call.body!r}"

        if outcome.status not in report.samples:
            report.samples[outcome.status] = f"{outcome.message[:300]!r} <- {describe()[:500]}"
        if outcome.server_error:
            report.server_errors += 1
            self.findings.append(
                Finding(transport, request.method, "server error", outcome.status, outcome.message[:500], describe())
            )
        if outcome.refused:
            left, kept = self._left(marks)
            report.kept_records += len(kept)
            if left:
                report.left_rows += len(left)
                self.findings.append(
                    Finding(transport, request.method, "left rows", outcome.status, "; ".join(left)[:500], describe())
                )
        return outcome

    def fuzz(
        self, method: str, transport: str, examples: int, *, derandomize: bool = True, seed: int | None = None
    ) -> MethodReport:
        """Run `examples` generated calls of `method` over `transport`."""
        if transport == "grpc":
            strategy: st.SearchStrategy[Any] = requests(method, self.pool)
        else:
            strategy = http_requests(method, self.pool)

        @settings(
            max_examples=examples,
            deadline=None,
            derandomize=derandomize,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
            print_blob=False,
        )
        @given(strategy)
        def run(drawn: Any) -> None:
            if transport == "grpc":
                self.exercise("grpc", drawn)
            else:
                self.exercise("http", drawn[0], drawn[1])

        if seed is not None and not derandomize:
            run = hypothesis_seed(seed)(run)
        run()
        return self.reports.setdefault((transport, method), MethodReport())

    # ---------------------------------------------------------------- the end

    def settle(self, timeout: float = 60) -> list[str]:
        """Wait until no run and no model is under way; what still is, after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.closing(self._db()) as db:
                busy = [
                    f"runs/{i} in state {s}"
                    for i, s in db.execute("SELECT id, run_state FROM runs WHERE run_state IN (1, 2, 3)")
                ]
                busy += [
                    f"trainedModels/{i} TRAINING"
                    for (i,) in db.execute("SELECT id FROM trained_models WHERE model_state = 1")
                ]
            if not busy or time.monotonic() > deadline:
                return busy
            time.sleep(0.5)

    def orphans(self) -> dict[str, list[str]]:
        """What no resource owns: blob files without a contents row, temporary
        files, contents rows no dataset or artifact uses, rows whose blob is gone."""
        with contextlib.closing(self._db()) as db:
            contents = db.execute("SELECT sha256, blob_key FROM contents").fetchall()
            used = {s for (s,) in db.execute("SELECT content_sha256 FROM datasets")}
            used |= {s for (s,) in db.execute("SELECT content_sha256 FROM artifacts")}
        keys = {k for _, k in contents if k}
        files = (
            {str(p.relative_to(self.blobs)) for p in self.blobs.rglob("*") if p.is_file() and ".tmp" not in p.parts}
            if self.blobs.exists()
            else set()
        )
        temps = [str(p) for p in (self.blobs / ".tmp").glob("*") if p.is_file()] if self.blobs.exists() else []
        return {
            "blob files without a contents row": sorted(files - keys),
            "temporary files": sorted(temps),
            "contents rows nothing uses": sorted(s for s, _ in contents if s not in used),
            "contents rows whose blob is missing": sorted(k for k in keys if k not in files),
        }

    def dead(self) -> dict[str, int]:
        """The suite's processes that ended: name -> exit code."""
        return {name: proc.returncode for name, proc in self.processes.items() if proc.poll() is not None}

    def storage_peak_mb(self) -> float:
        """VmHWM (peak resident set) of the storage process, in MB."""
        for line in Path(f"/proc/{self.processes['storage'].pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM")


def _stream_error(line: str) -> str:
    """The gRPC code of an error frame in a streamed HTTP answer ('' for none)."""
    if line.startswith("data: "):
        line = line[6:]
    if '"error"' not in line:
        return ""
    try:
        code = json.loads(line)["error"].get("code", 0)
    except (ValueError, KeyError, AttributeError, TypeError):
        return ""
    return RPC_CODES.get(code, str(code))


# ------------------------------------------------------------------ the pool, made


def make_pool(client: Any, csv: bytes, target: str, timeout: float = 300) -> Pool:
    """Resources for valid names, made through the public API with `client`
    (tests.gateway.conftest.Client): a dataset of `csv`, an experiment on it,
    a finished run (2 models), its best result trained into a READY model, a
    subscription with its token; and spares for the Delete methods (a second
    dataset and experiment, a second subscription)."""
    experiment = client.experiment(csv, target)
    run = client.wait_end(client.start(experiment, max_models=2), timeout=timeout)
    model = client.train(run.best_model_result, timeout=timeout)
    subscription = client.call(
        "CreateSubscription",
        event_pb2.CreateSubscriptionRequest(subscription=event_pb2.Subscription(run=run.name)),
    )
    spare_dataset = client.upload(csv, name="spare")
    spare_experiment = client.call(
        "CreateExperiment",
        experiment_pb2.CreateExperimentRequest(
            experiment=experiment_pb2.Experiment(display_name="spare", dataset=spare_dataset.name, target_column=target)
        ),
    )
    spare_subscription = client.call(
        "CreateSubscription",
        event_pb2.CreateSubscriptionRequest(subscription=event_pb2.Subscription(experiment=experiment.name)),
    )
    page_tokens = []
    for method, cls in (
        ("ListDatasets", dataset_pb2.ListDatasetsRequest),
        ("ListExperiments", experiment_pb2.ListExperimentsRequest),
        ("ListSubscriptions", event_pb2.ListSubscriptionsRequest),
    ):
        reply = client.call(method, cls(page_size=1))
        if reply.next_page_token:
            page_tokens.append(reply.next_page_token)
    columns = tuple(csv.split(b"\n", 1)[0].decode().split(","))
    return Pool(
        names=(
            ("datasets", (experiment.dataset,)),
            ("experiments", (experiment.name,)),
            ("runs", (run.name,)),
            ("modelResults", (run.best_model_result,)),
            ("trainedModels", (model.name,)),
            ("subscriptions", (subscription.subscription.name,)),
        ),
        spare=(
            ("datasets", (spare_dataset.name,)),
            ("experiments", (spare_experiment.name,)),
            ("subscriptions", (spare_subscription.subscription.name,)),
        ),
        tokens=(subscription.token, spare_subscription.token),
        page_tokens=tuple(page_tokens),
        columns=columns,
    )
