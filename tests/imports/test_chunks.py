"""A CSV file stored for a worker keeps its own text (reader.read_csv_batches): reading the
stored chunks back must give exactly the records the file's own reading gives, whatever the
file holds — quoted line breaks, blank lines, short and long records, codes given twice, bytes
that are not UTF-8 — and wherever the batches are cut."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voucherd.errors import InvalidInput
from voucherd.imports.reader import FileFormat, Record, read_csv_batches, read_records
from voucherd.imports.service import decode_chunk, encode_csv_chunk

HEADER = ["code", "value", "metadata.note"]

values = st.text(alphabet=st.sampled_from('ab1,"\n\r ;\\é'), max_size=6)
codes = st.sampled_from(["A", "B", "C", "a,b", 'q"q', "line\nbreak", ""])
records: st.SearchStrategy[list[str]] = st.one_of(
    st.tuples(codes, values, values).map(list),  # a record as the header has it
    st.lists(values, min_size=1, max_size=5),  # too few or too many fields
    st.just([]),  # a blank line
)


def _file(rows: list[list[str]], *, ending: str, tail: bytes) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator=ending)
    writer.writerow(HEADER)
    for row in rows:
        if row:
            writer.writerow(row)
        else:
            out.write(ending)
    return out.getvalue().encode() + tail


def _stored(data: bytes, size: int) -> list[Record]:
    batches = list(read_csv_batches(io.BytesIO(data), size))
    assert all(0 < batch.records <= size for batch in batches)
    back = [decode_chunk(encode_csv_chunk(batch)) for batch in batches]
    assert [len(records) for records in back] == [batch.records for batch in batches]
    return [record for records in back for record in records]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(records, max_size=25),
    ending=st.sampled_from(["\n", "\r\n"]),
    tail=st.sampled_from([b"", b"Z,1,x\n", b"\xff\xfe,1,x\n", b'"open,1', b"N\x00L,1,x\n"]),
    size=st.sampled_from([1, 2, 7, 5000]),
)
def test_stored_chunks_read_back_as_the_file_reads(
    rows: list[list[str]], ending: str, tail: bytes, size: int
) -> None:
    data = _file(rows, ending=ending, tail=tail)
    assert _outcome(lambda: _stored(data, size)) == _outcome(
        lambda: list(read_records(io.BytesIO(data), FileFormat.CSV))
    )


def _outcome(read: Callable[[], list[Record]]) -> list[Record] | str:
    """The records read, or the refusal of the whole file (a file whose first block of bytes
    is not UTF-8 is refused at its header, by either way of reading it)."""
    try:
        return read()
    except InvalidInput as exc:
        return exc.detail


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"code,colour\nA,red\n", "line 1, column 'colour': no such column"),
        (b"value\n100\n", "line 1: the header has no 'code' column"),
        (b"code,code\nA,B\n", "line 1: a column is named twice"),
    ],
)
def test_a_bad_header_refuses_the_file_as_the_file_reading_does(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidInput) as stored:
        _stored(data, 10)
    with pytest.raises(InvalidInput) as read:
        list(read_records(io.BytesIO(data), FileFormat.CSV))
    assert reason in stored.value.detail
    assert stored.value.detail == read.value.detail


def test_an_empty_file_stores_nothing() -> None:
    assert list(read_csv_batches(io.BytesIO(b""), 10)) == []


@pytest.mark.parametrize("size", [7, 5000])
def test_a_file_that_stops_being_utf8_midway_names_the_line_in_both_ways(size: int) -> None:
    good = "".join(f"CODE-{i},100,note {i}\n" for i in range(3000)).encode()
    data = b"code,value,metadata.note\n" + good + b"BAD-\xff,100,x\nAFTER,100,x\n"

    stored = _stored(data, size)

    assert stored == list(read_records(io.BytesIO(data), FileFormat.CSV))
    # The text is decoded a block at a time: the rows before the block that holds the bad
    # byte are read, and the reading stops at the first line that block would have given.
    *read, last = stored
    assert len(read) > 2000
    assert [r.fields["code"] for r in read if r.fields] == [f"CODE-{i}" for i in range(len(read))]
    assert last.line == len(read) + 2
    assert last.problem is not None
    assert last.problem.reason.startswith("not UTF-8")
