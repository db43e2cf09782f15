"""The storage process with less CSV work per upload, for bench/storage_upload.py's
lower bounds (never part of the suite): `python -m bench.storage_variant VARIANT`.

  parse   the same streaming CSV reader and byte checks as the real profile,
          without any column statistics (every row is parsed and checked; the
          columns come out "unspecified")
  typed   as parse, but the reader converts each column to the type pyarrow
          infers from the first block (numbers as int64 / double): what a
          type check of every value costs at the least when pyarrow's CSV
          reader does it (the benchmark's files never change type mid-file;
          a real file that does would stop this reader)
  bytes   no CSV work at all: the upload's bytes are hashed and stored, nothing
          reads them as CSV

Both patch the service's own modules in this process only, then start it as
`python -m services.storage` would. What they measure is what the profile's
statistics (parse) and the CSV reading itself (bytes) cost the upload.
"""

from __future__ import annotations

import io
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


def _typed_without_statistics() -> None:
    _without_statistics()
    open_reader = csvprofile._open

    def typed(scanner: csvprofile._Scanner, fmt: csvprofile.CsvFormat, types: list[Any], skip: int, block: int) -> Any:
        # The types pyarrow infers from the header's block (the scanner holds it
        # for the reader), given to the reader as if the profile had chosen them.
        block = scanner.pushed_back[: scanner.pushed_back.rfind(b"\n") + 1]
        sample = csvprofile.pacsv.read_csv(
            io.BytesIO(block),
            read_options=csvprofile.pacsv.ReadOptions(skip_rows=skip, autogenerate_column_names=True),
            parse_options=csvprofile.pacsv.ParseOptions(delimiter=fmt.delimiter, quote_char=fmt.quote_char),
            convert_options=csvprofile.pacsv.ConvertOptions(null_values=list(fmt.na_values), strings_can_be_null=True),
        )
        return open_reader(scanner, fmt, sample.schema.types, skip, block)

    _replace(csvprofile, "_open", typed)


def _without_csv() -> None:
    def drain(fmt: csvprofile.CsvFormat, limits: csvprofile.Limits) -> Any:
        def run(source: Any) -> csvprofile.CsvProfile:
            newlines = 0
            while chunk := source.read(1 << 20):
                newlines += chunk.count(b"\n")
            return csvprofile.CsvProfile(max(newlines - 1, 0), [])

        return run

    _replace(ingest, "profile", drain)


VARIANTS = {"parse": _without_statistics, "typed": _typed_without_statistics, "bytes": _without_csv}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in VARIANTS:
        raise SystemExit(f"usage: python -m bench.storage_variant {{{','.join(VARIANTS)}}}")
    VARIANTS[sys.argv[1]]()
    runpy.run_module("services.storage", run_name="__main__")
