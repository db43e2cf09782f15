"""Regenerate the Python stubs of protos/automl/v1 into automl/v1.

Run with `make protos`. The stubs are committed; tests/test_contracts.py fails
when they differ from a fresh generation, so edit the .proto files, never the
generated code.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import google.api.annotations_pb2
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PACKAGE_DIR = Path("automl") / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")
# mypy-protobuf's plugin types the gRPC stubs and servicer bases (grpc_tools leaves them untyped);
# it is installed next to this interpreter by the dev extra.
MYPY_GRPC_PLUGIN = Path(sys.executable).parent / "protoc-gen-mypy_grpc"
# google/api/annotations.proto and http.proto (the HTTP rules of the public
# service) come with the googleapis-common-protos package, which also
# provides their Python modules at run time.
GOOGLEAPIS = Path(google.api.annotations_pb2.__file__).resolve().parents[2]
GOOGLEAPIS_FILES = ("google/api/annotations.proto", "google/api/http.proto")


def proto_files() -> list[Path]:
    return sorted((PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))


def _protoc(*outputs: str) -> None:
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{GOOGLEAPIS}",
        f"-I{include}",
        *outputs,
        *[str(p.relative_to(PROTO_ROOT)) for p in proto_files()],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed (see the messages above)")


def descriptor_set() -> descriptor_pb2.FileDescriptorSet:
    """The protos compiled with their comments (source info), for docs."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.pb"
        _protoc(f"--descriptor_set_out={out}", "--include_source_info")
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def generate(out_root: Path) -> list[Path]:
    """Generate the stubs under out_root/automl/v1 and return their paths."""
    _protoc(
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--plugin=protoc-gen-mypy_grpc={MYPY_GRPC_PLUGIN}",
        f"--mypy_grpc_out=quiet:{out_root}",
    )
    return sorted(p for p in (out_root / PACKAGE_DIR).iterdir() if p.name.endswith(GENERATED_SUFFIXES))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the committed stubs are stale")
    parser.add_argument(
        "--googleapis", type=Path, help="copy the google/api protos the contracts import there (for buf) and exit"
    )
    args = parser.parse_args()
    if args.googleapis:
        for name in GOOGLEAPIS_FILES:
            (args.googleapis / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(GOOGLEAPIS / name, args.googleapis / name)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = {p.name: p.read_bytes() for p in generate(Path(tmp))}
    target = ROOT / PACKAGE_DIR
    current = {p.name: p.read_bytes() for p in target.iterdir() if p.name.endswith(GENERATED_SUFFIXES)}
    if args.check:
        stale = sorted(n for n in fresh.keys() | current.keys() if fresh.get(n) != current.get(n))
        if stale:
            print("stale generated stubs (run `make protos`): " + ", ".join(stale), file=sys.stderr)
            return 1
        return 0
    for name in current.keys() - fresh.keys():
        (target / name).unlink()
    with tempfile.TemporaryDirectory() as tmp:
        for path in generate(Path(tmp)):
            shutil.copyfile(path, target / path.name)
    print(f"generated {len(fresh)} files in {target.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
