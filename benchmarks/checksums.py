"""What needle's checksums cost, measured side by side with the work they protect.

Three rows, each one run of each side on this machine:

* cache: hashing every file of an activation cache (SHA-256, what extraction
  adds at its end and ``needle cache verify`` does) against reading the same
  bytes without hashing, and against the cheap checks ``load_cache`` does on
  every open (sizes, ``.npy`` headers, Parquet footers);
* results: reading a table of ``--rows`` result rows with its page checksums
  and content digest verified (``needle._checksums.read_parquet``, what
  ``load_results`` does) against a plain ``pyarrow.parquet.read_table`` of the
  same table written without them;
* writing that table with checksums against without (both atomically, with
  ``fsync``).

Usage::

    python benchmarks/checksums.py --cache /tmp/bench/work/cache-minilm-ewt-dev [--rows 50000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def seconds(function, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best


def read_all(directory: Path) -> None:
    for path in sorted(directory.iterdir()):
        with open(path, "rb") as handle:
            while handle.read(1 << 22):
                pass


def results_table(rows: int) -> pd.DataFrame:
    """``rows`` result rows shaped like a sweep's (same columns, lists of neurons and coefficients, JSON params)."""
    from needle.probing import ArraySource, sweep

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 64)).astype(np.float32)
    y = (X[:, 0] + rng.normal(size=400) > 0).astype(int)
    one = sweep(ArraySource({0: X}, {"f": (np.arange(400), y)}, groups=np.arange(400) // 4), out=None,
                methods=["mean_diff"], ks=[1, 2, 4, 8, 16, 32], progress=False)
    copies = []
    for i in range(-(-rows // len(one))):
        copy = one.copy()
        copy["feature"] = f"f{i}"
        copies.append(copy)
    return pd.concat(copies, ignore_index=True).iloc[:rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, required=True, help="An activation cache directory.")
    parser.add_argument("--rows", type=int, default=50_000, help="Rows of the results table.")
    args = parser.parse_args()

    from needle._checksums import file_records, read_parquet, write_parquet
    from needle._io import atomic_file
    from needle.activations import load_cache
    from needle.probing.results import _COLUMNS, RESULT_SCHEMA, _conform

    names = sorted(p.name for p in args.cache.iterdir() if p.name != "manifest.json")
    size = sum((args.cache / n).stat().st_size for n in names)
    read_all(args.cache)  # warm the page cache so both sides read from memory
    plain = seconds(lambda: read_all(args.cache))
    hashed = seconds(lambda: file_records(args.cache, names))
    opened = seconds(lambda: load_cache(args.cache), repeat=5)
    print(f"cache {args.cache} ({size / 2**20:.0f} MiB, {len(names)} files)")
    print(f"  read every byte          {plain:7.3f} s")
    print(f"  SHA-256 of every byte    {hashed:7.3f} s   ({hashed / plain:.1f}× reading; {size / hashed / 2**20:.0f} MiB/s)")
    print(f"  load_cache checks        {opened * 1e3:7.1f} ms  ({opened / hashed * 100:.2f} % of hashing)")

    frame = results_table(args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        checked, bare = Path(tmp) / "checked.parquet", Path(tmp) / "bare.parquet"
        table = pa.Table.from_pandas(_conform(frame)[_COLUMNS], schema=RESULT_SCHEMA, preserve_index=False)

        def write(path, writer):
            with atomic_file(path) as handle:
                writer(table, handle)

        write_checked = seconds(lambda: write(checked, write_parquet))
        write_bare = seconds(lambda: write(bare, pq.write_table))
        load_checked = seconds(lambda: read_parquet(checked, "results table", "-"))
        load_bare = seconds(lambda: pq.read_table(bare))
        print(f"results table, {len(frame)} rows ({checked.stat().st_size / 2**20:.1f} MiB)")
        print(f"  read, verified           {load_checked:7.3f} s   plain read_table  {load_bare:7.3f} s   "
              f"({load_checked / load_bare:.2f}×)")
        print(f"  write, with checksums    {write_checked:7.3f} s   plain write_table {write_bare:7.3f} s   "
              f"({write_checked / write_bare:.2f}×)")


if __name__ == "__main__":
    main()
