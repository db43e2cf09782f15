"""Validation at the door: every public request type has a rule; a wrong
request gets INVALID_ARGUMENT with a BadRequest detail naming every wrong
field and its fix; an oversize message gets RESOURCE_EXHAUSTED."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from automl.common.errors import InvalidArgument
from automl.v1 import automl_service_pb2, dataset_pb2, event_pb2, experiment_pb2, model_pb2, run_pb2
from automl.v1 import common_pb2 as c
from gateway import validation
from tests.runner.conftest import seconds

PUBLIC = automl_service_pb2.DESCRIPTOR.services_by_name["AutoML"]


def test_every_public_request_type_has_a_rule():
    missing = [m.input_type.full_name for m in PUBLIC.methods if not validation.has_rule(m.input_type.full_name)]
    assert missing == []


def violations_of(request) -> dict[str, str]:
    with pytest.raises(InvalidArgument) as caught:
        validation.check(request)
    return {v.field: v.description for v in caught.value.violations}


def test_all_violations_at_once():
    found = violations_of(
        experiment_pb2.CreateExperimentRequest(
            experiment=experiment_pb2.Experiment(
                dataset="tables/1", cv_folds=40, holdout_fraction=0.9, primary_metric=99
            ),
            experiment_id="X",
        )
    )
    assert set(found) == {
        "experiment.display_name",
        "experiment.dataset",
        "experiment.target_column",
        "experiment.cv_folds",
        "experiment.primary_metric",
        "experiment.holdout_fraction",
        "experiment_id",
    }
    assert "datasets/abc123" in found["experiment.dataset"]
    assert "2 to 20" in found["experiment.cv_folds"]


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (run_pb2.GetRunRequest(name="experiments/abc"), "name"),
        (run_pb2.GetRunRequest(), "name"),
        (dataset_pb2.ListDatasetsRequest(page_size=5000), "page_size"),
        (dataset_pb2.PreviewDatasetRequest(name="datasets/a", row_count=-1), "row_count"),
        (run_pb2.StartRunRequest(experiment="experiments/a", parallel_workers=65), "parallel_workers"),
        (
            run_pb2.StartRunRequest(
                experiment="experiments/a", stop_conditions=c.StopConditions(max_duration=seconds(-1))
            ),
            "stop_conditions.max_duration",
        ),
        (run_pb2.ExportRunResultsRequest(run="runs/a"), "format"),
        (event_pb2.WatchRunRequest(name="runs/a", after_sequence=-3), "after_sequence"),
        (model_pb2.PredictRequest(name="trainedModels/a"), "input"),
        (
            event_pb2.CreateSubscriptionRequest(subscription=event_pb2.Subscription(webhook_url="ftp://example.com/x")),
            "subscription.webhook_url",
        ),
        (
            experiment_pb2.UpdateExperimentRequest(
                experiment=experiment_pb2.Experiment(name="experiments/a"), update_mask={"paths": ["target_column"]}
            ),
            "update_mask",
        ),
        (dataset_pb2.UploadDatasetRequest(chunk=b"a,b\n"), "header"),
        (
            dataset_pb2.UploadDatasetRequest(
                header=dataset_pb2.UploadDatasetHeader(display_name="x", csv_options=c.CsvOptions(encoding="base64"))
            ),
            "header.csv_options.encoding",
        ),
        (
            model_pb2.PredictRequest(name="trainedModels/a", csv=b"a\n1\n", csv_options=c.CsvOptions(delimiter='"')),
            "csv_options.quote_char",
        ),
        (
            model_pb2.PredictStreamRequest(
                header=model_pb2.PredictStreamHeader(name="trainedModels/a", csv_options=c.CsvOptions(delimiter="\n"))
            ),
            "header.csv_options.delimiter",
        ),
    ],
)
def test_rules(request_, field):
    assert field in violations_of(request_)


def test_a_request_wrong_everywhere_lists_a_bounded_number_of_violations():
    """1,001 wrong entries: 20 listed and a count, so that the error fits in the
    16 KiB of trailers a gRPC client takes (found by fuzzing: past them the
    client saw RESOURCE_EXHAUSTED, and the HTTP door answered 429)."""
    request = event_pb2.CreateSubscriptionRequest(
        subscription=event_pb2.Subscription(event_types=[-1] * 1001, webhook_url="é" * 3000)
    )
    with pytest.raises(InvalidArgument) as caught:
        validation.check(request)
    violations = caught.value.violations
    assert len(violations) == validation.MAX_VIOLATIONS + 1
    assert violations[-1].description == "and 983 more violations not listed"  # 1,001 + 2 of the URL
    assert "(and 1002 more)" in str(caught.value)
    assert sum(len(v.field) + len(v.description) for v in violations) < 4096


def test_wrong_request_over_grpc_carries_field_violations(gateway_suite):
    client = gateway_suite.client()
    with pytest.raises(grpc.RpcError) as caught:
        client.call(
            "StartRun",
            run_pb2.StartRunRequest(experiment="nope", parallel_workers=-1),
        )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(caught.value)
    bad = error_details_pb2.BadRequest()
    assert any(d.Unpack(bad) for d in status.details if d.Is(error_details_pb2.BadRequest.DESCRIPTOR))
    assert {v.field for v in bad.field_violations} == {"experiment", "parallel_workers"}


def test_errors_of_internal_services_pass_through_with_their_fields(gateway_suite):
    """The target column is checked by storage against the dataset's profile."""
    client = gateway_suite.client()
    with pytest.raises(grpc.RpcError) as caught:
        client.experiment(b"a,b\n1,2\n3,4\n", "missing")
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "'missing' is not a column" in caught.value.details()
    status = rpc_status.from_call(caught.value)
    assert status is not None and status.details


def test_empty_upload_stream(gateway_suite):
    client = gateway_suite.client()
    with pytest.raises(grpc.RpcError) as caught:
        client.stub.UploadDataset(iter([]), metadata=client.metadata, timeout=10)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "header" in caught.value.details()


def test_oversize_message_is_resource_exhausted(gateway_suite):
    client = gateway_suite.client()
    huge = b"a,b\n" + b"1,2\n" * (5 * 1024 * 1024)  # 20 MiB, over the 16 MiB limit
    with pytest.raises(grpc.RpcError) as caught:
        client.call("Predict", model_pb2.PredictRequest(name="trainedModels/x", csv=huge))
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
