"""The streaming CSV profiler on its own: byte-level checks across awkward
chunk boundaries, type rules, exact and estimated distinct counts, preview."""

from __future__ import annotations

import io

import numpy as np
import pytest

from services.storage.csvprofile import CsvFormat, CsvFormatError, check_format, profile_csv, read_preview


class Trickle(io.RawIOBase):
    """Hands out a few bytes per read(): every boundary is somewhere awkward."""

    def __init__(self, data: bytes, step: int = 7) -> None:
        self.data = data
        self.step = step
        self.at = 0

    def read(self, size: int = -1) -> bytes:
        out = self.data[self.at : self.at + min(self.step, size if size > 0 else self.step)]
        self.at += len(out)
        return out


def profile(data: bytes, step: int = 1 << 20, **fmt):
    return profile_csv(Trickle(data, step), CsvFormat(**fmt))


def columns(data: bytes, **fmt):
    return {c.name: c for c in profile(data, **fmt).columns}


def test_multibyte_characters_split_across_reads_are_valid():
    data = "ville,n\n" + "".join(f"Zürich-éàü-{i},{i}\n" for i in range(300))
    result = profile(data.encode(), step=7)
    assert result.row_count == 300
    assert result.columns[0].distinct_count == 300


def test_invalid_utf8_deep_in_the_file_names_its_line():
    data = b"a,b\n" + b"1,2\n" * 300_000 + b"3,\xff\n"
    with pytest.raises(CsvFormatError) as caught:
        profile(data, step=65536)
    assert caught.value.row == 300_002
    assert "line 300002 is not valid UTF-8 (byte 0xff" in str(caught.value)


def test_other_encodings_and_bom():
    assert list(columns("nom,prix\ncafé,1\n".encode("latin-1"), encoding="latin-1")) == ["nom", "prix"]
    assert list(columns(b"\xef\xbb\xbfa,b\n1,2\n")) == ["a", "b"]


def test_delimiter_quotes_and_multiline_fields():
    data = b'name;note\nx;"a;b"\ny;"two\nlines"\n'
    result = profile(data, delimiter=";")
    assert result.row_count == 2
    with pytest.raises(CsvFormatError) as caught:
        profile(b'a,b\n"x\ny",2\n3,4,5\n')
    assert str(caught.value) == "row 3 has 3 fields, expected 2 (as in the header)"


def test_no_header_names_columns():
    assert list(columns(b"1,2\n3,4\n", has_header=False)) == ["column_0", "column_1"]


def test_missing_values_and_custom_markers():
    cols = columns(b"a,b\n1,x\n,y\nNA,?\n4,z\n", na_values=("", "NA", "?"))
    assert cols["a"].missing_count == 2 and cols["b"].missing_count == 1
    assert (cols["a"].min, cols["a"].max, cols["a"].mean) == (1.0, 4.0, 2.5)


def test_type_rules():
    n = 200
    rng = np.random.default_rng(1)
    lines = ["id,amount,flag,when,city,code,comment,empty"]
    for i in range(n):
        lines.append(
            f"{i + 1},{rng.normal():.3f},{'yes' if i % 3 else 'no'},2024-01-{i % 28 + 1:02d},"
            f"{['Paris', 'Lyon'][i % 2]},K{i:05d},a comment number {i},"
        )
    cols = columns(("\n".join(lines) + "\n").encode())
    assert {name: c.inferred_type for name, c in cols.items()} == {
        "id": "identifier",
        "amount": "numeric",
        "flag": "boolean",
        "when": "datetime",
        "city": "categorical",
        "code": "identifier",
        "comment": "text",
        "empty": "unspecified",
    }
    assert cols["city"].top_values == ["Paris", "Lyon"] or cols["city"].top_values == ["Lyon", "Paris"]
    assert cols["empty"].missing_count == n


def test_distinct_is_exact_then_estimated():
    small = columns(b"v\n" + b"".join(f"{i % 500}\n".encode() for i in range(5000)))["v"]
    assert (small.distinct_count, small.distinct_is_estimate) == (500, False)
    big = columns(b"v,w\n" + b"".join(f"{i},k{i}\n".encode() for i in range(100_000)))
    for column in big.values():
        assert column.distinct_is_estimate
        assert abs(column.distinct_count - 100_000) / 100_000 < 0.03


def test_bad_options_are_refused():
    for fmt in (
        CsvFormat(delimiter=",,"),
        CsvFormat(delimiter="\n"),
        CsvFormat(quote_char=","),
        CsvFormat(encoding="x"),
    ):
        with pytest.raises(CsvFormatError):
            check_format(fmt)


def test_preview_reads_only_what_it_needs():
    data = b"a,b\n" + b"1,x\n" * 2_000_000  # 8 MB
    source = Trickle(data, step=1 << 20)
    names, rows = read_preview(source, CsvFormat(), 3)
    assert names == ["a", "b"] and rows == [[1, "x"], [1, "x"], [1, "x"]]
    assert source.at < 4 << 20


def test_a_numeric_column_that_turns_text_after_the_first_block():
    n = 200_000  # about 2.4 MB: the text comes many parse blocks after the first
    lines = ["small,wide,later_float"]
    for i in range(n):
        lines.append(f"{'' if i % 10 == 0 else i % 7},{i},{i % 5}")
    lines += ["seven,x,2.5", "NA,y,"]
    cols = columns(("\n".join(lines) + "\n").encode())
    small, wide, later_float = cols["small"], cols["wide"], cols["later_float"]
    assert small.inferred_type == "categorical"
    assert small.missing_count == n // 10 + 1
    assert (small.distinct_count, small.distinct_is_estimate) == (8, False)  # 0..6 and "seven"
    assert set(small.top_values) <= {str(d) for d in range(7)} and len(small.top_values) == 5
    assert small.min is None and small.mean is None
    assert wide.inferred_type == "identifier" and wide.missing_count == 0
    assert wide.distinct_is_estimate and abs(wide.distinct_count - (n + 2)) / n < 0.03
    assert later_float.inferred_type == "numeric" and later_float.missing_count == 1
    assert (later_float.min, later_float.max) == (0.0, 4.0)
    assert later_float.mean == pytest.approx((2 * n + 2.5) / (n + 1))
    assert (later_float.distinct_count, later_float.distinct_is_estimate) == (6, False)


def test_text_after_many_numbers_counts_numbers_by_value():
    """A column numeric for many batches (200,000 numbers, 1.3 MB) turns text:
    text that reads as a number is counted by value (12 and 12.0 once), the rest
    by content."""
    lines = ["v"] + [str(i) for i in range(200_000)] + ["text"]
    lines += [f"{i}.0" for i in range(200_000)] + [f"code{i}" for i in range(10_000)]
    col = columns(("\n".join(lines) + "\n").encode())["v"]
    assert col.inferred_type != "numeric" and col.distinct_is_estimate
    assert abs(col.distinct_count - 210_001) / 210_001 < 0.03, col.distinct_count


def test_numbers_are_distinct_by_value():
    col = columns(b"v\n1\n1.0\n01\n-0\n0\n2.50\n2.5\n")["v"]
    assert (col.inferred_type, col.distinct_count, col.distinct_is_estimate) == ("numeric", 3, False)


def test_the_csv_reader_reads_a_bounded_number_of_blocks_ahead(monkeypatch):
    """pyarrow's reader would read 32 blocks ahead of the profile (16 MiB);
    it is held to READAHEAD_BLOCKS, and a row that straddles blocks still reads."""
    from services.storage import csvprofile

    ahead: list[int] = []
    taken = 0

    class Watched(Trickle):
        def read(self, size: int = -1) -> bytes:
            ahead.append(self.at // csvprofile.PARSE_BLOCK - taken)
            return super().read(size)

    original = csvprofile._Readahead.took

    def took(self) -> None:
        nonlocal taken
        taken += 1
        original(self)

    monkeypatch.setattr(csvprofile._Readahead, "took", took)
    quoted = '"first line\nsecond line"'
    data = ("a,b\n" + "".join(f"{i},{quoted if i % 1000 == 0 else 'x'}\n" for i in range(1_000_000))).encode()
    result = profile_csv(Watched(data, 1 << 20), CsvFormat())
    assert result.row_count == 1_000_000
    assert len(data) > 16 * csvprofile.PARSE_BLOCK  # unbounded, the reader gets 15 ahead here
    assert max(ahead) <= csvprofile.READAHEAD_BLOCKS + 1  # (+1: the header is read first)


def test_readahead_lets_a_block_through_when_its_count_is_off():
    from services.storage.csvprofile import _Readahead

    readahead = _Readahead(1)
    assert readahead.before_read()
    with readahead.waiting():  # the reader waits for a block, but the count says it holds one
        assert readahead.before_read()  # released after the stall delay, not blocked for good
    readahead.close()
    assert not readahead.before_read()


def parse_threads_left(wait: float = 2.0) -> list[str]:
    """Names of the profile's parse threads still alive after `wait` seconds."""
    import threading
    import time

    deadline = time.monotonic() + wait
    while True:
        alive = [t.name for t in threading.enumerate() if t.name == "csv-parse"]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.02)


def test_a_ragged_row_deep_in_the_file_names_its_row():
    """Parsed in a thread of its own, a batch far into the file still fails the
    profile with the row that broke it, and the parse thread ends."""
    data = b"a,b\n" + b"1,2\n" * 400_000 + b"3,4,5\n" + b"1,2\n" * 1000
    with pytest.raises(CsvFormatError) as caught:
        profile(data, step=65536)
    assert caught.value.row == 400_002
    assert "row 400002 has 3 fields, expected 2" in str(caught.value)
    assert parse_threads_left() == []


def test_a_source_failing_mid_stream_fails_the_profile_with_its_error():
    class Broken(Trickle):
        def read(self, size: int = -1) -> bytes:
            if self.at > 3 << 20:
                raise ConnectionResetError("client went away")
            return super().read(size)

    data = b"a,b\n" + b"1,2\n" * 2_000_000
    with pytest.raises(ConnectionResetError, match="client went away"):
        profile_csv(Broken(data, 65536), CsvFormat())
    assert parse_threads_left() == []


def test_a_failure_in_the_statistics_stops_the_parse(monkeypatch):
    """The statistics fail while the parse thread is ahead of them: the error
    reaches the caller and the parse thread does not stay behind."""
    from services.storage import csvprofile

    calls = 0
    original = csvprofile._Column.add

    def add(self, values) -> None:
        nonlocal calls
        calls += 1
        if calls == 7:
            raise MemoryError("statistics failed")
        original(self, values)

    monkeypatch.setattr(csvprofile._Column, "add", add)
    data = b"a,b\n" + b"1,2\n" * 2_000_000
    with pytest.raises(MemoryError, match="statistics failed"):
        profile(data, step=65536)
    assert parse_threads_left() == []


def test_the_first_data_row_has_the_headers_field_count():
    """pyarrow took the first data row's width: one with more fields was a batch
    wider than the header (INTERNAL), one with fewer blamed the next row."""
    for data, message in [
        (b"a,b\n1,2,3\n", "row 2 has 3 fields, expected 2 (as in the header)"),
        (b"a,b\n1,2,3\n4,5,6\n", "row 2 has 3 fields, expected 2 (as in the header)"),
        (b"a,b\n1\n", "row 2 has 1 field, expected 2 (as in the header)"),
        (b"a,b\n1\n2,3\n", "row 2 has 1 field, expected 2 (as in the header)"),
    ]:
        with pytest.raises(CsvFormatError) as caught:
            profile(data)
        assert str(caught.value) == message and caught.value.row == 2
    with pytest.raises(CsvFormatError) as caught:
        read_preview(io.BytesIO(b"a,b\n1,2,3\n"), CsvFormat(), 5)
    assert "row 2 has 3 fields" in str(caught.value)


def test_blank_lines_before_the_header_do_not_make_it_a_row():
    result = profile(b"\n\r\n\na,b\n1,2\n")
    assert result.row_count == 1 and [c.name for c in result.columns] == ["a", "b"]
    with pytest.raises(CsvFormatError) as caught:
        profile(b"\n\na,b\n1,2,3\n")
    assert str(caught.value) == "row 4 has 3 fields, expected 2 (as in the header)"  # the file's line 4
