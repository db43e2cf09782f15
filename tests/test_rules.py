"""Rules written once (automl.common): every service that checks a resource
name, stop conditions or CSV options answers the same as the others, field
and message."""

from __future__ import annotations

import pytest
from google.protobuf import duration_pb2

from automl.common import csvformat, names, stopping
from automl.common.errors import FieldViolation, InvalidArgument
from automl.v1 import common_pb2 as c
from gateway import validation as gateway
from services.runner import servicer as runner_servicer
from services.storage import convert, csvprofile
from services.storage import validation as storage


def refusal(fn, *args) -> list[FieldViolation]:
    with pytest.raises(InvalidArgument) as caught:
        fn(*args)
    return caught.value.violations


@pytest.mark.parametrize(
    "value", ["", "runs", "runs/", "runs/ABC", "runs/a/b", "experiments/abc", "runs/" + "a" * 64, "runs/-a"]
)
def test_a_bad_name_is_refused_alike_by_every_service(value):
    at_the_gateway = gateway.name(value, "runs", "run")
    in_storage = refusal(names.parse, value, "runs", "run")
    in_the_runner = refusal(names.check, value, "runs", "run")
    assert at_the_gateway == in_storage == in_the_runner
    assert at_the_gateway[0].field == "run" and "runs/abc123" in at_the_gateway[0].description


def test_a_good_name_passes_everywhere():
    assert gateway.name("runs/r1", "runs") == []
    assert names.parse("runs/r1", "runs") == "r1"
    assert names.check("runs/r1", "runs") == "runs/r1"
    assert names.parse_optional("", "runs", "run") == ""
    assert not hasattr(runner_servicer, "resource_name"), "the runner checks names with automl.common.names"


def test_a_long_bad_name_is_quoted_cut():
    (violation,) = gateway.name("x" * 10_000, "runs")
    assert len(violation.description) < 200


def test_a_client_chosen_id_follows_one_rule():
    assert names.client_id_violations("my-experiment", "experiment_id") == []
    (violation,) = names.client_id_violations("X", "experiment_id")
    assert refusal(names.check_client_id, "X", "experiment_id") == [violation]
    assert "starting with a letter" in violation.description


def seconds(value: float) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=int(value))


@pytest.mark.parametrize(
    ("conditions", "field"),
    [
        (c.StopConditions(max_models=-1), "stop_conditions.max_models"),
        (c.StopConditions(max_models=1, no_improvement_models=-2), "stop_conditions.no_improvement_models"),
        (c.StopConditions(max_duration=seconds(-1)), "stop_conditions.max_duration"),
        (c.StopConditions(max_models=1, per_model_time_limit=seconds(-5)), "stop_conditions.per_model_time_limit"),
        (c.StopConditions(target_score=float("inf")), "stop_conditions.target_score"),
    ],
)
def test_stop_conditions_are_refused_alike_by_every_service(conditions, field):
    at_the_gateway = gateway.stop_conditions(conditions, "stop_conditions")
    in_storage = storage.check_stop_conditions(convert.to_dict(conditions), "stop_conditions", require_bound=True)
    limits = stopping.Limits.of(conditions, default_time_limit=300)
    in_the_runner = [FieldViolation(f, d) for f, d in limits.problems()]
    assert at_the_gateway == in_storage == in_the_runner
    assert at_the_gateway[0].field == field


def test_a_run_needs_a_bound_in_storage_and_the_runner():
    unbounded = c.StopConditions(no_improvement_models=3)
    assert gateway.stop_conditions(unbounded, "stop_conditions") == []  # experiment defaults may fill it in
    in_storage = storage.check_stop_conditions(convert.to_dict(unbounded), "stop_conditions", require_bound=True)
    in_the_runner = stopping.Limits.of(unbounded, default_time_limit=300).problems()
    assert in_storage == [FieldViolation(*in_the_runner[0])]
    assert "cannot go on forever" in in_storage[0].description


def test_a_negative_duration_with_positive_seconds_is_still_negative():
    malformed = c.StopConditions(max_models=1, max_duration=duration_pb2.Duration(seconds=0, nanos=-1))
    assert [v.field for v in stopping.check(malformed, "s")] == ["s.max_duration"]


@pytest.mark.parametrize(
    ("options", "key"),
    [
        (c.CsvOptions(delimiter=",,"), "delimiter"),
        (c.CsvOptions(delimiter="\n"), "delimiter"),
        (c.CsvOptions(quote_char=","), "quote_char"),
        (c.CsvOptions(delimiter='"'), "quote_char"),
        (c.CsvOptions(encoding="x"), "encoding"),
        (c.CsvOptions(encoding="base64"), "encoding"),
        (c.CsvOptions(na_values=["?"] * 101), "na_values"),
    ],
)
def test_csv_options_are_refused_alike_at_the_gateway_and_in_storage(options, key):
    at_the_gateway = gateway.csv_options(options, "header.csv_options")
    in_storage = refusal(csvformat.check, options, "header.csv_options")
    assert at_the_gateway == in_storage
    assert at_the_gateway[0].field == f"header.csv_options.{key}"
    with pytest.raises(csvprofile.CsvFormatError, match=key):
        csvprofile.check_format(csvformat.CsvFormat.of(options))


def test_unset_csv_options_take_one_set_of_defaults():
    fmt = csvformat.CsvFormat.of(c.CsvOptions())
    assert fmt == csvformat.CsvFormat() == csvprofile.CsvFormat()
    assert (fmt.delimiter, fmt.quote_char, fmt.encoding, fmt.has_header) == (",", '"', "utf-8", True)
    assert "NA" in fmt.na_values
    assert csvformat.CsvFormat.of(c.CsvOptions(has_header=False)).has_header is False
    assert csvformat.CsvFormat.of(fmt.options()) == fmt
