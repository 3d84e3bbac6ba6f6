"""Where the metrics store lives: a local folder or an object-store URI, behind one filesystem.

:meth:`Location.parse` turns what the settings hold (``/data/metrics``,
``file:///data/metrics``, ``s3://bucket/prefix``, ``memory://prefix``) into a
``pyarrow.fs`` filesystem and a base path on it. The store does every file
operation (write, list, read, delete) through a :class:`Location`, with paths
relative to that base, so it has one code path for every backend. Only writes
differ by kind:

- **local** (a path or ``file://``): write a hidden temporary file beside the
  target, fsync it, ``os.replace`` it onto its final name and fsync the folder
  (and any folder it had to create, in its parent). A rename is atomic on one
  filesystem, so a reader sees the old state or the whole new file, never a torn
  one; the fsyncs make the file's bytes and its name durable before the call
  returns, so a record written after it (the store's commit record) can never
  survive a power cut that its data files did not.
  :meth:`Location.write_tables` does the same for many files at once, as a
  pipeline: ``ENCODE_THREADS`` (one per core) encode files to their temporary
  names and hand each to ``WRITE_THREADS`` that fsync and rename it, so the disk
  waits of the files done overlap the encoding of the next (an fsync releases the
  GIL, and parallel fsyncs share the filesystem's journal commits); then every
  folder that changed is fsynced once, in parallel, before it returns. Rejected:
  one pool doing all three steps per file (16 encodes at once on 2 cores all
  finish late, so the fsyncs start late: 1.0-1.1 s against the pipeline's 0.7-0.9 s
  for 200 files under disk load), and ``syncfs`` (one call for the whole filesystem,
  which also waits for every other process's unwritten data, an unbounded cost;
  Linux only). Measured here (ext4 on a virtual disk, 2 cores): 50 fsyncs of
  300 kB files took 75-125 ms one after the other, 14-18 ms with 16 threads.
- **object store** (``s3://`` and any other URI): there is no rename (an S3
  "rename" is a copy plus a delete, neither atomic nor cheap), but a PUT is atomic
  per object: an object appears whole when its upload completes (one PutObject,
  or CompleteMultipartUpload) and not before. So a file is encoded in memory first
  and uploaded in one call under its final name; a writer killed mid-upload leaves
  no object (the parts of an unfinished multipart upload are invisible; a bucket
  lifecycle rule ``AbortIncompleteMultipartUpload`` reclaims them); ``write_tables``
  encodes and uploads in the same pipeline. ``s3://``
  locations are opened with ``allow_delayed_open``, so a file within one upload
  part is a single PutObject at close rather than three multipart requests.
  Deleting a file makes pyarrow leave a zero-byte folder marker (``.../``) so the
  folder still "exists"; listings report it as a folder, and the store ignores it.

**Locks** (:meth:`Location.lock`): locally an exclusive ``fcntl.flock`` on a file
in the base folder, which serialises the processes of one machine (or of a
filesystem whose ``flock`` is shared, such as NFSv4) that maintain the same
folder. An object store has no lock primitive: ``lock`` is a no-op there, and the
callers (store and ledger compaction) are written to lose no row without one.

Resolution: ``pyarrow.fs.FileSystem.from_uri``, so ``s3://`` uses pyarrow's own
S3 client (the AWS SDK for C++), which finds credentials, region and endpoint the
way every AWS tool does: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``
(``AWS_SESSION_TOKEN``), ``AWS_PROFILE``, an instance or pod role; ``AWS_REGION``;
``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` for an S3-compatible server. pyarrow
also reads options from the URI's query (``?endpoint_override=http://minio:9000``),
which is how the ``store.endpoint_url`` setting reaches it (:func:`with_endpoint`).
Schemes pyarrow does not know (``memory://``, ``az://``...) go through fsspec.

Rejected alternative: s3fs through fsspec. pyarrow is already the Parquet engine;
its dataset reader drives its C++ filesystems directly (parallel ranged reads, no
Python per request), and it needs no extra dependency.

The URI helpers (:func:`is_uri`, :func:`sibling`, :func:`with_endpoint`) are plain
string functions; the settings import them only for a URI root, so a local setup
never pays for importing ``pyarrow.fs`` there.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePath
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

# write_tables: encoding a Parquet file is CPU work, one per core; landing it (locally fsync and rename, on an
# object store the upload) waits on the disk or the network with the GIL released, many at a time.
ENCODE_THREADS = os.cpu_count() or 2
WRITE_THREADS = 16


def is_uri(root: str | os.PathLike) -> bool:
    """True for ``scheme://...``; everything else is a local path."""
    return "://" in os.fspath(root)


def sibling(root: str | os.PathLike, name: str) -> str | Path:
    """The folder `name` beside `root` (the default quarantine beside the metrics).

    For a URI whose path is only a bucket (``s3://metrics``) there is no beside: the
    folder goes inside it (``s3://metrics/quarantine``), where readers of the
    metrics never look (they list ``app=*`` only). The URI's query is kept.
    """
    if not is_uri(root):
        return Path(root).parent / name
    parts = urlsplit(os.fspath(root))
    parent = parts.path.rstrip("/").rpartition("/")[0]
    return urlunsplit(parts._replace(path=f"{parent}/{name}"))


def with_endpoint(uri: str, endpoint_url: str | None) -> str:
    """An ``s3://`` URI with ``endpoint_override`` in its query, unless it has one already."""
    parts = urlsplit(uri)
    query = dict(parse_qsl(parts.query))
    if not endpoint_url or parts.scheme != "s3" or "endpoint_override" in query:
        return uri
    return urlunsplit(parts._replace(query=urlencode({**query, "endpoint_override": endpoint_url})))


def check_no_secrets(uri: str) -> str:
    """Refuse credentials inside a URI: they would be printed wherever the root is shown."""
    parts = urlsplit(uri)
    keys = {key for key, _ in parse_qsl(parts.query)} & {"access_key", "secret_key", "session_token"}
    if parts.password or keys:
        shown = urlunsplit(parts._replace(netloc=parts.hostname or "", query=""))
        raise ValueError(
            f"store URI {shown!r} carries credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(or a profile or role) in the environment instead"
        )
    return uri


@dataclass(frozen=True)
class Location:
    """A base folder on a filesystem; every path given to its methods is relative to it."""

    fs: pafs.FileSystem
    base: str
    uri: str | None = None  # None: a local folder (atomic renames); else the object-store URI

    @classmethod
    def parse(cls, root: str | os.PathLike) -> Location:
        text = os.fspath(root)
        if not is_uri(text):
            return cls(pafs.LocalFileSystem(), str(Path(text).absolute()))
        fs, path = _open_uri(check_no_secrets(text))
        if isinstance(fs, pafs.LocalFileSystem):
            return cls(fs, path.rstrip("/") or "/")
        return cls(fs, path.rstrip("/"), text.rstrip("/"))

    @property
    def local(self) -> bool:
        return self.uri is None

    @property
    def root(self) -> Path | str:
        """The root as a user names it: a Path, or the URI."""
        return Path(self.base) if self.local else self.uri

    def path(self, relative: str = "") -> str:
        """The full path of `relative` on the filesystem."""
        return f"{self.base}/{relative}" if relative else self.base

    def display(self, full_path: str) -> PurePath | str:
        """A filesystem path as a user names it: a local Path, or a URI."""
        if self.local:
            return Path(full_path)
        parts = urlsplit(self.uri)
        return urlunsplit(parts._replace(path=f"{parts.path}{full_path[len(self.base) :]}", query=""))

    # -- listing ---------------------------------------------------------------

    def exists(self, relative: str = "") -> bool:
        return self.fs.get_file_info(self.path(relative)).type != pafs.FileType.NotFound

    def listing(self, relative: str = "", *, recursive: bool = False) -> list[pafs.FileInfo]:
        """Entries under `relative` (none when it does not exist); on S3 one paginated LIST."""
        selector = pafs.FileSelector(self.path(relative), recursive=recursive, allow_not_found=True)
        return self.fs.get_file_info(selector)

    def folders(self, relative: str = "", *, prefix: str = "") -> list[str]:
        """Names of the folders directly under `relative` that start with `prefix`."""
        names = (e.base_name for e in self.listing(relative) if e.type == pafs.FileType.Directory)
        return sorted(name for name in names if name.startswith(prefix))

    def files(self, relative: str = "", *, recursive: bool = False) -> list[pafs.FileInfo]:
        return [e for e in self.listing(relative, recursive=recursive) if e.type == pafs.FileType.File]

    # -- reading, writing, deleting --------------------------------------------

    def read_bytes(self, relative: str) -> bytes:
        with self.fs.open_input_stream(self.path(relative)) as stream:
            return stream.read()

    def write_bytes(self, relative: str, data: bytes) -> None:
        """Atomically: temp file, fsync and rename locally; one PUT on an object store."""
        if self.local:
            target = Path(self.path(relative))
            _make_folders(target.parent)
            tmp = _temporary(target)
            with tmp.open("wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
            _fsync(target.parent)
        else:
            self._put(self.path(relative), data)

    def write_table(self, relative: str, table: pa.Table) -> None:
        """Atomically (and locally durably) write `table` as one Parquet file (see the module docstring)."""
        if self.local:
            atomic_write_table(table, Path(self.path(relative)))
        else:
            self._put(self.path(relative), _encoded(table))  # encode first: a failure never reaches the store

    def write_tables(self, files: Sequence[tuple[str, pa.Table]]) -> None:
        """Write each ``(relative, table)`` as a Parquet file, atomically; every one durable on return.

        A pipeline (see the module docstring): encoders write each file to a temporary name
        beside its target (in memory, for an object store), landers fsync and rename it (upload
        it). Locally the folders are made first, and each folder that changed (it gained a file,
        or is the parent of a folder made) is fsynced once at the end, in parallel; an fsync of
        a folder makes every change of its entries durable, deletions made in it before too.
        A failure raises once the files under way are done; temporary files it leaves are hidden
        (the store's retry of the batch deletes them).
        """
        if not files:
            return
        folders = {Path(self.path(relative)).parent for relative, _ in files} if self.local else set()
        changed = folders.union(*(_make_folders(folder, sync=False) for folder in sorted(folders)))
        if len(files) == 1:  # nothing to overlap; a hand-off between threads costs a wake-up on a busy machine
            self._land(*self._stage(files[0]))
            for folder in sorted(changed):
                _fsync(folder)
            return
        encoders, landers = ThreadPoolExecutor(min(len(files), ENCODE_THREADS)), ThreadPoolExecutor(WRITE_THREADS)
        with encoders, landers:
            landing = [landers.submit(self._land, *staged) for staged in encoders.map(self._stage, files)]
            for future in landing:
                future.result()
            list(landers.map(_fsync, sorted(changed)))

    def _stage(self, file: tuple[str, pa.Table]) -> tuple[Path | pa.Buffer, str]:
        """Encode a file: locally to a hidden temporary name beside its target, else into memory."""
        relative, table = file
        if not self.local:
            return _encoded(table), self.path(relative)
        target = Path(self.path(relative))
        tmp = _temporary(target)
        pq.write_table(table, tmp)  # by path: pyarrow's own file writer, not Python file objects
        return tmp, str(target)

    def _land(self, staged: Path | pa.Buffer, full_path: str) -> None:
        """Put an encoded file under its final name: locally fsync and rename (the folder is left), else upload."""
        if self.local:
            _fsync(staged)
            os.replace(staged, full_path)
        else:
            self._put(full_path, staged)

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Hold an exclusive lock named `name` in the base folder (local); a no-op on an object store.

        Blocks until the lock is free. The lock file stays (a hidden name: no listing of the store
        counts it); the kernel releases the lock when the holder exits, however it exits.
        """
        if not self.local:
            yield
            return
        path = Path(self.path(name))
        _make_folders(path.parent)
        with path.open("a") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def delete(self, full_path: str) -> None:
        """Delete one file by its full path; gone already is fine."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_file(full_path)

    def _put(self, full_path: str, data) -> None:
        """One upload under the final name: the object appears only when close() completes it.

        A file within one upload part goes as a single PutObject at close (``allow_delayed_open``);
        a bigger one as a multipart upload, completed at close only if every part went up.
        """
        with self.fs.open_output_stream(full_path) as stream:
            stream.write(data)


def atomic_write_table(table: pa.Table, path: Path) -> None:
    """Write a Parquet file to a hidden temporary name beside `path`, fsync it, rename it in, fsync the folder."""
    _make_folders(path.parent)
    tmp = _temporary(path)
    pq.write_table(table, tmp)  # by path: pyarrow's own file writer, not Python file objects
    _fsync(tmp)
    os.replace(tmp, path)
    _fsync(path.parent)


def _temporary(path: Path) -> Path:
    """A hidden name beside `path` (readers list ``part-*`` only; the name ends with the target's, for cleanup)."""
    return path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")


def _encoded(table: pa.Table) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue()


def _make_folders(folder: Path, *, sync: bool = True) -> set[Path]:
    """``mkdir -p``; returns the folders whose entries changed (the parent of each folder made).

    `sync` True fsyncs them here (each new folder's name durable); False leaves that to the caller.
    """
    if folder.is_dir():
        return set()
    changed = _make_folders(folder.parent, sync=sync)
    with contextlib.suppress(FileExistsError):  # another writer made it meanwhile: its fsync may not be done
        folder.mkdir()
    changed.add(folder.parent)
    if sync:
        _fsync(folder.parent)
    return changed


def _fsync(path: Path) -> None:
    """Flush a file's or a folder's data and metadata to the disk (Linux and macOS accept a read-only fd)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_uri(uri: str) -> tuple[pafs.FileSystem, str]:
    parts = urlsplit(uri)
    if parts.scheme == "s3" and "allow_delayed_open" not in dict(parse_qsl(parts.query)):
        # Delayed open: a file smaller than one part goes up as a single PutObject at close,
        # not CreateMultipartUpload + UploadPart + CompleteMultipartUpload (three requests).
        uri = urlunsplit(parts._replace(query="&".join(filter(None, [parts.query, "allow_delayed_open=true"]))))
    try:
        return pafs.FileSystem.from_uri(uri)
    except pa.ArrowInvalid as exc:  # "Unrecognized filesystem type": try fsspec's registry
        try:
            import fsspec
        except ImportError:
            raise ValueError(f"store root {uri!r}: pyarrow cannot open it ({exc}) and fsspec is not installed") from exc
        try:
            fs, path = fsspec.core.url_to_fs(uri)
        except (ImportError, ValueError) as fs_exc:
            raise ValueError(
                f"store root {uri!r}: neither pyarrow ({exc}) nor fsspec ({fs_exc}) can open it; "
                "use a local path or s3://bucket/prefix"
            ) from fs_exc
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path
