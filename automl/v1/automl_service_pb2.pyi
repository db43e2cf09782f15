from automl.v1 import dataset_pb2 as _dataset_pb2
from automl.v1 import event_pb2 as _event_pb2
from automl.v1 import experiment_pb2 as _experiment_pb2
from automl.v1 import model_pb2 as _model_pb2
from automl.v1 import run_pb2 as _run_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor
