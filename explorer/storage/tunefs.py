"""The file system Tune writes its own state through: every file replaced atomically.

Tune keeps its experiment state (``tuner.pkl``, ``experiment_state-*.json``, the searcher's
and callbacks' pickles, each trial's ``result.json``) in a staging folder and copies it to the
storage with pyarrow. pyarrow writes in place: a full disk, a storage gone read-only or a kill
in the middle of a copy left a truncated state file that ``Tuner.restore`` could never read,
while the copy before it was whole. Handing Tune this file system (``RunConfig`` and
``Tuner.restore``'s ``storage_filesystem``) makes its writes like ours (``atomic.py``): the
new content goes to a temporary name beside the file and is renamed onto it when complete; a
failed write leaves the old file and removes the temporary. Everything else is pyarrow's
local file system unchanged.
"""

from __future__ import annotations

import contextlib
import os
import threading

import pyarrow as pa
import pyarrow.fs as pafs


class _AtomicOutput:
    """A writable binary file that becomes ``path`` when it is closed after whole writes."""

    def __init__(self, path: str):
        self.path = path
        head, name = os.path.split(path)
        self.tmp = os.path.join(head, f".{name}.{os.getpid()}.{threading.get_ident()}.tmp")
        self._f = open(self.tmp, "wb")  # noqa: SIM115 - closed by close()
        self._failed = False
        self.closed = False

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        try:
            return self._f.write(data)
        except BaseException:
            self._failed = True
            self.close()  # now: the caller may keep the stream (and the disk) for a while
            raise

    def flush(self) -> None:
        self._f.flush()

    def tell(self) -> int:
        return self._f.tell()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            if not self._failed:
                self._f.flush()
                os.fsync(self._f.fileno())
            self._f.close()
            if not self._failed:
                os.replace(self.tmp, self.path)
        finally:
            with contextlib.suppress(OSError):  # gone after the rename; else not wanted
                os.unlink(self.tmp)

    def __del__(self) -> None:  # an abandoned stream: never rename a partial file
        if not self.closed:
            self._failed = True
            with contextlib.suppress(Exception):
                self.close()


class AtomicLocalHandler(pafs.FileSystemHandler):
    """pyarrow's local file system, but ``open_output_stream`` writes atomically."""

    def __init__(self) -> None:
        self._fs = pafs.LocalFileSystem()

    def __reduce__(self):  # Tune pickles the file system into tuner.pkl and to its workers
        return (AtomicLocalHandler, ())

    def __eq__(self, other) -> bool:
        return isinstance(other, AtomicLocalHandler)

    def __ne__(self, other) -> bool:
        return not self == other

    def get_type_name(self) -> str:
        return "cxr-atomic-local"

    def normalize_path(self, path: str) -> str:
        return self._fs.normalize_path(path)

    def get_file_info(self, paths):
        return self._fs.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self._fs.get_file_info(selector)

    def create_dir(self, path: str, recursive: bool) -> None:
        self._fs.create_dir(path, recursive=recursive)

    def delete_dir(self, path: str) -> None:
        self._fs.delete_dir(path)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self._fs.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        raise OSError("refusing to delete the contents of the file system's root")

    def delete_file(self, path: str) -> None:
        self._fs.delete_file(path)

    def move(self, src: str, dest: str) -> None:
        self._fs.move(src, dest)

    def copy_file(self, src: str, dest: str) -> None:
        with self._fs.open_input_stream(src) as f:
            data = f.read()
        with self.open_output_stream(dest, None) as out:
            out.write(data)

    def open_input_stream(self, path: str):
        return self._fs.open_input_stream(path)

    def open_input_file(self, path: str):
        return self._fs.open_input_file(path)

    def open_output_stream(self, path: str, metadata):
        return pa.PythonFile(_AtomicOutput(path), mode="w")

    def open_append_stream(self, path: str, metadata):
        return self._fs.open_append_stream(path)


def tune_filesystem() -> pafs.FileSystem:
    """The ``storage_filesystem`` for Tune: local paths, atomic writes."""
    return pafs.PyFileSystem(AtomicLocalHandler())
