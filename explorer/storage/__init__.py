"""Experiment storage: where runs, shared encoders and cached baselines live, and how files
get there whole.

The storage root (``--storage``, default ``runs/``) holds one folder per experiment plus caches
shared by every experiment in it::

    <storage>/<name>/                 Tune's experiment folder, our trial records, results/
    <storage>/_encoders/<key>/        pre-trained encoders, keyed by a hash of what made them
    <storage>/_baselines/<key>/       baseline runs, keyed by (recipe, data, scale, seed)

- ``store``   ``Store``: the root as this process sees it (``open_store`` checks it)
- ``remote``  an object store (``s3://``) through a local mirror, one writer per file
- ``locks``   ``FileLock`` / ``ObjectLock``: inter-node locks with a heartbeat
- ``atomic``  atomic writes (every file here is written through ``atomic_path``)
"""

from explorer.storage.atomic import (
    atomic_path,
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    read_json,
)
from explorer.storage.locks import FileLock, ObjectLock
from explorer.storage.store import BASELINES, ENCODERS, Store, as_store, check_writable, open_store

__all__ = [
    "BASELINES",
    "ENCODERS",
    "FileLock",
    "ObjectLock",
    "Store",
    "as_store",
    "atomic_path",
    "atomic_torch_save",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "check_writable",
    "open_store",
    "read_json",
]
