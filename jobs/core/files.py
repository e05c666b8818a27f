"""The warehouse's file system from Python (fsspec): local disk, HDFS (`hdfs://`, through pyarrow),
object stores (`s3://`, `s3a://`, `gs://`, ... with their fsspec package installed) alike.

Publishing's locks, listings, swaps and sidecars go through here rather than through Hadoop's
FileSystem in the driver JVM, so that a job runs the same on a classic SparkSession and on a
Spark Connect session (which has no JVM in the client). What each operation guarantees is the
file system's own: a folder rename is atomic on local disk and HDFS, a copy on object stores;
`create_exclusive` is atomic wherever fsspec's exclusive mode is (local disk: O_EXCL; object
stores with conditional writes).
"""

from __future__ import annotations

import posixpath


def _fs(path: str):
    """(fsspec file system, path in it) of a warehouse location; `file:` URIs and plain paths are local."""
    import fsspec

    from jobs.core import config

    if config.is_local(path):
        return fsspec.filesystem("file"), config.local_path(path)
    return fsspec.core.url_to_fs(path)


def exists(path: str) -> bool:
    fs, p = _fs(path)
    return fs.exists(p)


def is_dir(path: str) -> bool:
    fs, p = _fs(path)
    return fs.isdir(p)


def read_text(path: str) -> str | None:
    """A small text file (a sidecar, a lock), or None when it does not exist (also when it goes
    between a look and the read: a lock's holder may release it while a waiter polls)."""
    fs, p = _fs(path)
    try:
        with fs.open(p, "rb") as handle:
            return handle.read().decode("utf-8")
    except FileNotFoundError:
        return None


def write_bytes(path: str, payload: bytes) -> None:
    """A small file, replaced if it exists; its folder is made when missing."""
    fs, p = _fs(path)
    fs.makedirs(posixpath.dirname(p), exist_ok=True)
    with fs.open(p, "wb") as handle:
        handle.write(payload)


def create_exclusive(path: str, payload: bytes) -> bool:
    """Create the file with `payload` unless it exists (atomically where the file system can);
    False when it existed."""
    fs, p = _fs(path)
    fs.makedirs(posixpath.dirname(p), exist_ok=True)
    try:
        with fs.open(p, "xb") as handle:
            handle.write(payload)
    except FileExistsError:
        return False
    return True


def delete(path: str) -> None:
    """Delete a file or a folder with everything in it; nothing when it is not there."""
    fs, p = _fs(path)
    try:
        fs.rm(p, recursive=True)
    except FileNotFoundError:
        pass


def make_folder(path: str) -> None:
    fs, p = _fs(path)
    fs.makedirs(p, exist_ok=True)


def rename(source: str, target: str) -> None:
    """Move a file or folder to a name that does not exist yet (atomic on local disk and HDFS)."""
    fs, p = _fs(source)
    fs.mv(p, _fs(target)[1], recursive=True)


def entries(path: str) -> list[tuple[str, bool]]:
    """(name, is a folder) of what is directly in folder `path`, sorted; [] when there is no such folder."""
    fs, p = _fs(path)
    try:
        listed = fs.ls(p, detail=True)
    except FileNotFoundError:
        return []
    if len(listed) == 1 and listed[0]["type"] != "directory" and fs.isfile(p):
        return []  # `path` is a file: listing it gives the file itself
    return sorted((posixpath.basename(e["name"].rstrip("/")), e["type"] == "directory") for e in listed)


def files_under(path: str) -> list[str]:
    """Paths (relative to `path`, with `/`) of every file below folder `path`, at any depth."""
    fs, p = _fs(path)
    if not fs.exists(p):
        return []
    base = fs._strip_protocol(p).rstrip("/")
    return sorted(name[len(base) + 1:] for name in fs.find(p))


def modified(path: str) -> float | None:
    """When the file was last written (seconds since the epoch); None when it is gone."""
    fs, p = _fs(path)
    try:
        when = fs.modified(p)
    except (FileNotFoundError, NotImplementedError):
        return None
    return when.timestamp()
