"""Checksums that catch silent corruption of needle's artefacts.

Two kinds, both from the standard library or the file format itself:

* per-file SHA-256 digests and sizes (:func:`file_records`), recorded in a
  directory artefact's manifest; sizes are checked whenever it is opened
  (:func:`check_sizes`, free), digests by ``needle cache verify``
  (:func:`verify_files`, one read of every byte);
* for Parquet tables written alone (results, splits), Parquet's own CRC-32
  of every page (verified by the reader on every load) and a SHA-256 of the
  table's decoded content stored in the file's metadata
  (:func:`table_digest`), which also covers what page checksums do not: page
  headers and the footer. Loading checks both (:func:`read_parquet`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from needle.errors import FormatError

__all__ = ["file_records", "check_sizes", "verify_files", "table_digest", "write_parquet", "read_parquet",
           "checksum_state", "DIGEST_KEY"]

#: Key of the content digest in a Parquet file's key-value metadata.
DIGEST_KEY = b"needle.content_sha256"
_CHUNK = 1 << 22


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 4 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_records(directory: str | os.PathLike, names: list[str]) -> dict[str, dict[str, Any]]:
    """``{name: {"bytes": size, "sha256": digest}}`` of files in ``directory``, for a manifest."""
    directory = Path(directory)
    return {name: {"bytes": (directory / name).stat().st_size, "sha256": sha256_file(directory / name)}
            for name in names}


def check_sizes(directory: str | os.PathLike, records: dict[str, dict[str, Any]], remedy: str) -> None:
    """Refuse a file missing from ``directory`` or of another size than its manifest records (cheap: one stat each)."""
    directory = Path(directory)
    for name, record in records.items():
        try:
            size = (directory / name).stat().st_size
        except FileNotFoundError:
            raise FormatError(f"{directory} is incomplete: {name} is missing; {remedy}.") from None
        if size != record["bytes"]:
            raise FormatError(f"{directory / name} is {size} bytes but its manifest records {record['bytes']}: "
                              f"the file was truncated or replaced; {remedy}.")


def verify_files(directory: str | os.PathLike, records: dict[str, dict[str, Any]]) -> list[str]:
    """Re-hash every recorded file; return one line per problem (empty: all match)."""
    directory = Path(directory)
    problems = []
    for name, record in records.items():
        path = directory / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif path.stat().st_size != record["bytes"]:
            problems.append(f"{name}: {path.stat().st_size} bytes, the manifest records {record['bytes']}")
        elif sha256_file(path) != record["sha256"]:
            problems.append(f"{name}: SHA-256 differs from the manifest's (the bytes changed after writing)")
    return problems


# ------------------------------------------------------------------ Parquet tables
def table_digest(table: pa.Table) -> str:
    """SHA-256 of a table's decoded content: column names, nulls and values, independent of chunking and encoding,
    and its schema's key-value metadata (which steers the conversion to pandas).

    Strings and large strings, lists and large lists, dictionary-encoded and
    plain columns of the same values hash alike, so a table hashes the same
    before writing and after reading back.
    """
    digest = hashlib.sha256()
    digest.update(str(table.num_rows).encode())
    for key, value in sorted((table.schema.metadata or {}).items()):
        if key not in (DIGEST_KEY, b"ARROW:schema"):
            digest.update(b"\0meta\0" + key + b"\0" + value)
    for name in table.column_names:
        digest.update(b"\0column\0" + name.encode())
        _hash_array(digest, table.column(name).combine_chunks())
    return digest.hexdigest()


def _hash_array(digest, array: pa.Array) -> None:
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    kind = array.type
    digest.update(np.packbits(array.is_valid().to_numpy(zero_copy_only=False)).tobytes())
    array = array.drop_null()
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        digest.update(b"list")
        digest.update(pc.list_value_length(array).to_numpy(zero_copy_only=False).astype(np.int64).tobytes())
        _hash_array(digest, pc.list_flatten(array))
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind) \
            or pa.types.is_large_binary(kind):
        # As distinct values and the index of each: results repeat long JSON strings (params, manifest) on every row.
        encoded = pc.dictionary_encode(array.cast(pa.large_binary()))
        digest.update(b"bytes")
        digest.update(encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64).tobytes())
        values = encoded.dictionary
        n = len(values)
        offsets = np.frombuffer(values.buffers()[1], np.int64)[values.offset: values.offset + n + 1] if n else [0, 0]
        digest.update(np.diff(offsets).astype(np.int64).tobytes())
        data = values.buffers()[2]
        if data is not None and offsets[-1] > offsets[0]:
            digest.update(memoryview(data)[int(offsets[0]): int(offsets[-1])])
    else:
        values = array.to_numpy(zero_copy_only=False)
        digest.update(values.dtype.str.encode())
        digest.update(np.ascontiguousarray(values).tobytes())


def _digest_or_none(table: pa.Table) -> bytes | None:
    try:
        return table_digest(table).encode()
    except (pa.ArrowException, ValueError):  # a damaged column that cannot even be decoded
        return None


def write_parquet(table: pa.Table, where: Any) -> None:
    """Write ``table`` to a path or binary handle with page checksums and its content digest in the metadata.

    The digest is recorded with the table's row count and column names, so
    that a table another tool rewrote with columns dropped (pyarrow keeps the
    schema metadata through ``drop``) is told apart from a damaged one (see
    :func:`checksum_state`).
    """
    metadata = dict(table.schema.metadata or {})
    metadata.pop(DIGEST_KEY, None)
    table = table.replace_schema_metadata(metadata)
    record = {"sha256": table_digest(table), "rows": table.num_rows, "columns": table.column_names}
    metadata[DIGEST_KEY] = json.dumps(record).encode()
    pq.write_table(table.replace_schema_metadata(metadata), where, write_page_checksum=True)


def checksum_state(table: pa.Table) -> str:
    """``"verified"`` (the content matches its digest), ``"absent"`` (none recorded: an older needle), ``"stale"``
    (the recorded table's columns less some, as when another tool dropped columns keeping the metadata) or
    ``"corrupt"`` (anything else: damaged, or changed after writing)."""
    recorded = (table.schema.metadata or {}).get(DIGEST_KEY)
    if recorded is None:
        return "absent"
    try:
        record = json.loads(recorded)
        digest, rows, columns = record["sha256"], record["rows"], record["columns"]
        names = table.column_names
    except (ValueError, KeyError, TypeError):  # the record or a column name is damaged
        return "corrupt"
    if rows == table.num_rows and names != columns and [c for c in columns if c in names] == names:
        return "stale"  # a bit flip renames a column or changes a value; it does not remove a column
    if rows != table.num_rows or names != columns:
        return "corrupt"
    return "verified" if digest.encode() == _digest_or_none(table) else "corrupt"


def read_parquet(path: str | os.PathLike, what: str, remedy: str, *, columns: list[str] | None = None) -> pa.Table:
    """Read a Parquet file, verifying its page checksums and (when recorded and ``columns`` is None) its content digest.

    Raises
    ------
    FormatError
        The file is not readable Parquet, a page checksum fails, or the
        content digest differs: ``"<path> is corrupt (…); <remedy>."``.
    """
    path = Path(path)
    try:
        table = pq.read_table(path, columns=columns, page_checksum_verification=True)
    except (pa.ArrowException, OSError, ValueError) as exc:
        message = str(exc).splitlines()[0].replace(f"Could not open Parquet input source '{path}': ", "")
        raise FormatError(f"{path} is not a readable {what} ({message[:160]}); {remedy}.") from None
    try:  # names and the pandas metadata are decoded lazily: a damaged byte there fails here, not in the caller
        table.column_names, table.schema.pandas_metadata
    except (UnicodeDecodeError, ValueError):
        raise FormatError(f"{path} is corrupt: its schema cannot be decoded; {remedy}.") from None
    if columns is None and checksum_state(table) == "corrupt":
        raise FormatError(f"{path} is corrupt: its content no longer matches the checksum recorded when it was "
                          f"written (damaged, or changed by another tool); {remedy}.")
    return table
