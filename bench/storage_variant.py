"""The storage process with less CSV work per upload, for bench/storage_upload.py's
lower bounds (never part of the suite): `python -m bench.storage_variant VARIANT`.

  parse   the same streaming CSV reader and byte checks as the real profile,
          without any column statistics (every row is parsed and checked; the
          columns come out "unspecified")
  bytes   no CSV work at all: the upload's bytes are hashed and stored, nothing
          reads them as CSV

Both patch the service's own modules in this process only, then start it as
`python -m services.storage` would. What they measure is what the profile's
statistics (parse) and the CSV reading itself (bytes) cost the upload.
"""

from __future__ import annotations

import runpy
import sys
from typing import Any

from services.storage import csvprofile, ingest


def _replace(owner: object, name: str, value: object) -> None:
    """Setting a name that is gone would patch nothing and measure the service as is."""
    if not hasattr(owner, name):
        raise SystemExit(f"bench.storage_variant: {owner!r} has no {name}: update this variant to the service's code")
    setattr(owner, name, value)


def _without_statistics() -> None:
    _replace(csvprofile._Column, "add", lambda self, values: None)


def _without_csv() -> None:
    def drain(fmt: csvprofile.CsvFormat) -> Any:
        def run(source: Any) -> csvprofile.CsvProfile:
            newlines = 0
            while chunk := source.read(1 << 20):
                newlines += chunk.count(b"\n")
            return csvprofile.CsvProfile(max(newlines - 1, 0), [])

        return run

    _replace(ingest, "profile", drain)


VARIANTS = {"parse": _without_statistics, "bytes": _without_csv}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in VARIANTS:
        raise SystemExit(f"usage: python -m bench.storage_variant {{{','.join(VARIANTS)}}}")
    VARIANTS[sys.argv[1]]()
    runpy.run_module("services.storage", run_name="__main__")
