"""Engine ``stream``: read the window through a server-side cursor, write JSON Lines, CSV or
Parquet to S3 by multipart upload.

CrateDB has no ``COPY ... TO STDOUT`` and no ROLLBACK, so the rows come through
``DECLARE ... NO SCROLL CURSOR WITH HOLD`` cursors over sub-windows in autocommit mode, all
declared before the first ``FETCH FORWARD`` and read by several connections (:func:`reader_count`,
:func:`cursor_windows`), each cursor closed explicitly. By default the sub-windows come from a
histogram of the window and are read through CrateDB's fetch phase where a probe finds it faster
(:func:`balanced_cuts`, :func:`fetch_phase_pays`). Each result becomes an Arrow record batch
(typed from the column OIDs, ``readers.py``) and is encoded column by column (``formats/``). Files
roll over at ``file_size_mb`` (``part-00000``, ``part-00001``, ...); parts upload while the next
batch is read. Memory is bounded by the read's budget (:func:`read_budget`), one Parquet row group
and two upload parts, whatever the table size. Objects appear only when their upload completes.
"""

from __future__ import annotations

import functools
import gc
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import psycopg
import pyarrow as pa
import pyarrow.compute as pc

from cratedb_airflow_export import sql
from cratedb_airflow_export.engines.base import Engine, ExportJob, ExportResult
from cratedb_airflow_export.errors import SourceError, WindowViolation
from cratedb_airflow_export.formats import FORMATS, encoder_class, make_encoder
from cratedb_airflow_export.formats.base import Encoder, TextEncoder
from cratedb_airflow_export.formats.fields import is_json
from cratedb_airflow_export.formats.jsonl import LISTED_COLUMNS
from cratedb_airflow_export.formats.objects import StructColumns
from cratedb_airflow_export.progress import progress_line
from cratedb_airflow_export.readers import (
    AdbcReader,
    CursorReader,
    FetchBudget,
    ParallelReader,
    Piece,
    Prefetcher,
    adbc_available,
    register_loaders,
)
from cratedb_airflow_export.schema import object_keys
from cratedb_airflow_export.source import connect, execute, shut_down
from cratedb_airflow_export.storage import StoredObject
from cratedb_airflow_export.windows import TimeRange

if TYPE_CHECKING:
    from cratedb_airflow_export.attempt import Attempt
    from cratedb_airflow_export.credentials import StoreCredentials
    from cratedb_airflow_export.source import SourceInfo
    from cratedb_airflow_export.storage import Store, Writer

log = logging.getLogger(__name__)
PROGRESS_SECONDS = 10.0
ENCODE_THREADS = 2
ENCODE_AHEAD = 4  # encoded chunks waiting to be written: bounds memory
# Rows per JSON Lines/CSV chunk (smaller batches are gathered into one): each chunk pays the Arrow
# kernels' fixed costs once. 2,000,000 rows of metrics as JSON Lines: 1.06 s of encoding in
# chunks of 10,000 rows, 0.78 s in chunks of 20,000 (CSV 0.91 s -> 0.74 s).
ENCODE_CHUNK_ROWS = 25_000
# The cursor path (CrateDB's): connections reading at once when ``cursors`` is not set, and what
# their results may hold (readers.FetchBudget); the window is cut in PIECES_PER_READER sub-windows
# per connection. With one fixed sub-window per connection a day of evenly spread rows read 30%
# slower on CrateDB: the fastest cursor finished in a third of the time of the slowest.
DEFAULT_READERS, MIN_READERS, MAX_READERS = 4, 2, 16
PIECES_PER_READER = 4
READ_BUDGET_BYTES = 48 * 1024 * 1024
# CrateDB's fetch phase (``fetch_phase``, Dialect.query_then_fetch). A SELECT with a LIMIT reads row
# ids first and then the rows in id order, from stored documents read sequentially: on the tutorial
# table CrateDB spends 8 CPU-s instead of 14.5 on 2,000,000 rows (6.4.3). The rows of a fetch are held
# on the node the connection is on until they are sent, so a sub-window holds few: with 250,000 rows
# per sub-window CrateDB spent 3 CPU-s of its 12.7 collecting garbage (2 GB heap), with 33,000 0.3.
# A sub-window's rows: the smallest node's heap / HEAP_SHARE / connections, counted in the table's
# bytes per row on disk (sys.shards), from MIN to MAX_WINDOW_ROWS; cuts from a histogram of
# HISTOGRAM_BUCKETS parts of the window; at most MAX_SUB_WINDOWS cursors declared at once.
FETCH_PHASE_LIMIT = 2**31 - 1  # CrateDB's LIMIT is an integer: far above any sub-window's rows
HEAP_SHARE = 400
MIN_WINDOW_ROWS, MAX_WINDOW_ROWS = 1_000, 100_000
HISTOGRAM_BUCKETS = 4096
MAX_SUB_WINDOWS = 1024
# ``auto`` reads the largest sub-windows (one per connection, at once) plain and through the fetch
# phase first and takes the fetch phase when it took at most PROBE_RATIO of the time (a ratio up to
# PROBE_AGAIN is measured once more); only where the window holds at least PROBE_SHARE times what the
# probe reads. Ratios seen (2 connections): on 6.4.3 0.48-0.67 for the tutorial's day written in order,
# 1.11-1.43 for rows written up to 5 s early or late, 0.88 then 0.62 in order right after CrateDB
# started; on 5.10.16, where the fetch phase gains less (CPU 12.2 against 14.5), about 0.8-1.15 in
# order and 1.45 jittered. Near 1 both reads cost about the same: the fetch phase is taken below 0.95.
PROBE_RATIO = 0.95
PROBE_AGAIN = 1.1
PROBE_SHARE = 10
# the probe's FETCHes, of rows not converted: at most about PROBE_FETCH_BYTES (at the table's bytes per
# row on disk), at least what the read's own first FETCH asks (FetchBudget), at most batch_size
PROBE_FETCH_BYTES = 8 * 1024 * 1024
PROBE_MIN_FETCH_ROWS = 1_000
PROBE_CURSOR = "cratedb_export_probe"
ASSUMED_ROW_BYTES = 1024  # where sys.shards does not say: a wide row, so few rows per sub-window


@functools.cache
def lean_allocators() -> None:
    """Arrow allocates from the system allocator instead of mimalloc for the rest of the process
    (an Airflow task's own process): mimalloc keeps per-thread segments resident, 30-75 MB more
    peak RSS when encoding on two threads (2,000,000 rows, JSON Lines/CSV), for no speed gain.

    This covers allocations made from Python; Arrow's C++ internals (the Parquet writer) keep the
    pool chosen when pyarrow started, which ``ARROW_DEFAULT_MEMORY_POOL=system`` sets (the
    project's Dockerfile does: another 20 MB less for Parquet).
    """
    pa.set_memory_pool(pa.system_memory_pool())


GC_THRESHOLD = 50_000  # allocations between young-generation collections (Python's default: 700)


@contextmanager
def fewer_gc_passes() -> Iterator[None]:
    """Collect garbage less often while rows stream through Python objects.

    Every fetched row makes a tuple and a Python object per value, none of them part of a cycle, yet
    each 700 allocations start a collection that also walks everything imported so far (Airflow,
    boto3, pyarrow). Freezing what exists and collecting every 50,000 allocations made the cursor
    path (CrateDB's) about 50% faster (2,000,000 rows, Parquet: 308,000 -> 471,000 rows/s).
    Cycles are still collected; the previous settings come back afterwards. Objects frozen before
    (Airflow's LocalExecutor freezes before it forks its workers) stay frozen: unfreezing them
    would make the next collection write to pages shared with the parent process.
    """
    threshold, frozen_before = gc.get_threshold(), gc.get_freeze_count()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        if not frozen_before:
            gc.unfreeze()


class RollingFiles:
    """Encoded batches into ``part-NNNNN`` objects of about ``file_size`` bytes each.

    Text formats (JSON Lines, CSV) are encoded, and deflated for gzip, chunk by chunk on a small
    thread pool (Arrow's kernels and zlib release the GIL), at most ``ENCODE_AHEAD`` chunks ahead;
    chunks are written in order. Parquet is encoded in the writer.
    """

    def __init__(self, job: ExportJob, store: Store, schema: pa.Schema) -> None:
        self.job, self.store, self.schema = job, store, schema
        self.spec = FORMATS[job.cfg.format]
        self.stored: list[StoredObject] = []
        self._writer: Writer | None = None
        self._encoder: Encoder | None = None
        self._rows = 0
        encoder = encoder_class(self.spec, job.cfg.json_style)
        self._prepare = encoder.prepare if issubclass(encoder, TextEncoder) else None
        self._pool = ThreadPoolExecutor(ENCODE_THREADS, thread_name_prefix="encode") if self._prepare else None
        self._pending: deque[tuple[Future[Any], int]] = deque()
        self._gathered: list[pa.RecordBatch] = []  # text: rows waiting for a whole chunk
        self._gathered_rows = 0

    def _open(self, sample: pa.RecordBatch | None = None) -> None:
        cfg, spec = self.job.cfg, self.spec
        key = self.job.staging.key(spec.file_name(cfg.compression, len(self.stored)))
        self._writer = self.store.writer(
            self.job.staging.bucket,
            key,
            cfg.part_size_mb * 1024 * 1024,
            content_type=spec.content_type_for(cfg.compression),
            options=self.job.write_options,
        )
        self._encoder = make_encoder(
            spec,
            self.schema,
            self._writer,  # type: ignore[arg-type]  # a binary sink: write(bytes)
            cfg.compression,
            level=cfg.compression_level,
            row_group_size=cfg.parquet_row_group_size,
            sample=sample,
            json_style=cfg.json_style,
        )
        self._rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        # Parquet: in batch_size pieces (zero-copy slices), so that a file can end inside a large batch
        if self._pool is None:
            step = self.job.cfg.batch_size
            for offset in range(0, batch.num_rows, step):
                piece = batch.slice(offset, step)
                self._append(piece, piece.num_rows)
            return
        # text: chunks of about ENCODE_CHUNK_ROWS: a large batch in zero-copy slices, small ones (a
        # cursor's FETCH, an ADBC batch) gathered, and joined on the encoding thread
        for offset in range(0, batch.num_rows, ENCODE_CHUNK_ROWS):
            piece = batch.slice(offset, ENCODE_CHUNK_ROWS)
            self._gathered.append(piece)
            self._gathered_rows += piece.num_rows
            if self._gathered_rows >= ENCODE_CHUNK_ROWS:
                self._submit_gathered()

    def _submit_gathered(self) -> None:
        assert self._pool is not None
        chunk = self._pool.submit(self._prepare_chunk, self._gathered)
        self._pending.append((chunk, self._gathered_rows))
        self._gathered, self._gathered_rows = [], 0
        while len(self._pending) > ENCODE_AHEAD:
            self._drain_one()

    def _prepare_chunk(self, batches: list[pa.RecordBatch]) -> Any:
        """On an encoding thread: the batches as one, encoded (and deflated)."""
        assert self._prepare is not None
        batch = batches[0] if len(batches) == 1 else pa.concat_batches(batches)
        return self._prepare(self.schema, batch, self.job.cfg.compression, self.job.cfg.compression_level)

    def _drain_one(self) -> None:
        future, rows = self._pending.popleft()
        self._append(future.result(), rows)

    def _append(self, data: Any, rows: int) -> None:
        """``data``: a prepared chunk (text formats) or a record batch (Parquet)."""
        if self._encoder is None:
            self._open(data if isinstance(data, pa.RecordBatch) else None)
        assert self._encoder is not None and self._writer is not None
        if isinstance(data, pa.RecordBatch):
            self._encoder.write(data)
        else:
            assert isinstance(self._encoder, TextEncoder)
            self._encoder.write_prepared(data)
        self._rows += rows
        if self._writer.bytes_written >= self.job.cfg.file_size_mb * 1024 * 1024:
            self._finish()

    def _finish(self) -> None:
        assert self._encoder is not None and self._writer is not None
        self._encoder.close()
        self.stored.append(self._writer.close(rows=self._rows))
        self._encoder = self._writer = None

    def close(self) -> list[StoredObject]:
        if self._gathered_rows:
            self._submit_gathered()
        while self._pending:
            self._drain_one()
        self._shutdown()
        if self._encoder is None and not self.stored and self.spec.empty_file:
            self._open()  # Parquet and CSV: one file of zero rows (JSON Lines: none; see formats/)
        if self._encoder is not None:
            self._finish()
        return self.stored

    def abort(self) -> None:
        for future, _ in self._pending:
            future.cancel()
        self._pending.clear()
        self._gathered, self._gathered_rows = [], 0
        self._shutdown()
        if self._writer is not None:
            self._writer.abort()

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    @property
    def bytes_written(self) -> int:
        return sum(o.size for o in self.stored) + (self._writer.bytes_written if self._writer else 0)


class WindowGuard:
    """Checks that every row's timestamp lies in the range the job reads, batch by batch, before
    anything is written: a filter that escaped its parentheses, or any query that widened the
    export, fails the attempt instead of publishing rows of other days. Drops the timestamp column
    again when the table's ``columns`` leave it out (``sql.read_columns`` reads it along)."""

    def __init__(self, job: ExportJob, schema: pa.Schema) -> None:
        cfg = job.cfg
        self.job = job
        self.index = schema.get_field_index(cfg.timestamp_column)
        if self.index < 0 or not pa.types.is_timestamp(schema.field(self.index).type):
            raise WindowViolation(
                f"the rows read from {cfg.qualified_name} carry no timestamp column {cfg.timestamp_column!r} to check"
            )
        self.drop = bool(cfg.columns) and cfg.timestamp_column not in (cfg.columns or ())
        self.schema = schema.remove(self.index) if self.drop else schema
        epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
        one = timedelta(microseconds=1)
        self.start, self.end = ((bound - epoch) // one for bound in (job.range.start, job.range.end))

    def check(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        column = batch.column(self.index)
        micros = pc.cast(pc.cast(column, pa.timestamp("us", tz=column.type.tz)), pa.int64())
        low, high = (value.as_py() for value in pc.min_max(micros).values())
        if low is not None and (low < self.start or high >= self.end):
            window = f"[{self.job.range.start.isoformat()}, {self.job.range.end.isoformat()})"
            raise WindowViolation(
                f"rows of {self.job.cfg.qualified_name} outside the window {window} reached the export "
                f"({self.job.cfg.timestamp_column} from {_micros_text(low)} to {_micros_text(high)}): the "
                "query or its filter widened the export; nothing was published"
            )
        return batch.remove_column(self.index) if self.drop else batch


def _micros_text(value: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=value)).isoformat()


class StreamEngine(Engine):
    name = "stream"

    def statements(self, job: ExportJob, source: SourceInfo, creds: StoreCredentials | None) -> list[sql.Statement]:
        """ADBC: one SELECT. Cursor: REFRESH (CrateDB), the probe (where DECLARE may hang), then
        ``DECLARE``, ``FETCH``, ``CLOSE`` for each cursor, in the order of :func:`cursor_windows`."""
        cfg, naive, reading = job.cfg, source.naive_timestamps, source.reading(job.cfg)
        if _fast_path(job, source):
            return [sql.select_window(cfg, job.range, naive=naive, literal=True, reading=reading)]
        prepare = [sql.refresh(cfg)] if source.dialect.needs_refresh else []
        if source.declare_may_hang:  # the query's own error, at once, instead of a DECLARE that never answers
            prepare.append(sql.probe_window(cfg, job.range, naive=naive, reading=reading))
        if fetch_phase(job, source):  # the sub-windows come from the histogram: one DECLARE shown for all
            name = sql.cursor_name(0)
            return [
                *prepare,
                sql.table_size(cfg),
                sql.window_histogram(cfg, job.range, histogram_buckets(job.range), naive=naive),
                sql.declare_cursor(cfg, job.range, naive=naive, reading=reading, name=name, limit=FETCH_PHASE_LIMIT),
                sql.fetch_forward(cfg.batch_size, name),
                sql.close_cursor(name),
            ]
        per_cursor = []
        for name, window in cursor_windows(job, reader_count(job, source)):
            per_cursor += [
                sql.declare_cursor(cfg, window, naive=naive, reading=reading, name=name),
                sql.fetch_forward(cfg.batch_size, name),
                sql.close_cursor(name),
            ]
        return [*prepare, *per_cursor]

    def run(self, job: ExportJob, attempt: Attempt, statements: list[sql.Statement]) -> ExportResult:
        lean_allocators()
        with fewer_gc_passes():
            if _fast_path(job, attempt.database):
                return self._run_adbc(job, attempt, statements)
            return self._run_cursor(job, attempt, statements)

    def _run_adbc(self, job: ExportJob, attempt: Attempt, statements: list[sql.Statement]) -> ExportResult:
        (select,) = statements
        if job.slice_index is None:
            attempt.count_in_background(job.window)
        log.info("Running (PostgreSQL via ADBC, COPY binary): %s", select.describe())
        reader = AdbcReader(attempt.connections.database.conninfo(), select.wire_sql)
        return self._read(job, attempt, Prefetcher(reader, unblock=reader.cancel, **self._bounds(job)))

    def _run_cursor(self, job: ExportJob, attempt: Attempt, statements: list[sql.Statement]) -> ExportResult:
        cfg, source = job.cfg, attempt.database
        readers = reader_count(job, source)
        planned = fetch_phase(job, source)
        windows, limit, how = cursor_windows(job, readers), None, ""
        # after the REFRESH and the probe: the size, the histogram and one DECLARE/FETCH/CLOSE, or a
        # DECLARE/FETCH/CLOSE per plain sub-window (see statements())
        prepare = statements[:-5] if planned else statements[: -3 * len(windows)]
        for statement in prepare:  # REFRESH, and the probe where DECLARE may hang: bounded by the attempt
            execute(attempt.cursor, statement, cfg.attempt_seconds)
        if planned:
            size, histogram = statements[-5:-3]
            cuts, held, rows, per_row = balanced_cuts(attempt.cursor, job, source, readers, size, histogram)
        # connections of their own (the attempt's keeps no cursor open, whatever happens to a reader),
        # every cursor declared before the first FETCH: the read starts from one moment
        conns: list[psycopg.Connection[Any]] = []
        try:
            for _ in range(readers):
                conns.append(connect(attempt.connections.database, cfg.attempt_seconds))
            if planned and (cfg.fetch_phase == "always" or fetch_phase_pays(conns, job, source, cuts, held, per_row)):
                windows = [(sql.cursor_name(n), window) for n, window in enumerate(cuts)]
                limit, how = FETCH_PHASE_LIMIT, f" of up to about {rows:,} rows each, through CrateDB's fetch phase,"
            naive, reading = source.naive_timestamps, source.reading(cfg)
            declares = [
                sql.declare_cursor(cfg, window, naive=naive, reading=reading, name=name, limit=limit)
                for name, window in windows
            ]
            count = len(windows)
            readers = min(readers, count)
            for spare in conns[readers:]:
                spare.close()
            del conns[readers:]
            if job.slice_index is None:
                attempt.count_in_background(job.window)  # the rows are settled: count them while they are read
            budget = read_budget(job, readers)
            log.info(
                "Reading %s in %d sub-window(s)%s on %d connection(s), at most %d rows per FETCH, %d results "
                "held (about %.0f MB)",
                cfg.qualified_name,
                count,
                how,
                readers,
                cfg.batch_size,
                budget.slots,
                budget.held_bytes / 2**20,
            )
            parts = []
            for n, conn in enumerate(conns):
                turns = [conn.cursor(), conn.cursor()]  # one fetches while the other's rows convert
                for each in turns:
                    register_loaders(each)  # JSON stays text: no parse and re-serialise per value
                # sub-windows dealt like cards: connection n reads n, n + readers, ...: hours spread
                # over the whole day, so that a busy hour does not fall to one connection alone
                pieces = []
                for index in range(n, count, readers):
                    name = windows[index][0]
                    execute(turns[0], declares[index], cfg.attempt_seconds)
                    pieces.append(Piece(fetch=functools.partial(_fetch_sql, name), close=sql.close_cursor(name).sql))
                parts.append(
                    CursorReader(
                        turns,
                        pieces,
                        budget=budget,
                        binary=source.dialect.binary_results,
                        source_types=source.columns,
                        partitions=source.partition_columns,
                    )
                )

            def unblock() -> None:
                for conn in conns:
                    shut_down(conn)

            prefetcher = Prefetcher(ParallelReader(parts), unblock=unblock, **self._bounds(job))
            result = self._read(job, attempt, prefetcher)
            log.info(
                "%s: %d FETCHes, %d of them answered in the binary format",
                cfg.qualified_name,
                sum(part.fetches for part in parts),
                sum(part.binary_fetches for part in parts),
            )
            return result
        finally:
            for conn in conns:
                conn.close()  # its cursors end with it

    @staticmethod
    def _bounds(job: ExportJob) -> dict[str, Any]:
        return {"stall_seconds": job.cfg.stall_timeout_seconds, "what": f"reading {job.cfg.qualified_name}"}

    def _read(self, job: ExportJob, attempt: Attempt, prefetcher: Prefetcher) -> ExportResult:
        """Rows from ``prefetcher``, checked against the window, into ``part-NNNNN`` files."""
        started = time.monotonic()
        with prefetcher:
            batches = iter(prefetcher)
            first = next(batches, None)  # the schema is known after the first read, even an empty one
            assert prefetcher.schema is not None
            guard = WindowGuard(job, prefetcher.schema)
            shape = _object_structs(job, attempt.database, guard.schema)
            schema = shape.schema
            if job.cfg.columns and job.cfg.json_style == "cratedb":
                schema = schema.with_metadata(LISTED_COLUMNS)  # COPY TO with columns writes NULL as null
            files = RollingFiles(job, attempt.store, schema)
            checked = (shape.convert(guard.check(b)) for b in itertools.chain([first] if first else [], batches))
            # a slice's progress has no count of its own: the background count is the whole day's
            expected = attempt.expected_rows if job.slice_index is None else lambda: None
            rows, stored = self._write(job, files, checked, started, expected)
        return self._result(job, rows, stored, started, schema)

    def _write(
        self,
        job: ExportJob,
        files: RollingFiles,
        batches: Iterator[pa.RecordBatch],
        started: float,
        expected: Callable[[], int | None],
    ) -> tuple[int, list[StoredObject]]:
        rows, last_report = 0, time.monotonic()
        what = f"{job.cfg.qualified_name} {job.window.day}" + (
            f" slice {job.slice_index + 1}/{job.cfg.slices}" if job.slice_index is not None else ""
        )
        try:
            for batch in batches:
                files.write(batch)
                rows += batch.num_rows
                if time.monotonic() - last_report >= PROGRESS_SECONDS:
                    last_report = time.monotonic()
                    log.info(progress_line(what, rows, expected(), files.bytes_written, last_report - started))
            return rows, files.close()
        except BaseException:
            files.abort()
            raise

    def _result(
        self, job: ExportJob, rows: int, stored: list[StoredObject], started: float, schema: pa.Schema
    ) -> ExportResult:
        elapsed = max(time.monotonic() - started, 1e-9)
        log.info(
            "streamed %d rows of %s into %d %s file(s), %d bytes, %.0f rows/s",
            rows,
            job.cfg.qualified_name,
            len(stored),
            job.cfg.format,
            sum(o.size for o in stored),
            rows / elapsed,
        )
        return ExportResult(job, self.name, rows, tuple(stored), written=schema)


def _object_structs(job: ExportJob, source: SourceInfo, schema: pa.Schema) -> StructColumns:
    """``objects: struct``: the OBJECT columns with known keys as structs (``formats/objects.py``);
    otherwise a converter that changes nothing."""
    if job.cfg.objects != "struct":
        return StructColumns(schema, {}, {})
    keys = {name: object_keys(name, source.columns) for name in schema.names}
    shape = StructColumns(schema, source.columns, keys)
    kept = [f.name for f in schema if is_json(f) and f.name not in shape.types]
    log.info(
        "%s: objects as structs: %s%s",
        job.cfg.qualified_name,
        ", ".join(shape.types) or "none",
        f"; as JSON text (no known keys, or a key without a struct form): {', '.join(kept)}" if kept else "",
    )
    return shape


def reader_count(job: ExportJob, source: SourceInfo) -> int:
    """Connections that read the window at once: ``cursors`` when the table pins it; otherwise one
    per processor of the CrateDB cluster (``SourceInfo.processors``: CrateDB runs a cursor's query on
    about one core), at least 2 and at most 16, :data:`DEFAULT_READERS` where the cluster does not
    say; a slice (one of ``slices`` tasks) takes its share; one where the database gains nothing from
    more (``Dialect.parallel_cursors``: PostgreSQL). Never more than the window has seconds."""
    cfg = job.cfg
    if cfg.cursors is not None:
        wanted = cfg.cursors
    elif not source.dialect.parallel_cursors:
        wanted = 1
    else:
        wanted = min(MAX_READERS, max(MIN_READERS, source.processors or DEFAULT_READERS))
        if job.slice_index is not None:
            wanted = max(1, -(-wanted // cfg.slices))
    return max(1, min(wanted, int((job.range.end - job.range.start).total_seconds())))


def cursor_windows(job: ExportJob, readers: int) -> list[tuple[str, TimeRange]]:
    """The declared cursors that read ``job.range``: one named ``cratedb_export`` over the whole
    range for one reader, else :data:`PIECES_PER_READER` per reader over adjacent sub-ranges (at
    least a second each), dealt to the readers like cards."""
    count = 1 if readers == 1 else readers * PIECES_PER_READER
    count = max(1, min(count, int((job.range.end - job.range.start).total_seconds())))
    if count == 1:
        return [(sql.cursor_name(), job.range)]
    return [(sql.cursor_name(n), window) for n, window in enumerate(job.range.slices(count))]


def fetch_phase(job: ExportJob, source: SourceInfo) -> bool:
    """Whether the window may be read in histogram-cut sub-windows through the database's fetch
    phase (:func:`fetch_phase_pays` decides for ``auto``): not ``never``, a source that has one
    (``Dialect.query_then_fetch``), and a known heap."""
    return (
        job.cfg.fetch_phase != "never"
        and source.dialect.query_then_fetch
        and source.heap_bytes is not None
        and not _fast_path(job, source)
    )


def histogram_buckets(window: TimeRange) -> int:
    """The parts the histogram counts ``window``'s rows in: :data:`HISTOGRAM_BUCKETS`, at least a second each."""
    return max(1, min(HISTOGRAM_BUCKETS, int((window.end - window.start).total_seconds())))


def window_rows(heap_bytes: int, bytes_per_row: float, readers: int) -> int:
    """Rows per sub-window: what ``readers`` connections' fetches may hold on one node (its heap /
    :data:`HEAP_SHARE`), counted in the table's bytes per row on disk, within
    :data:`MIN_WINDOW_ROWS` and :data:`MAX_WINDOW_ROWS`."""
    rows = int(heap_bytes / HEAP_SHARE / max(1, readers) / max(1.0, bytes_per_row))
    return min(MAX_WINDOW_ROWS, max(MIN_WINDOW_ROWS, rows))


def cut_by_counts(window: TimeRange, counts: list[int], rows: int) -> tuple[list[TimeRange], list[int], int]:
    """``window`` cut at the edges of ``window.slices(len(counts))``, adjacent parts merged while
    they hold at most ``rows`` together (a part holding more stays alone; empty parts join the
    sub-window before them, the first ones the one after them): the sub-windows, what each
    holds by the counts, and the rows they were cut for. At most :data:`MAX_SUB_WINDOWS`: ``rows`` is
    raised to twice the total's share of them when lower (merged so, two neighbours hold more than
    ``rows`` together)."""
    rows = max(rows, -(-2 * sum(counts) // MAX_SUB_WINDOWS))
    cuts, held = [window.start], [0]
    for part, held_by_part in zip(window.slices(len(counts)), counts, strict=True):
        if held[-1] and held_by_part and held[-1] + held_by_part > rows:
            cuts.append(part.start)
            held.append(0)
        held[-1] += held_by_part
    cuts.append(window.end)
    return [TimeRange(a, b) for a, b in itertools.pairwise(cuts)], held, rows


def balanced_cuts(
    cursor: psycopg.Cursor[Any],
    job: ExportJob,
    source: SourceInfo,
    readers: int,
    size: sql.Statement,
    histogram: sql.Statement,
) -> tuple[list[TimeRange], list[int], int, float]:
    """The sub-windows of ``job.range`` for the fetch phase (:func:`cut_by_counts` of the window's
    histogram), what each holds by the counts, the rows they were cut for, and the table's bytes
    per row on disk. The counts only decide where to cut: the sub-windows cover the range exactly
    whatever they say."""
    seconds = job.cfg.attempt_seconds
    try:
        table_bytes, table_rows = execute(cursor, size, seconds).fetchone() or (None, None)
    except psycopg.Error as exc:  # sys.shards not readable: rows of an assumed width
        log.info("the size of %s is not known (%s)", job.cfg.qualified_name, str(exc).splitlines()[0])
        table_bytes, table_rows = ASSUMED_ROW_BYTES, 1
    buckets = histogram_buckets(job.range)
    counts = [0] * buckets
    for bucket, in_bucket in execute(cursor, histogram, seconds).fetchall():
        counts[min(buckets - 1, max(0, int(bucket)))] += int(in_bucket)
    assert source.heap_bytes is not None  # fetch_phase() holds
    per_row = (table_bytes or 0) / max(1, table_rows or 0)
    cuts, held, rows = cut_by_counts(job.range, counts, window_rows(source.heap_bytes, per_row, readers))
    if max(held) >= FETCH_PHASE_LIMIT:  # its LIMIT would cut rows off: the count check would refuse the export
        raise SourceError(
            f"{job.cfg.qualified_name}: a sub-window of {job.range} holds {max(held):,} rows, more than a "
            f"LIMIT can read ({FETCH_PHASE_LIMIT:,}): set fetch_phase: never for this table"
        )
    return cuts, held, rows, per_row


def fetch_phase_pays(
    conns: list[psycopg.Connection[Any]],
    job: ExportJob,
    source: SourceInfo,
    cuts: list[TimeRange],
    held: list[int],
    per_row: float,
) -> bool:
    """``auto``: reads the first half of each of the sub-windows of ``cuts`` that hold the most rows
    (``held``), one on each of ``conns`` at once, plain and then through the fetch phase (the rows
    stay in libpq's results, never converted; FETCHes of at most :data:`PROBE_FETCH_BYTES` at
    ``per_row`` bytes a row), and says whether the fetch phase took at most :data:`PROBE_RATIO` of
    the plain read's time. Read
    so, as the window will be, the time is what CrateDB's cores spend (a single fetch-phase cursor
    runs on several: alone it looks faster than it is). The fetch phase pays where a sub-window's
    rows lie next to each other in CrateDB's shards (written in about timestamp order); where they
    do not, it costs more than a plain read. A ratio between :data:`PROBE_RATIO` and
    :data:`PROBE_AGAIN` is read once more (a CrateDB that has not run a fetch phase for a while
    compiles its code during the first: the fetch phase then looks slower than it is). A window
    holding fewer than :data:`PROBE_SHARE` times what the probe reads is read plain, without a probe."""
    cfg, seconds = job.cfg, job.cfg.attempt_seconds
    largest = sorted(range(len(cuts)), key=held.__getitem__, reverse=True)[: len(conns)]
    probed = sum(held[index] for index in largest) // 2  # the first half of each, about
    if probed == 0 or sum(held) < PROBE_SHARE * 2 * probed:
        log.info("%s: %s rows: reading plain, without a probe", cfg.qualified_name, f"{sum(held):,}")
        return False
    naive, reading = source.naive_timestamps, source.reading(cfg)
    fetched_rows = min(cfg.batch_size, max(PROBE_MIN_FETCH_ROWS, int(PROBE_FETCH_BYTES / max(1.0, per_row))))

    def read(conn: psycopg.Connection[Any], window: TimeRange, name: str, limit: int | None) -> None:
        with conn.cursor() as cursor:
            declare = sql.declare_cursor(cfg, window, naive=naive, reading=reading, name=name, limit=limit)
            execute(cursor, declare, seconds)
            try:
                while execute(cursor, sql.fetch_forward(fetched_rows, name), seconds).rowcount > 0:
                    pass
            finally:
                execute(cursor, sql.close_cursor(name), seconds)

    ratio = 1.0
    with ThreadPoolExecutor(len(conns), thread_name_prefix="probe") as pool:
        for round_ in range(2):
            taken = []
            # a name each: a cursor declared under the name of one just closed can be closed with it
            # (CrateDB ends the old one after CLOSE answers; seen on 6.4.3 as "BatchIterator is closed")
            for mode, limit in (("plain", None), ("fetch", FETCH_PHASE_LIMIT)):
                started = time.monotonic()
                reads = [
                    pool.submit(read, conn, cuts[index].slices(2)[0], f"{PROBE_CURSOR}_{round_}_{mode}_{n}", limit)
                    for n, (conn, index) in enumerate(zip(conns, largest, strict=False))
                ]
                for each in reads:
                    each.result()
                taken.append(time.monotonic() - started)
            plain, fetched = taken
            ratio = fetched / max(plain, 1e-9)
            log.info(
                "%s: about %s rows of %d sub-window(s) read in %.3f s plain, %.3f s through CrateDB's fetch phase "
                "(%.2f)",
                cfg.qualified_name,
                f"{probed:,}",
                len(largest),
                plain,
                fetched,
                ratio,
            )
            if not PROBE_RATIO < ratio < PROBE_AGAIN:
                break
    pays = ratio <= PROBE_RATIO
    log.info("%s: reading %s", cfg.qualified_name, "through CrateDB's fetch phase" if pays else "plain")
    return pays


def read_budget(job: ExportJob, readers: int) -> FetchBudget:
    """:data:`READ_BUDGET_BYTES` shared by ``readers``: two results each (one on the wire while the
    other converts), FETCHes of at most ``batch_size`` rows."""
    return FetchBudget.within(READ_BUDGET_BYTES, slots=2 * readers, max_rows=job.cfg.batch_size)


def _fetch_sql(name: str, rows: int) -> str:
    return sql.fetch_forward(rows, name).sql


def _fast_path(job: ExportJob, source: SourceInfo) -> bool:
    """PostgreSQL sources go through ADBC (COPY binary -> Arrow); CrateDB has no COPY TO STDOUT."""
    return job.cfg.reader == "auto" and source.dialect.copy_binary and adbc_available()
