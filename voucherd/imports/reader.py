"""Reading an import file as a stream of records, whatever its size.

CSV (a header line, then one voucher per record; quoted fields may hold line breaks) or JSON
lines (one object per line). The file is read once, front to back, never held whole: memory
stays flat for a million rows. What can be judged without the campaign is judged here (a
malformed line, a record with the wrong number of fields, a code given twice in the file); the
rest is judged row by row against the campaign (schemas.read_row).

A code seen twice is caught by a set of its 64-bit hashes rather than of the codes themselves:
about 70 MB for a million codes instead of twice that. The hash is Python's own string hash
(SipHash, keyed afresh in every process, so a file cannot be crafted to collide): the set lives
only while one process reads one file, and it costs a tenth of a cryptographic digest. Two
different codes sharing a hash (about one chance in 4 x 10^7 for a million rows) would wrongly
refuse the second; it is named, so it can be imported on its own.

A record is a named tuple, not a dataclass: a million of them are built for a million rows,
and a tuple is built in a fraction of the time. A CSV file stored for a worker
(:func:`read_csv_batches`) builds none on the way in: its batches keep the file's own text, and
the worker reads each back into records (:func:`csv_batch_records`).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Iterator
from enum import StrEnum
from typing import IO, Any, NamedTuple

from voucherd.errors import ErrorCode, InvalidInput
from voucherd.imports.schemas import COLUMNS, Problem, unknown_column

csv.field_size_limit(1 << 20)


class FileFormat(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"


class Record(NamedTuple):
    line: int
    fields: dict[str, Any] | None  # None when ``problem`` says why it could not be read
    problem: Problem | None = None


def detect_format(head: bytes, *, hint: str | None = None) -> FileFormat:
    """The format a name or media type says, else the first byte: ``{`` starts JSON lines."""
    hint = (hint or "").lower().split(";")[0].strip()  # a media type's parameters aside
    if hint.endswith((".jsonl", ".ndjson", "json-seq", "x-ndjson", "jsonl", "/json")):
        return FileFormat.JSONL
    if hint.endswith((".csv", "/csv")):
        return FileFormat.CSV
    return FileFormat.JSONL if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") else (
        FileFormat.CSV
    )  # fmt: skip


def read_records(source: IO[bytes], file_format: FileFormat) -> Iterator[Record]:
    """Every record of the file, in order, with duplicates of an earlier code named."""
    seen: set[int] = set()
    reader = _csv_records if file_format is FileFormat.CSV else _json_records
    for record in reader(source):
        code = record.fields.get("code") if record.fields is not None else None
        if isinstance(code, str) and code:
            digest = hash(code)
            if digest in seen:
                yield Record(record.line, None, _given_earlier(record.line))
                continue
            seen.add(digest)
        yield record


def _given_earlier(line: int) -> Problem:
    return Problem(
        line, "code", ErrorCode.DUPLICATE_CODE,
        "this code is given earlier in the file; only its first row is imported",
    )  # fmt: skip


class CsvBatch(NamedTuple):
    """A run of a CSV file's records as the file spells them (a stored import chunk): its
    lines from ``first_line`` on, and the problems found in them while the file was read."""

    first_line: int
    header: list[str]
    text: str
    problems: dict[int, Problem]  # by line
    records: int


def read_csv_batches(source: IO[bytes], size: int) -> Iterator[CsvBatch]:
    """The CSV file's records ``size`` at a time, each run kept as the file's own text.

    Storing a file for a worker needs only what the file's own reading judges (a record that
    cannot be read, a wrong number of fields, a code given twice) and where its records begin:
    keeping the text as it is spares building each record's fields twice (here and when the
    worker reads it back) and spelling them again. :func:`csv_batch_records` reads a batch
    back into exactly the records :func:`read_records` gives.
    """
    text = _text(source)
    taken: list[str] = []
    try:
        reader = csv.reader(_kept(text, taken))
        header = _header(reader)
        if header is None:
            return
        code_at = header.index("code")
        seen: set[int] = set()
        taken.clear()
        first = reader.line_num + 1
        problems: dict[int, Problem] = {}
        records = 0
        for line, values, problem in _csv_values(reader, header, 0):
            if values is None and problem is None:
                continue  # a blank line
            if problem is None and values and values[code_at]:
                digest = hash(values[code_at])
                if digest in seen:
                    problem = _given_earlier(line)
                else:
                    seen.add(digest)
            if problem is not None:
                problems[line] = problem
            records += 1
            if records == size:
                yield CsvBatch(first, header, "".join(taken), problems, records)
                taken.clear()
                first, problems, records = reader.line_num + 1, {}, 0
        if records:
            yield CsvBatch(first, header, "".join(taken), problems, records)
    finally:
        text.detach()  # the caller's file stays the caller's to close


def csv_batch_records(batch: CsvBatch) -> list[Record]:
    """A stored batch's records, with the lines and problems its file's reading gave them."""
    header, problems = batch.header, dict(batch.problems)
    reader = csv.reader(io.StringIO(batch.text, newline=""))
    records: list[Record] = []
    for line, values, _ in _csv_values(reader, header, batch.first_line - 1):
        if line in problems:
            records.append(Record(line, None, problems.pop(line)))
        elif values is not None:
            fields = {k: v for k, v in zip(header, values, strict=True) if v != ""}
            records.append(Record(line, fields))
    # A problem the text cannot show again: the file stopped being UTF-8 at its line.
    records.extend(Record(line, None, problem) for line, problem in sorted(problems.items()))
    return records


def _kept(lines: Iterator[str], taken: list[str]) -> Iterator[str]:
    for line in lines:
        taken.append(line)
        yield line


def _text(source: IO[bytes]) -> io.TextIOWrapper:
    return io.TextIOWrapper(source, encoding="utf-8-sig", newline="", errors="strict")


def _csv_records(source: IO[bytes]) -> Iterator[Record]:
    text = _text(source)
    try:
        yield from _csv_rows(csv.reader(text))
    finally:
        text.detach()  # the caller's file stays the caller's to close


def _csv_rows(reader: Any) -> Iterator[Record]:
    header = _header(reader)
    if header is None:
        return
    for line, values, problem in _csv_values(reader, header, 0):
        if problem is not None:
            yield Record(line, None, problem)
        elif values is not None:
            yield Record(line, {k: v for k, v in zip(header, values, strict=True) if v != ""})


def _header(reader: Any) -> list[str] | None:
    """The file's columns, checked; None for an empty file."""
    try:
        header = next(reader)
    except StopIteration:
        return None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InvalidInput(f"line 1 cannot be read: {exc}", field="file") from None
    header = [name.strip() for name in header]
    for name in header:
        if unknown_column(name):
            raise InvalidInput(
                f"line 1, column {name!r}: no such column; the columns are {', '.join(COLUMNS)}",
                field="file",
            )
    if "code" not in header:
        raise InvalidInput("line 1: the header has no 'code' column", field="file")
    if len(set(header)) != len(header):
        raise InvalidInput("line 1: a column is named twice", field="file")
    return header


def _csv_values(
    reader: Any, header: list[str], before: int
) -> Iterator[tuple[int, list[str] | None, Problem | None]]:
    """Each record's first line (``before`` plus the reader's count), its values, and the
    problem that refuses it (then the values are None if it could not be read at all); a blank
    line gives neither values nor a problem."""
    line = before + reader.line_num + 1
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except UnicodeDecodeError as exc:
            # The decoder cannot resync inside the file: nothing after this point is readable.
            yield line, None, Problem(line, None, ErrorCode.INVALID_INPUT, f"not UTF-8: {exc}")
            return
        except csv.Error as exc:
            yield line, None, Problem(line, None, ErrorCode.INVALID_INPUT, str(exc))
            line = before + reader.line_num + 1
            continue
        if not values or values == [""]:
            yield line, None, None
        elif len(values) != len(header):
            column = header[len(values)] if len(values) < len(header) else None
            reason = f"has {len(values)} fields; the header has {len(header)}"
            yield line, values, Problem(line, column, ErrorCode.INVALID_INPUT, reason)
        else:
            yield line, values, None
        line = before + reader.line_num + 1


def _json_records(source: IO[bytes]) -> Iterator[Record]:
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    for line, raw in enumerate(source, start=1):
        if not raw.strip():
            continue
        try:
            data = json.loads(decoder.decode(raw))
        except (UnicodeDecodeError, ValueError) as exc:
            reason = f"not a JSON object: {exc}"
            yield Record(line, None, Problem(line, None, ErrorCode.INVALID_INPUT, reason))
            continue
        if not isinstance(data, dict):
            reason = "not a JSON object"
            yield Record(line, None, Problem(line, None, ErrorCode.INVALID_INPUT, reason))
            continue
        yield Record(line, {k: v for k, v in data.items() if v is not None})
