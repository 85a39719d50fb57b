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

A record is a named tuple, not a dataclass: a million of them are built on the way in and a
million more when a worker reads the stored chunks back, and a tuple is built in a fraction of
the time.
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
                problem = Problem(
                    record.line, "code", ErrorCode.DUPLICATE_CODE, "this code is given earlier "
                    "in the file; only its first row is imported"
                )  # fmt: skip
                yield Record(record.line, None, problem)
                continue
            seen.add(digest)
        yield record


def _text(source: IO[bytes]) -> io.TextIOWrapper:
    return io.TextIOWrapper(source, encoding="utf-8-sig", newline="", errors="strict")


def _csv_records(source: IO[bytes]) -> Iterator[Record]:
    text = _text(source)
    try:
        yield from _csv_rows(csv.reader(text))
    finally:
        text.detach()  # the caller's file stays the caller's to close


def _csv_rows(reader: Any) -> Iterator[Record]:
    try:
        header = next(reader)
    except StopIteration:
        return
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
    line = reader.line_num + 1
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except UnicodeDecodeError as exc:
            # The decoder cannot resync inside the file: nothing after this point is readable.
            yield Record(
                line, None, Problem(line, None, ErrorCode.INVALID_INPUT, f"not UTF-8: {exc}")
            )
            return
        except csv.Error as exc:
            yield Record(line, None, Problem(line, None, ErrorCode.INVALID_INPUT, str(exc)))
            line = reader.line_num + 1
            continue
        if not values or values == [""]:
            line = reader.line_num + 1
            continue
        if len(values) != len(header):
            column = header[len(values)] if len(values) < len(header) else None
            reason = f"has {len(values)} fields; the header has {len(header)}"
            yield Record(line, None, Problem(line, column, ErrorCode.INVALID_INPUT, reason))
        else:
            yield Record(line, {k: v for k, v in zip(header, values, strict=True) if v != ""})
        line = reader.line_num + 1


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
