"""A real HTTP server on 127.0.0.1 for download tests (`server` fixture in conftest.py), and
`publish`, which serves fake data-set files from it and pins a source to their hashes."""
from __future__ import annotations

import dataclasses
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from benchmark.pipeline.datasets import sources
from benchmark.pipeline.datasets.sources import RemoteFile, Source
from tests import fake_datasets as fake


class FakeServer(ThreadingHTTPServer):
    """Serves `files` (URL path -> bytes) with HTTP Range support, and misbehaves on demand:
    `status` (path -> HTTP error code), `cut_after` (path -> bytes sent before closing the socket,
    on the first request only), `stall_before` / `stall_after` (paths that hang before the
    headers / after that many body bytes until the test ends), `ignore_range` (answer 200 with the
    whole file), `no_length` (paths answered without Content-Length, the end marked by closing
    the connection) and `hold` (an event every answer waits for). `requests` records (path, Range);
    `arrived` is set by the first request."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.files: dict[str, bytes] = {}
        self.status: dict[str, int] = {}
        self.cut_after: dict[str, int] = {}
        self.stall_before: set[str] = set()
        self.stall_after: dict[str, int] = {}
        self.ignore_range = False
        self.no_length: set[str] = set()
        self.hold: threading.Event | None = None
        self.arrived = threading.Event()
        self.requests: list[tuple[str, str | None]] = []
        self.release = threading.Event()
        self.guard = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    server: FakeServer

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        srv, path, wanted = self.server, self.path, self.headers.get("Range")
        with srv.guard:
            srv.requests.append((path, wanted))
            cut = srv.cut_after.pop(path, None)
        srv.arrived.set()
        if srv.hold is not None:
            srv.hold.wait(10)
        if path in srv.status or path not in srv.files:
            self.send_error(srv.status.get(path, 404))
            return
        if path in srv.stall_before:
            srv.release.wait(10)
            return
        data, start = srv.files[path], 0
        if wanted and not srv.ignore_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", wanted).group(1))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        if path not in srv.no_length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            if cut is not None or path in srv.stall_after:
                self.wfile.write(body[: cut if cut is not None else srv.stall_after[path]])
                self.wfile.flush()
                if cut is None:
                    srv.release.wait(10)
                return
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass


def publish(server: FakeServer, monkeypatch, name: str, files: dict[str, fake.FakeFile], at: str = "") -> Source:
    """Serve `files` at `<server>/<at or name>/<file>` and pin the source of `name` to them."""
    prefix = f"/{at or name}/"
    server.files.update({prefix + file: f.data for file, f in files.items()})
    remote = tuple(RemoteFile(file, server.url + prefix + file, len(f.data), f.sha256) for file, f in files.items())
    source = dataclasses.replace(sources.SOURCES[name], files=remote)
    monkeypatch.setitem(sources.SOURCES, name, source)
    return source
