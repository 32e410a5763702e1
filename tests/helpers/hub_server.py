"""A local server speaking the Hugging Face hub's HTTP protocol, so that tests run the real
`huggingface_hub` client (and our fetcher around it) end to end without the internet.

It implements what huggingface_hub 0.x calls, read from its source (file_download.py, hf_api.py):
- `HEAD /{repo}/resolve/{revision}/{path}`: `get_hf_file_metadata` needs `X-Repo-Commit`, `ETag`
  and `Content-Length` (else FileMetadataError); errors carry `X-Error-Code` (`RepoNotFound`,
  `EntryNotFound`, `RevisionNotFound`), which `hf_raise_for_status` turns into its exceptions;
- `GET` of the same URL, whole or from a `Range: bytes=N-` (206 + `Content-Range`): `http_get`
  resumes a `.incomplete` file that way;
- `GET /api/models/{repo}/tree/{revision}[/{path}]?recursive=...`: `list_repo_files`
  (`RepoFile` wants `type`, `path`, `size`, `oid`);
- `GET /api/models/{repo}/revision/{revision}`: `snapshot_download` (`huggingface-cli download`).
It never sends Xet headers, so the client takes the plain HTTP path (tests also set
HF_HUB_DISABLE_XET). Downloads can be throttled (`rate_bps`), cut (`cut_after`: the connection
closes after N bytes of a file, once) or stalled (`stall_after`: N bytes, then silence until
`release_stalls()` or `close()`, which close those connections); `bytes_served` counts body
bytes per file, `requests` every request.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SEND_CHUNK = 16 * 1024
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_TREE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$")
_REVISION = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/revision/(?P<rev>[^/]+)$")


class HubRepo:
    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.commit = hashlib.sha1(b"".join(hashlib.sha256(files[p]).digest() for p in sorted(files))).hexdigest()

    def etag(self, path: str) -> str:
        return hashlib.sha256(self.files[path]).hexdigest()


class HubServer:
    """`with HubServer({"org/name": {path: bytes}}) as hub:` then `hub.url` is HF_ENDPOINT."""

    def __init__(self, repos: dict[str, dict[str, bytes]], rate_bps: float | None = None):
        self.repos = {repo_id: HubRepo(files) for repo_id, files in repos.items()}
        self.rate_bps = rate_bps
        self.cut_after: dict[str, int] = {}    # path -> bytes sent before the connection is closed (once)
        self.stall_after: dict[str, int] = {}  # path -> bytes sent before the server goes silent
        self.bytes_served: dict[str, int] = {}
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        self._lock = threading.Lock()
        self._stalls_over = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_class(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="test-hub", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "HubServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.release_stalls()
        self._server.shutdown()
        self._server.server_close()

    def release_stalls(self) -> None:
        """No more stalls; the stalled responses end (their clients see a cut connection)."""
        self.stall_after.clear()
        self._stalls_over.set()

    def reset_counts(self) -> None:
        with self._lock:
            self.bytes_served.clear()
            self.requests.clear()

    def _count(self, path: str, sent: int) -> None:
        with self._lock:
            self.bytes_served[path] = self.bytes_served.get(path, 0) + sent


def use_test_hub(monkeypatch, hub: HubServer, home: Path) -> Path:
    """Points this process's huggingface_hub at `hub` and an empty cache under `home`: the values it
    derived from HF_ENDPOINT and HF_HOME when it was imported, set again (restored after the test)."""
    from huggingface_hub import constants, file_download

    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(file_download, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # the test hub speaks plain HTTP only
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", constants.DOWNLOAD_CHUNK_SIZE)  # restored after
    return home


def kyutai_repos(checkpoint: Path) -> dict[str, dict[str, bytes]]:
    """A tiny checkpoint under the real repo names: the production config's path, its files tiny."""
    from deployments.settings import DEFAULT_MODEL_REPO, DEFAULT_VOICE_REPO

    return {DEFAULT_MODEL_REPO: model_repo_files(checkpoint), DEFAULT_VOICE_REPO: voice_repo_files(checkpoint)}


def model_repo_files(checkpoint: Path) -> dict[str, bytes]:
    """A checkpoint folder (deployments.checkpoint) as the model repo: every file but voices/."""
    return {p.relative_to(checkpoint).as_posix(): p.read_bytes() for p in sorted(checkpoint.rglob("*"))
            if p.is_file() and p.relative_to(checkpoint).parts[0] != "voices"}


def voice_repo_files(checkpoint: Path) -> dict[str, bytes]:
    """The checkpoint's voices/ folder as the voice repo (kyutai/tts-voices' layout)."""
    voices = checkpoint / "voices"
    return {p.relative_to(voices).as_posix(): p.read_bytes() for p in sorted(voices.rglob("*")) if p.is_file()}


def _handler_class(hub: HubServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        def _serve(self, body: bool) -> None:
            url = urllib.parse.urlsplit(self.path)
            path = urllib.parse.unquote(url.path)
            with hub._lock:
                hub.requests.append((self.command, path, self.headers.get("Range")))
            if match := _RESOLVE.match(path):
                self._resolve(match["repo"], match["path"], body)
            elif body and (match := _TREE.match(path)):
                self._tree(match["repo"], match["path"] or "", urllib.parse.parse_qs(url.query))
            elif body and (match := _REVISION.match(path)):
                self._revision(match["repo"])
            else:
                self._error(404, "EntryNotFound")

        def _repo(self, repo_id: str) -> HubRepo | None:
            repo = hub.repos.get(repo_id)
            if repo is None:
                self._error(404, "RepoNotFound")
            return repo

        def _resolve(self, repo_id: str, path: str, body: bool) -> None:
            repo = self._repo(repo_id)
            if repo is None:
                return
            if path not in repo.files:
                self._error(404, "EntryNotFound", {"X-Repo-Commit": repo.commit})
                return
            data = repo.files[path]
            start = _range_start(self.headers.get("Range"))
            status = 206 if start else 200
            headers = {"X-Repo-Commit": repo.commit, "ETag": f'"{repo.etag(path)}"', "Accept-Ranges": "bytes",
                       "Content-Length": str(len(data) - start), "Content-Type": "application/octet-stream"}
            if start:
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            self._head(status, headers)
            if body:
                self._send_file(path, data[start:], start)

        def _send_file(self, path: str, data: bytes, offset: int) -> None:
            cut, stall = hub.cut_after.pop(path, None), hub.stall_after.get(path)
            sent = 0
            try:
                while sent < len(data):
                    if cut is not None and offset + sent >= cut:
                        break  # the connection closes short of Content-Length
                    if stall is not None and offset + sent >= stall:
                        hub._stalls_over.wait()  # silent until released
                        break
                    limit = min(len(data), sent + SEND_CHUNK,
                                *(n - offset for n in (cut, stall) if n is not None and n - offset > sent))
                    self.wfile.write(data[sent:limit])
                    self.wfile.flush()
                    hub._count(path, limit - sent)
                    sent = limit
                    if hub.rate_bps:
                        time.sleep(SEND_CHUNK / hub.rate_bps)
            except (BrokenPipeError, ConnectionResetError):
                pass
            if sent < len(data):
                self.close_connection = True

        def _tree(self, repo_id: str, folder: str, query: dict) -> None:
            repo = self._repo(repo_id)
            if repo is None:
                return
            recursive = query.get("recursive", ["False"])[0].lower() == "true"
            prefix = f"{folder.strip('/')}/" if folder.strip("/") else ""
            entries, folders = [], set()
            for path in sorted(repo.files):
                if not path.startswith(prefix):
                    continue
                rest = path[len(prefix):].split("/")
                for depth in range(1, len(rest)):
                    if recursive or depth == 1:
                        folders.add(prefix + "/".join(rest[:depth]))
                if recursive or len(rest) == 1:
                    entries.append({"type": "file", "path": path, "size": len(repo.files[path]),
                                    "oid": hashlib.sha1(repo.files[path]).hexdigest()})
            entries += [{"type": "directory", "path": f, "size": 0, "oid": hashlib.sha1(f.encode()).hexdigest()}
                        for f in sorted(folders)]
            self._json(entries)

        def _revision(self, repo_id: str) -> None:
            repo = self._repo(repo_id)
            if repo is not None:
                self._json({"id": repo_id, "modelId": repo_id, "sha": repo.commit, "private": False,
                            "siblings": [{"rfilename": p} for p in sorted(repo.files)]})

        def _json(self, value) -> None:
            data = json.dumps(value).encode()
            self._head(200, {"Content-Type": "application/json", "Content-Length": str(len(data))})
            self.wfile.write(data)

        def _error(self, status: int, code: str, extra: dict | None = None) -> None:
            data = json.dumps({"error": code}).encode()
            self._head(status, {"X-Error-Code": code, "Content-Type": "application/json",
                                "Content-Length": str(len(data)), **(extra or {})})
            if self.command != "HEAD":
                self.wfile.write(data)

        def _head(self, status: int, headers: dict) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()

    return Handler


def _range_start(header: str | None) -> int:
    match = re.fullmatch(r"bytes=(\d+)-", header or "")
    return int(match[1]) if match else 0
