"""How a dataset's CSV file is read: the defaults of its CsvOptions and the
checks of them.

Storage profiles and previews the file, the runner reads it for a search (whole
or streamed) and reads predict inputs like it, the gateway checks the options at
the door: if one of them filled an unset option differently, a column storage
profiled would not be the column the runner trains on. So every one of them
fills the options here (CsvFormat.of) and checks them here (violations).
"""

from __future__ import annotations

from dataclasses import dataclass

from automl.common.errors import FieldViolation, InvalidArgument
from automl.v1 import common_pb2 as c

DELIMITER = ","
QUOTE_CHAR = '"'
ENCODING = "utf-8"
HAS_HEADER = True
NA_VALUES: tuple[str, ...] = ("", "NA", "N/A", "NaN", "nan", "null", "NULL", "None")
"""Cells read as missing when the options list none."""
MAX_NA_VALUES = 100
MAX_NA_VALUE_CHARS = 64
MAX_ENCODING_CHARS = 64
QUOTED = 80
"""Characters of a bad value quoted in a message: an error must stay small whatever was sent."""


@dataclass(frozen=True)
class CsvFormat:
    """CsvOptions with every unset option filled with its default."""

    delimiter: str = DELIMITER
    has_header: bool = HAS_HEADER
    encoding: str = ENCODING
    na_values: tuple[str, ...] = NA_VALUES
    quote_char: str = QUOTE_CHAR

    @classmethod
    def of(cls, options: c.CsvOptions) -> CsvFormat:
        return cls(
            delimiter=options.delimiter or DELIMITER,
            has_header=options.has_header if options.HasField("has_header") else HAS_HEADER,
            encoding=options.encoding or ENCODING,
            na_values=tuple(options.na_values) or NA_VALUES,
            quote_char=options.quote_char or QUOTE_CHAR,
        )

    def options(self) -> c.CsvOptions:
        """Every option set: what storage records with a dataset, so that readers need no defaults."""
        return c.CsvOptions(
            delimiter=self.delimiter,
            has_header=self.has_header,
            encoding=self.encoding,
            na_values=list(self.na_values),
            quote_char=self.quote_char,
        )


def column_name(index: int) -> str:
    """The name of the column at 0-based `index` of a file without a header row."""
    return f"column_{index}"


def violations(fmt: CsvFormat, field: str) -> list[FieldViolation]:
    """What is wrong with the options at `field` (e.g. "header.csv_options"), each with its fix."""
    out = []
    for key in ("delimiter", "quote_char"):
        value = getattr(fmt, key)
        if len(value) != 1 or value in "\r\n":
            out.append(FieldViolation(f"{field}.{key}", f"{value[:QUOTED]!r}: use one character, not a line break"))
    if fmt.delimiter == fmt.quote_char:
        out.append(
            FieldViolation(
                f"{field}.quote_char",
                f"{fmt.quote_char[:QUOTED]!r} is also the delimiter: set quote_char or delimiter to another character",
            )
        )
    if not text_codec(fmt.encoding):
        out.append(
            FieldViolation(
                f"{field}.encoding",
                f"{fmt.encoding[:QUOTED]!r} is not a text encoding: use a Python codec name such as utf-8 or latin-1",
            )
        )
    if len(fmt.na_values) > MAX_NA_VALUES or any(len(v) > MAX_NA_VALUE_CHARS for v in fmt.na_values):
        out.append(
            FieldViolation(
                f"{field}.na_values", f"at most {MAX_NA_VALUES} markers of at most {MAX_NA_VALUE_CHARS} characters"
            )
        )
    return out


def check(options: c.CsvOptions, field: str) -> CsvFormat:
    """The options with their defaults filled in; INVALID_ARGUMENT with every violation otherwise."""
    fmt = CsvFormat.of(options)
    if found := violations(fmt, field):
        raise InvalidArgument.of(found)
    return fmt


def text_codec(name: str) -> bool:
    """Whether `name` is a Python codec between bytes and text: not base64 or
    rot13, which str.encode refuses, nor one that cannot decode at all."""
    if len(name) > MAX_ENCODING_CHARS:
        return False
    try:
        "".encode(name)
        b"".decode(name)
    except (LookupError, UnicodeError, ValueError):
        return False
    return True
