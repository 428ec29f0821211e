"""A local S3 server for tests: moto's ``ThreadedMotoServer`` speaks the S3 REST API over HTTP,
so pyarrow's S3 file system (what ``explorer.storage.remote`` uses) talks to it exactly as to AWS.

Credentials are test values set in the environment, which processes started by a test (drivers,
Ray nodes, trials) inherit, as a cluster's nodes would inherit an instance role.
"""

from __future__ import annotations

import logging
import os
import uuid

BUCKET = "cxr-test"
ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
       "AWS_DEFAULT_REGION": "us-east-1"}


class LocalS3:
    def __enter__(self) -> LocalS3:
        import pyarrow.fs as pafs
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request
        self._saved = {k: os.environ.get(k) for k in ENV}
        os.environ.update(ENV)
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint = f"{host}:{port}"
        self.fs = pafs.S3FileSystem(endpoint_override=self.endpoint, scheme="http",
                                    region="us-east-1", allow_bucket_creation=True)
        self.fs.create_dir(BUCKET)
        return self

    def __exit__(self, *exc) -> None:
        self.server.stop()
        for k, v in self._saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    def uri(self, prefix: str = "", bucket: str = BUCKET) -> str:
        """A fresh storage URI (a new prefix unless one is given) on this server."""
        prefix = prefix or uuid.uuid4().hex[:12]
        return f"s3://{bucket}/{prefix}?endpoint_override={self.endpoint}&scheme=http" \
               "&region=us-east-1"

    def key(self, uri: str, rel: str = "") -> str:
        base = uri.split("://", 1)[1].split("?", 1)[0]
        return f"{base}/{rel}" if rel else base

    def files(self, uri: str, rel: str = "") -> dict[str, object]:
        """{path relative to the storage root: FileInfo} of every object under ``rel``."""
        import pyarrow.fs as pafs

        base = self.key(uri)
        sel = pafs.FileSelector(self.key(uri, rel), recursive=True, allow_not_found=True)
        return {i.path[len(base) + 1:]: i for i in self.fs.get_file_info(sel)
                if i.type == pafs.FileType.File}

    def read(self, uri: str, rel: str) -> bytes:
        with self.fs.open_input_stream(self.key(uri, rel)) as f:
            return f.read()
