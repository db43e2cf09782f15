"""Validate and profile a CSV file as it streams, in bounded memory.

`profile_csv` reads a file-like object to its end and returns the row count and
a profile of every column (type, missing and distinct counts, numeric range,
frequent values), or raises CsvFormatError with a message a user can act on
(row and column where it applies); CsvLimitError (a CsvFormatError) when the
file passes a size limit (`Limits`: columns, line and field bytes). The column
count is checked on the header, before any per-column memory is spent. It runs
in a worker thread of the storage service while the upload streams; pyarrow
parses the next batch in a thread of its own while the statistics of the last
one are computed.

Two layers: a byte scanner (NUL bytes, encoding errors, overlong lines, found
at any offset and across chunk boundaries) and pyarrow's CSV reader (exact
field counts per row, quoting), reading every column as text. Statistics are
computed per batch with vectorised kernels; distinct counts are exact up to
10,000 values, then a HyperLogLog estimate (sketch.py); a wide table's columns
share a fixed memory budget (`Sizes`), so that the profile's memory is bounded
whatever the column count. Rows are numbered as in a spreadsheet: the header is
row 1, a quoted multi-line field is one row.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import queue
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO, Protocol, cast

from automl.common import csvformat
from automl.common.csvformat import CsvFormat

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv
    from _typeshed import WriteableBuffer

    from services.storage import sketch
else:  # bound by _load() on first use: the storage process starts without them
    np = pa = pc = pacsv = sketch = None

EXACT_DISTINCT = 10_000
BLOCK = 1 << 20
# The header is read in steps of this size, its fields counted after each: a
# file with too many columns is refused within the first step.
HEADER_STEP = 64 << 10
# Memory the statistics of all columns share: distinct-count tables, exact
# value counts, HyperLogLog registers, type samples. A table of up to 13
# columns gets the full sizes (exact distinct counts up to 10,000); a wider
# one's columns get smaller ones (Sizes.of): about 16 KiB a column at 1,000.
STATISTICS_BYTES = 16 << 20
# Sample values longer than this are cut: the date and spaces rules need no more.
SAMPLE_CHARS = 200
# Blocks of 512 KiB: smaller ones cost more per byte (the profile's work per
# batch), 256 KiB +5 % CPU, 128 KiB +20 %.
PARSE_BLOCK = 1 << 19
# pyarrow's streaming CSV reader reads up to 32 blocks ahead of the parser on
# its IO thread (16 MiB that the upload's queues already buffer): _Readahead
# holds it to this many blocks not yet out as batches.
READAHEAD_BLOCKS = 4
# Batches parsed and waiting for the statistics (about 1 MiB of Arrow data
# each): 2 is no faster than 1 and peaks 3-8 MB higher.
BATCHES_AHEAD = 1
# If the reader ever waits this long for a block that _Readahead holds back
# (its count of blocks per batch would be off), one more block goes through.
READAHEAD_STALL_SECONDS = 0.05
BOOLEAN_WORDS = frozenset({"true", "false", "yes", "no", "t", "f", "y", "n"})
_NUMBER = re.compile(r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$")


_PARSED = object()  # the parser's last word: no more batches


class Readable(Protocol):
    """What the profile reads a CSV from: a binary file, or an upload's bytes as they come."""

    def read(self, size: int = -1, /) -> bytes: ...


class CsvFormatError(ValueError):
    """A file that cannot be used. `row` is the 1-based row of the file (the header
    is row 1) where it applies, `column` the column's name or position."""

    def __init__(self, message: str, row: int | None = None, column: str | None = None) -> None:
        super().__init__(message)
        self.row = row
        self.column = column


class CsvLimitError(CsvFormatError):
    """A file past a size limit (`Limits`); the message names the limit and its setting."""


@dataclass(frozen=True)
class Limits:
    """What an uploaded file may not pass; the storage service fills them from
    the settings named in the messages."""

    max_columns: int = 1000
    max_line_bytes: int = PARSE_BLOCK // 2  # see _block
    max_field_bytes: int = 128 << 10


@dataclass(frozen=True)
class Sizes:
    """How much one column's statistics may hold: the full sizes for a narrow
    table, smaller ones for a wide table's columns, which share
    STATISTICS_BYTES. Smaller sizes estimate distinct counts sooner (the
    profile says so, and the type rules take it as they take a long column's
    estimate) and keep fewer sample values."""

    exact_distinct: int  # distinct values counted exactly, then the estimate
    slot_bits: int  # sketch.Distinct's table while exact: 2**slot_bits slots
    register_bits: int  # the estimate: 2**register_bits one-byte registers
    text_bytes: int  # Arrow bytes of exact text counts held before the estimate
    batches: int  # per-batch text counts held before they are merged
    sample: int  # values kept for the date and spaces rules

    @classmethod
    def of(cls, columns: int) -> Sizes:
        # About 128 bytes per exactly counted value: 8 kept, 2 table slots of
        # 16 (hash, count), a dict entry for the quarter whose slot is taken.
        share = STATISTICS_BYTES // max(1, columns)
        exact = min(EXACT_DISTINCT, max(64, share // 128))
        return cls(
            exact_distinct=exact,
            slot_bits=min(14, (2 * exact - 1).bit_length()),
            register_bits=min(14, max(10, (share // 4).bit_length() - 1)),
            text_bytes=max(16 << 10, share // 2),
            batches=min(64, max(4, share // (8 << 10))),
            sample=min(1000, max(20, share // 1024)),
        )


@dataclass
class ColumnProfile:
    name: str
    index: int
    inferred_type: str  # numeric, categorical, text, boolean, datetime, identifier, unspecified
    missing_count: int
    distinct_count: int
    distinct_is_estimate: bool
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    top_values: list[str] = field(default_factory=list)


@dataclass
class CsvProfile:
    row_count: int
    columns: list[ColumnProfile]


def check_format(fmt: CsvFormat) -> None:
    """Refuse options that cannot describe a CSV file (the rule every reader
    and the gateway apply: automl.common.csvformat)."""
    if found := csvformat.violations(fmt, "csv_options"):
        raise CsvFormatError(f"{found[0].field}: {found[0].description}")


def _load() -> None:
    """Import numpy and pyarrow (about 60 MB of memory) when a CSV is first read,
    not when the storage process starts."""
    global np, pa, pc, pacsv, sketch
    if pacsv is None:
        import numpy
        import pyarrow
        import pyarrow.compute
        import pyarrow.csv

        from services.storage import sketch as distinct_sketch

        np, pa, pc, sketch = numpy, pyarrow, pyarrow.compute, distinct_sketch
        pacsv = pyarrow.csv


# ----------------------------------------------------------------- byte layer


class _Readahead:
    """Bounds how many blocks pyarrow's CSV reader holds before it makes them
    batches. Its IO thread calls `before_read()` for each block; the profile's
    parse thread marks the time it waits for a batch (`waiting()`) and each
    batch it takes (`took()`). pyarrow makes one batch of each block it reads (a row may span
    two blocks, never more), so the reader never needs a block that is held back;
    should that count ever be off, the reader waiting READAHEAD_STALL_SECONDS
    lets one more block through rather than deadlocking."""

    def __init__(self, blocks: int) -> None:
        self.blocks = blocks
        self.changed = threading.Condition()
        self.ahead = 0  # blocks read and not yet taken as a batch
        self.consumer_waiting = False
        self.closed = False

    def before_read(self) -> bool:
        """Block the IO thread while the reader holds enough; False once closed."""
        with self.changed:
            while self.ahead >= self.blocks and not self.closed:
                waited = self.changed.wait(READAHEAD_STALL_SECONDS if self.consumer_waiting else None)
                if not waited and self.consumer_waiting:
                    break
            self.ahead += 1
            return not self.closed

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        with self.changed:
            self.consumer_waiting = True
            self.changed.notify_all()
        try:
            yield
        finally:
            with self.changed:
                self.consumer_waiting = False

    def took(self) -> None:
        with self.changed:
            self.ahead = max(0, self.ahead - 1)
            self.changed.notify_all()

    def close(self) -> None:
        """The profile ended (done or failed): release the IO thread for good."""
        with self.changed:
            self.closed = True
            self.changed.notify_all()


class _Scanner(io.RawIOBase):
    """Passes the bytes of `source` through, checking each chunk as it goes."""

    def __init__(self, source: Readable, encoding: str, max_line_bytes: int) -> None:
        self.source = source
        self.decoder = codecs.getincrementaldecoder(encoding)("strict")
        self.max_line = max_line_bytes
        self.offset = 0  # bytes passed so far
        self.lines = 0  # newlines passed so far
        self.since_newline = 0
        self.pushed_back = b""
        self.first = True
        self.utf8 = codecs.lookup(encoding).name == "utf-8"
        self.readahead: _Readahead | None = None  # set once the CSV reader reads

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        with memoryview(buffer) as view:  # `buffer[:n] = data` for any writable buffer, not just a memoryview
            data = self.read(len(view))
            view[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        if self.readahead is not None and not self.readahead.before_read():
            return b""  # the profile stopped: end the reader's IO thread
        want = PARSE_BLOCK if size < 0 else size
        head = b""
        if self.pushed_back:  # checked already; the header read holds less than a block: fill it up
            head, self.pushed_back = self.pushed_back[:want], self.pushed_back[want:]
            if self.pushed_back or len(head) == want:
                return head
            want -= len(head)
        parts = []
        have = 0
        while have < want:  # a short read means end of file to pyarrow: fill it
            part = self.source.read(want - have)
            if not part:
                break
            parts.append(part)
            have += len(part)
        chunk = b"".join(parts)
        if self.first and chunk:
            self.first = False
            if self.utf8 and chunk.startswith(codecs.BOM_UTF8):
                chunk = chunk[len(codecs.BOM_UTF8) :]
        if chunk:
            self._check(chunk)
        else:
            self._finish()
        return head + chunk if head else chunk

    def push_back(self, data: bytes) -> None:
        """Bytes read ahead (the header) that the CSV reader must see again."""
        self.pushed_back = data + self.pushed_back

    def _line_at(self, chunk: bytes, position: int) -> int:  # on errors only: bytes.count is slow
        return self.lines + chunk.count(b"\n", 0, position) + 1

    def _check(self, chunk: bytes) -> None:
        nul = chunk.find(b"\x00")
        if nul >= 0:
            line = self._line_at(chunk, nul)
            raise CsvFormatError(f"line {line} holds a NUL byte: the file looks binary, not CSV text", line)
        try:
            # ASCII is valid UTF-8: skip building a str of the chunk, the
            # costliest check (unless a character is split across chunks).
            if not (self.utf8 and chunk.isascii() and not self.decoder.getstate()[0]):
                self.decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            pending = len(self.decoder.getstate()[0])
            position = max(0, exc.start - pending)
            line = self._line_at(chunk, position)
            raise CsvFormatError(
                f"line {line} is not valid {self.decoder_name()} (byte 0x{exc.object[exc.start]:02x} at offset "
                f"{self.offset + position}): set csv_options.encoding to the file's encoding (e.g. latin-1)",
                line,
            ) from None
        first_newline = chunk.find(b"\n")
        newlines = -1
        if first_newline < 0:
            self.since_newline += len(chunk)
        else:
            self._check_line(self.since_newline + first_newline, chunk, 0)
            if len(chunk) > self.max_line:  # a whole overlong line may sit inside one big chunk
                newlines = self._check_lines_within(chunk)
            self.since_newline = len(chunk) - chunk.rfind(b"\n") - 1
        if self.since_newline > self.max_line:
            self._check_line(self.since_newline, chunk, len(chunk))
        self.offset += len(chunk)
        self.lines += newlines if newlines >= 0 else _newlines(chunk)

    def _check_lines_within(self, chunk: bytes) -> int:
        """Check the lines between the chunk's first and last newline, in numpy
        (a loop per line would cost as much as the whole profile); its newlines."""
        ends = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == 10)
        lengths = np.diff(ends) - 1
        over = np.flatnonzero(lengths > self.max_line)
        if len(over):
            self._check_line(int(lengths[over[0]]), chunk, int(ends[over[0]]) + 1)
        return len(ends)

    def _check_line(self, length: int, chunk: bytes, position: int) -> None:
        if length > self.max_line:
            line = self._line_at(chunk, position)
            raise CsvLimitError(
                f"line {line} is longer than {self.max_line:,} bytes (AUTOML_CSV_MAX_LINE_BYTES): check the "
                "delimiter and line endings, or ask the operator to raise the limit",
                line,
            )

    def _finish(self) -> None:
        try:
            self.decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise CsvFormatError(
                f"the file ends inside a {self.decoder_name()} character: it was cut or has another encoding",
                self.lines + 1,
            ) from None

    def decoder_name(self) -> str:
        return "UTF-8" if self.utf8 else "text in the declared encoding"


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _newlines(chunk: bytes) -> int:
    """The newlines in `chunk`: numpy's vector compare is ~10x faster than bytes.count."""
    return int(np.count_nonzero(np.frombuffer(chunk, dtype=np.uint8) == 10))


def _read_header(scanner: _Scanner, fmt: CsvFormat, limits: Limits) -> tuple[list[str], int]:
    """The first record's fields, and the blank lines before it (pyarrow's
    skip_rows counts them as rows); the bytes read are pushed back for the CSV
    reader. Read in steps, its fields counted after each: too many columns are
    refused before the rest of the line is read (the scanner bounds the line)."""
    if csv.field_size_limit() < limits.max_line_bytes:  # 128 KiB by default; a field fits in its line
        csv.field_size_limit(limits.max_line_bytes)
    buffered = b""
    while True:
        chunk = scanner.read(HEADER_STEP)
        buffered += chunk
        text = buffered.decode(fmt.encoding, errors="ignore")
        stripped = text.lstrip("\r\n")
        records = csv.reader(io.StringIO(stripped, newline=""), delimiter=fmt.delimiter, quotechar=fmt.quote_char)
        first = next(records, None)
        if first is not None and len(first) > limits.max_columns:  # a partial record has fewer: never a false refusal
            which = "header" if fmt.has_header else "first row"
            raise CsvLimitError(
                f"the file has more than {limits.max_columns:,} columns ({len(first):,} or more in its {which}), "
                f"the most AUTOML_CSV_MAX_COLUMNS allows: keep the columns you need, or ask the operator to raise it",
                1,
            )
        complete = first is not None and (records.line_num < stripped.count("\n") or not chunk)
        if complete or not chunk:
            scanner.push_back(buffered)
            if not stripped.strip():
                raise CsvFormatError("the file is empty: it has no header and no rows")
            return first or [], len(_LINE_BREAK.findall(text[: len(text) - len(stripped)]))


def _check_header(names: list[str], limits: Limits) -> None:
    seen: dict[str, int] = {}
    for position, name in enumerate(names, start=1):
        if len(name.encode()) > limits.max_field_bytes:
            raise CsvLimitError(
                f"column {position}'s name is longer than {limits.max_field_bytes:,} bytes "
                "(AUTOML_CSV_MAX_FIELD_BYTES): is the first line a header?",
                1,
                str(position),
            )
        if not name.strip():
            raise CsvFormatError(
                f"column {position} has an empty name: name every column in the header", 1, str(position)
            )
        if name in seen:
            raise CsvFormatError(
                f"duplicate column name {name!r} (columns {seen[name]} and {position}): column names must be unique",
                1,
                name,
            )
        seen[name] = position
    if names and all(_NUMBER.match(name) for name in names):
        raise CsvFormatError(
            "the first line looks like data (every field is a number), not a header: "
            "set csv_options.has_header to false, or add a header line",
            1,
        )


# ----------------------------------------------------------------- statistics


class _Column:
    """Running statistics of one column.

    A column is numeric while every value so far casts to a number: its values
    are then counted as numbers (by value, in numpy: no text hash table). At the
    first value that is not a number it turns text for good, and the numbers seen
    before join its text counts. Text values are counted exactly (Arrow value
    counts per batch, merged) up to `sizes.exact_distinct` values (and
    `sizes.text_bytes`), then estimated."""

    def __init__(self, name: str, index: int, sizes: Sizes) -> None:
        self.name = name
        self.index = index
        self.sizes = sizes
        self.missing = 0
        self.present = 0
        self.numeric = True
        self.integral = True
        self.low = float("inf")
        self.high = float("-inf")
        self.total = 0.0
        self.numbers: sketch.Distinct | None = self._distinct_sketch(counting=True)
        self.exact = True  # text values counted exactly (as Arrow value counts) so far
        self.counts: list[pa.StructArray] = []  # per-batch value counts, merged when they pile up
        self.pending = 0
        self.pending_bytes = 0
        self.top: list[str] = []  # most frequent values when the exact phase ended
        self.text_sketch: sketch.Distinct | None = None
        self.by_value = False  # set when the column turns text (_turn_text)
        self.sample: list[str] = []

    def add(self, column: pa.Array) -> None:
        nulls = column.null_count
        self.missing += nulls
        if nulls == len(column):
            return
        self.present += len(column) - nulls
        if len(self.sample) < self.sizes.sample:
            more = column.drop_null().slice(0, self.sizes.sample - len(self.sample)).to_pylist()
            self.sample += [value[:SAMPLE_CHARS] for value in more]
        if self.numeric:
            numbers = self._cast(column)
            if numbers is not None:
                self._add_numbers(numbers)
                return
            self._turn_text()
        self._add_text(column.drop_null() if nulls else column)

    def _distinct_sketch(self, counting: bool = False) -> sketch.Distinct:
        sizes = self.sizes
        return sketch.Distinct(sizes.exact_distinct, counting, sizes.slot_bits, sizes.register_bits)

    def _cast(self, values: pa.Array) -> npt.NDArray[np.float64] | None:
        """The values as float64 (nulls left out), or None when one is not a number."""
        typed = None
        if self.integral:  # an int64 cast fails on the first non-integer (once per column)
            with contextlib.suppress(pa.ArrowInvalid, pa.ArrowNotImplementedError):
                typed = pc.cast(values, pa.int64())
        if typed is None:
            try:
                typed = pc.cast(values, pa.float64())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                return None  # text: `integral` still describes the numbers before
            self.integral = False
        if typed.null_count:
            typed = typed.drop_null()
        return np.asarray(typed.to_numpy(zero_copy_only=False), dtype=np.float64)

    def _add_numbers(self, numbers: npt.NDArray[np.float64]) -> None:
        low, high = numbers.min(), numbers.max()
        if np.isnan(low) or np.isnan(high):  # as Arrow's min_max: NaN only when nothing else
            low, high = np.nanmin(numbers), np.nanmax(numbers)
        self.low = min(self.low, float(low))
        self.high = max(self.high, float(high))
        self.total += float(numbers.sum())
        assert self.numbers is not None
        self.numbers.add(sketch.number_hashes(numbers))

    def _turn_text(self) -> None:
        """A value that is not a number: the column is text from now on. The numbers
        seen so far join its counts, written as numbers are (1, 2.5)."""
        self.numeric = False
        numbers, self.numbers = self.numbers, None
        assert numbers is not None
        # Text that reads as a number is counted by value only to match numbers
        # already counted; a column text from its first batch counts text as text
        # (and skips a float() per value once estimating).
        self.by_value = numbers.count() > 0
        if not numbers.exact:  # over exact_distinct numbers: an estimate from here on
            self.exact = False
            self.text_sketch = numbers  # by value, as the text that reads as a number
            return
        hashes, counts = numbers.counts()
        if len(hashes):
            values = sketch.unmix(hashes).view(np.float64).tolist()
            texts = [str(int(v)) if self.integral and v.is_integer() else repr(v) for v in values]
            self.counts = [
                pa.StructArray.from_arrays([pa.array(texts, pa.string()), pa.array(counts)], ["values", "counts"])
            ]
            self.pending = len(texts)
            self.pending_bytes = self.counts[0].nbytes

    def _add_text(self, values: pa.Array) -> None:
        if self.exact:
            counts = pc.value_counts(values)  # all in Arrow: no Python object per value
            self.counts.append(counts)
            self.pending += len(counts)
            self.pending_bytes += counts.nbytes
            sizes = self.sizes
            if (  # bounded whatever the file size
                self.pending > 4 * sizes.exact_distinct
                or self.pending_bytes > sizes.text_bytes
                or len(self.counts) >= sizes.batches
            ):
                self._merge()
            return
        assert self.text_sketch is not None
        self.text_sketch.add(self._hashes(values))  # repeats cost nothing in the estimate

    def _hashes(self, values: pa.Array) -> sketch.Hashes:
        """Hashes of text values (no nulls) for the estimate: by content or, in a
        column that counted numbers before it turned text, by value for the text
        that reads as a number (as those numbers were counted)."""
        if not self.by_value:
            return _string_hashes(values)
        reads_as_number = pc.match_substring_regex(values, _NUMBER.pattern)
        numbers = values.filter(reads_as_number)
        try:
            as_float = pc.cast(numbers, pa.float64())
        except pa.ArrowInvalid:  # a form float() reads and Arrow does not (say, spaces around it)
            as_float = pa.array([float(v) for v in numbers.to_pylist()], pa.float64())
        texts = values.filter(pc.invert(reads_as_number))
        return np.concatenate([sketch.number_hashes(as_float.to_numpy(zero_copy_only=False)), _string_hashes(texts)])

    def _merge(self) -> pa.Table:
        """Fold the per-batch counts into one table; past exact_distinct values
        (or text_bytes), switch to the estimate."""
        # Sum the counts per value: dictionary_encode + bincount rather than
        # Table.group_by, whose engine (pyarrow.acero) costs 40 MB to load.
        encoded = pc.dictionary_encode(pa.concat_arrays([c.field("values") for c in self.counts]))
        counts = pa.concat_arrays([c.field("counts") for c in self.counts]).to_numpy(zero_copy_only=False)
        index = encoded.indices.to_numpy(zero_copy_only=False)
        sums = np.bincount(index, weights=counts, minlength=len(encoded.dictionary)).astype(np.int64)
        table = pa.Table.from_arrays([encoded.dictionary, pa.array(sums)], names=["value", "count_sum"])
        self.counts = [
            pa.StructArray.from_arrays(
                [c.chunk(0) if c.num_chunks else c.combine_chunks() for c in table.columns], names=["values", "counts"]
            )
        ]
        self.pending = table.num_rows
        self.pending_bytes = self.counts[0].nbytes
        if table.num_rows > self.sizes.exact_distinct or self.pending_bytes > self.sizes.text_bytes:
            self.top = _top(table)
            self.text_sketch = self._distinct_sketch()
            values = table.column("value").combine_chunks()
            self.text_sketch.add(self._hashes(values))
            self.exact = False
            self.counts = []
        return table

    def _distinct(self) -> tuple[int, bool, list[str], set[str]]:
        """Distinct count, whether exact, top values and (when few) the values themselves."""
        if self.numbers is not None:
            return self.numbers.count(), self.numbers.exact, [], set()
        if not self.exact:
            assert self.text_sketch is not None
            return self.text_sketch.count(), False, self.top, set()
        if not self.counts:
            return 0, True, [], set()
        return self._merged_distinct()

    def _merged_distinct(self) -> tuple[int, bool, list[str], set[str]]:
        """_distinct of the exact text counts, merged: the merge may switch to the estimate."""
        table = self._merge()
        if not self.exact:
            return self._distinct()
        few = set(table.column("value").to_pylist()) if table.num_rows <= 2 else set()
        return table.num_rows, True, _top(table), few

    def profile(self, rows: int) -> ColumnProfile:
        distinct, exact, top, few = self._distinct()
        kind = self._type(rows, distinct, exact, few)
        result = ColumnProfile(
            name=self.name,
            index=self.index,
            inferred_type=kind,
            missing_count=self.missing,
            distinct_count=distinct,
            distinct_is_estimate=not exact,
        )
        if self.numeric and self.present and kind in ("numeric", "identifier"):
            result.min, result.max, result.mean = self.low, self.high, self.total / self.present
        if kind in ("categorical", "boolean"):
            result.top_values = top
        return result

    def _type(self, rows: int, distinct: int, exact: bool, few: set[str]) -> str:
        """Rules, in order:
        - unspecified: no value at all;
        - numeric: every value is a number; 0/1 columns stay numeric. An integer
          column holding each of min..max exactly once (a row counter) is an identifier;
        - boolean: at most two values, all true/false, yes/no, t/f or y/n words;
        - datetime: every sampled value is an ISO date or timestamp;
        - identifier: a distinct value on every row (20+ rows) without spaces (codes, ids);
        - text: mostly distinct values with spaces (names, comments);
        - categorical: the rest."""
        if self.present == 0:
            return "unspecified"
        all_distinct = exact and distinct == self.present == rows and rows >= 20
        if self.numeric:
            sequential = self.integral and self.high - self.low + 1 == rows
            return "identifier" if all_distinct and sequential else "numeric"
        if few and {v.lower() for v in few} <= BOOLEAN_WORDS:
            return "boolean"
        if self.sample and all(_DATE.match(v.strip()) for v in self.sample):
            return "datetime"
        spaces = sum(v.strip().count(" ") for v in self.sample) / max(1, len(self.sample))
        if (all_distinct or (not exact and distinct >= 0.95 * self.present)) and spaces < 0.5:
            return "identifier"
        if distinct > 0.5 * self.present and spaces >= 1:
            return "text"
        return "categorical"


def _string_hashes(values: pa.Array) -> sketch.Hashes:
    """sketch.string_hashes of a string array without nulls, from its buffers."""
    _, offsets, data = values.buffers()
    positions = np.frombuffer(offsets, dtype=np.int32)[values.offset : values.offset + len(values) + 1]
    return sketch.string_hashes(positions, np.frombuffer(data, dtype=np.uint8) if data else np.empty(0, np.uint8))


def _top(table: pa.Table, n: int = 5) -> list[str]:
    order = pc.sort_indices(table, sort_keys=[("count_sum", "descending"), ("value", "ascending")])
    return cast("list[str]", table.column("value").take(order[:n]).to_pylist())  # pyarrow is untyped


# ---------------------------------------------------------------------- reader


def _open(
    scanner: _Scanner, fmt: CsvFormat, types: list[pa.DataType], skip: int, block: int
) -> pacsv.CSVStreamingReader:
    # The header's column count, given: left to pyarrow, it would take the first
    # data row's, and a first row with more or fewer fields would pass the reader
    # (a batch of the wrong width) or blame the row after it.
    names = [f"f{i}" for i in range(len(types))]
    return pacsv.open_csv(
        scanner,
        read_options=pacsv.ReadOptions(
            use_threads=False,  # exact row numbers in errors; the statistics run beside it (_parsed_ahead)
            block_size=block,
            skip_rows=skip,
            column_names=names or None,
            autogenerate_column_names=not names,
            encoding=fmt.encoding,
        ),
        parse_options=pacsv.ParseOptions(
            delimiter=fmt.delimiter, quote_char=fmt.quote_char, newlines_in_values=True, ignore_empty_lines=True
        ),
        convert_options=pacsv.ConvertOptions(
            column_types={f"f{i}": kind for i, kind in enumerate(types)},
            check_utf8=False,  # the scanner decoded every byte already (pyarrow transcodes other encodings)
            null_values=list(fmt.na_values),
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        ),
    )


def _batches(
    scanner: _Scanner, fmt: CsvFormat, limits: Limits | None = None, readahead: _Readahead | None = None
) -> tuple[list[str], pacsv.CSVStreamingReader]:
    limits = limits or Limits()
    header, blank_lines = _read_header(scanner, fmt, limits)
    if fmt.has_header:
        _check_header(header, limits)
    names = header if fmt.has_header else [csvformat.column_name(i) for i in range(len(header))]
    scanner.readahead = readahead  # from here on, every read is a block of the CSV reader
    as_text = [pa.string()] * len(header)
    skip = 1 + blank_lines if fmt.has_header else 0  # blank lines are rows to skip_rows (else the header is data)
    block = _block(limits)
    if readahead is None:
        return names, _open(scanner, fmt, as_text, skip, block)
    with readahead.waiting():  # opening parses the first block
        return names, _open(scanner, fmt, as_text, skip, block)


def _block(limits: Limits) -> int:
    """The reader's block, no smaller than PARSE_BLOCK. pyarrow needs the header
    and the first row in its first block, and any row within one block (else
    "straddling object"): twice the longest line (and its line break) lets every
    line the scanner passes through."""
    return max(PARSE_BLOCK, 2 * (limits.max_line_bytes + 1))


def _reader_error(exc: pa.ArrowInvalid, fmt: CsvFormat, lines: int, limits: Limits) -> CsvFormatError:
    text = str(exc)
    if "straddling object" in text:  # a row longer than a block: line breaks in quoted fields
        return CsvLimitError(
            f"a row is longer than {_block(limits):,} bytes with the line breaks inside its quoted fields (twice "
            "AUTOML_CSV_MAX_LINE_BYTES, or 512 KiB): check the quotes, or ask the operator to raise the limit"
        )
    match = re.search(r"Row #(\d+): Expected (\d+) columns, got (\d+)", text)
    if match:
        row, expected, got = (int(g) for g in match.groups())  # pyarrow's rows count the skipped header
        source = "as in the header" if fmt.has_header else "as in the first row"
        if got < expected and "\n" in text.split(": ", 2)[-1]:
            return CsvFormatError(f"row {row} opens a quoted field that never closes (check the quotes)", row)
        fields = "field" if got == 1 else "fields"
        return CsvFormatError(f"row {row} has {got} {fields}, expected {expected} ({source})", row)
    if "Empty CSV file" in text:
        if lines <= 1:
            return CsvFormatError(
                "the file has a header but no data rows" if fmt.has_header else "the file has no rows"
            )
        return CsvFormatError(
            "a quoted field never closes, or its row is longer than "
            f"{_block(limits):,} bytes with the line breaks inside its quotes: check the quote characters",
            2,
        )
    if "CSV parse error" in text:
        return CsvFormatError(f"the file cannot be read as CSV: {text.split(': ', 1)[-1][:200]}")
    return CsvFormatError(f"the file cannot be read as CSV: {text[:200]}")


def _parsed_ahead(reader: pacsv.CSVStreamingReader, readahead: _Readahead) -> Iterator[pa.RecordBatch]:
    """The reader's batches, parsed in a thread of their own while the caller
    computes the statistics of the previous ones. Both halves spend most of their
    time in pyarrow and numpy kernels, which release the GIL: with a core free
    for each, the profile runs at the pace of the slower half rather than of
    both together (1.5x the rate on 2 cores, bench/csv_profile.py). Errors of the
    reader (and of the bytes it reads) are raised here, in the caller's thread."""
    ready: queue.Queue[object] = queue.Queue(maxsize=BATCHES_AHEAD)
    stop = threading.Event()

    def hand_over(item: object) -> None:
        while not stop.is_set():
            with contextlib.suppress(queue.Full):
                ready.put(item, timeout=0.05)
                return

    def parse() -> None:
        try:
            while not stop.is_set():
                with readahead.waiting():
                    batch = reader.read_next_batch()
                readahead.took()
                hand_over(batch)
        except StopIteration:
            hand_over(_PARSED)
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
            hand_over(exc)

    parser = threading.Thread(target=parse, name="csv-parse", daemon=True)
    parser.start()
    try:
        while (item := ready.get()) is not _PARSED:
            if isinstance(item, BaseException):
                raise item
            yield item
        parser.join()
    finally:
        # Stopped early (an error, or the caller gave up): the parser ends at its
        # next batch, or at once if it waits for a block (closing releases it).
        stop.set()
        readahead.close()


def profile_csv(source: Readable, fmt: CsvFormat, limits: Limits | None = None) -> CsvProfile:
    """Read `source` to its end; the profile, or CsvFormatError (CsvLimitError past `limits`)."""
    check_format(fmt)
    limits = limits or Limits()
    _load()
    scanner = _Scanner(source, fmt.encoding, limits.max_line_bytes)
    readahead = _Readahead(READAHEAD_BLOCKS)
    names: list[str] = []
    rows = 0
    try:
        # The header is read and its columns counted before any column's statistics exist.
        names, reader = _batches(scanner, fmt, limits, readahead)
        sizes = Sizes.of(len(names))
        columns = [_Column(name, i, sizes) for i, name in enumerate(names)]
        first_row = 2 if fmt.has_header else 1
        for batch in _parsed_ahead(reader, readahead):
            for column, values in zip(columns, batch.columns, strict=True):
                # A column's bytes in the batch bound each of its fields: most batches need no lengths.
                if values.nbytes > limits.max_field_bytes:
                    _check_fields(values, column.name, first_row + rows, limits)
                column.add(values)
            rows += batch.num_rows
    except pa.ArrowInvalid as exc:
        raise _reader_error(exc, fmt, scanner.lines, limits) from None
    finally:
        readahead.close()
    if rows == 0:
        raise CsvFormatError("the file has a header but no data rows" if fmt.has_header else "the file has no rows")
    return CsvProfile(rows, [column.profile(rows) for column in columns])


def _check_fields(values: pa.Array, name: str, first_row: int, limits: Limits) -> None:
    """CsvLimitError naming the longest field of `values` (rows from `first_row`) when it is over the limit."""
    lengths = pc.binary_length(values)
    longest = pc.max(lengths).as_py()
    if longest is None or longest <= limits.max_field_bytes:
        return
    at = pc.index(lengths, longest).as_py()
    raise CsvLimitError(
        f"row {first_row + at}, column {name!r}: a field of {longest:,} bytes, longer than "
        f"{limits.max_field_bytes:,} (AUTOML_CSV_MAX_FIELD_BYTES): check the quotes, or ask the operator to raise it",
        first_row + at,
        name,
    )


def read_preview(source: BinaryIO, fmt: CsvFormat, rows: int) -> tuple[list[str], list[list[object]]]:
    """Column names and the first `rows` rows: numbers as numbers (for columns
    numeric in the preview), missing values as None, the rest as text. Reads a
    prefix of `source` (1 MiB, more only if the rows need it), never all of it."""
    _load()
    prefix = b""
    limit = BLOCK
    while True:
        more = source.read(limit - len(prefix))
        prefix += more
        complete = not more or len(prefix) < limit
        cut = prefix if complete else prefix[: prefix.rfind(b"\n") + 1]
        names, table = _parse_prefix(cut, fmt)
        if complete or table.num_rows > rows or limit >= 64 * BLOCK:
            break
        limit *= 4
    table = table.slice(0, rows)
    out_columns = []
    for column in table.columns:
        values = column.to_pylist()
        if all(v is None or _NUMBER.match(v) for v in values):
            values = [None if v is None else _number(v) for v in values]
        out_columns.append(values)
    return names, [list(row) for row in zip(*out_columns, strict=True)]


def _parse_prefix(data: bytes, fmt: CsvFormat) -> tuple[list[str], pa.Table]:
    # A stored file passed the limits it was uploaded under: these only have
    # to let any of them through (the settings may have been lowered since).
    limits = Limits(max_columns=1 << 30, max_line_bytes=8 << 20, max_field_bytes=8 << 20)
    scanner = _Scanner(io.BytesIO(data), fmt.encoding, limits.max_line_bytes)
    try:
        names, reader = _batches(scanner, fmt, limits)
        return names, reader.read_all()
    except pa.ArrowInvalid as exc:
        raise _reader_error(exc, fmt, scanner.lines, limits) from None


def _number(text: str) -> int | float:
    value = float(text)
    return int(value) if value.is_integer() and re.fullmatch(r"\s*[-+]?\d+\s*", text) else value
