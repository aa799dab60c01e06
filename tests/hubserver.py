"""A Hugging Face Hub protocol server on 127.0.0.1 for tests: the real huggingface_hub client
talks to it through HF_ENDPOINT. It serves repos built in tmp_path and records every request.

Endpoints (what huggingface_hub asks for):
  GET  /api/models/{repo}[/revision/{rev}]           {id, sha, siblings: [{rfilename}]}
  GET  /api/models/{repo}/tree/{rev}?recursive=true  [{type, path, size, oid}]
  HEAD/GET /{repo}/resolve/{rev}/{file}              X-Repo-Commit, ETag, Content-Length, Range
Errors carry X-Error-Code: RepoNotFound | RevisionNotFound | EntryNotFound | GatedRepo; a forbidden
repo is a bare 403.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


@dataclass
class Repo:
    """A repo: commits (sha → {file name → local path}) and refs (branch/tag → sha)."""

    commits: dict[str, dict[str, Path]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    gated: bool = False
    token: str | None = None  # when set, requests must carry "Authorization: Bearer <token>"
    forbidden: bool = False  # every request answered 403 with no error code (a token without access)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    auth: str | None
    range: str | None = None  # the Range header: "bytes=0-100000" reads a safetensors header only


class HubServer:
    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[Request] = []
        self.hooks: list[Callable[[Request], None]] = []
        self.error_codes = True  # False: errors without X-Error-Code, as some mirrors and proxies answer
        self.lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"hub": self})
        self.httpd = _Server(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def add(self, repo_id: str, folder: Path, ref: str = "main", gated: bool = False, token: str | None = None) -> str:
        """Publish every file of `folder` as a new commit of `repo_id` on `ref`; return its sha."""
        repo = self.repos.setdefault(repo_id, Repo())
        repo.gated, repo.token = gated, token
        files = {str(p.relative_to(folder)): p for p in sorted(folder.rglob("*")) if p.is_file()}
        digest = hashlib.sha1(repo_id.encode() + ref.encode() + str(len(repo.commits)).encode())
        for name, path in files.items():
            digest.update(name.encode() + path.read_bytes())
        sha = digest.hexdigest()
        repo.commits[sha] = files
        repo.refs[ref] = sha
        return sha

    def downloaded(self, repo_id: str) -> list[str]:
        """Files of `repo_id` fetched whole with GET (not HEAD, not a header's byte range)."""
        prefix = f"/{repo_id}/resolve/"
        out = []
        for r in self.requests:
            closed_range = r.range is not None and re.fullmatch(r"bytes=\d+-\d+", r.range)
            if r.method == "GET" and r.path.startswith(prefix) and not closed_range:
                out.append(r.path[len(prefix) :].split("/", 1)[1])
        return out

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """A client that closed its connection (huggingface_hub after a header's byte range) is no
        error of the server's: nothing on stderr, where the tests read xcr's one error line."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        with self.hub.lock:
            request = Request(self.command, path, self.headers.get("Authorization"), self.headers.get("Range"))
            self.hub.requests.append(request)
        for hook in list(self.hub.hooks):  # tests change the repos between requests (a branch moving on)
            hook(request)
        m = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/(.+))?", path)
        if m:
            repo_id, rev = m.group(1), m.group(2) or "main"
            found = self._resolve(repo_id, rev)
            if found:
                repo, sha = found
                siblings = [{"rfilename": f} for f in repo.commits[sha]]
                self._json(
                    {"id": repo_id, "modelId": repo_id, "sha": sha, "siblings": siblings, "private": False}, body
                )
            return
        m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)(?:/.*)?", path)
        if m:
            found = self._resolve(m.group(1), m.group(2))
            if found:
                repo, sha = found
                items = [
                    {
                        "type": "file",
                        "path": f,
                        "size": p.stat().st_size,
                        "oid": hashlib.sha1(p.read_bytes()).hexdigest(),
                    }
                    for f, p in repo.commits[sha].items()
                ]
                self._json(items, body)
            return
        m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if m:
            found = self._resolve(m.group(1), m.group(2))
            if not found:
                return
            repo, sha = found
            local = repo.commits[sha].get(m.group(3))
            if local is None:
                self._error(404, "EntryNotFound", "Entry not found")
                return
            self._file(local, sha, body)
            return
        self._error(404, "RepoNotFound", "Not found")

    def _resolve(self, repo_id: str, rev: str) -> tuple[Repo, str] | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._error(401, "RepoNotFound", "Repository not found")
            return None
        if repo.forbidden:
            self._error(403, "", "Forbidden")
            return None
        if repo.token and self.headers.get("Authorization") != f"Bearer {repo.token}":
            if repo.gated:
                self._error(401, "GatedRepo", "Access to this repo is restricted")
            else:
                self._error(401, "RepoNotFound", "Repository not found")
            return None
        sha = repo.refs.get(rev, rev if rev in repo.commits else None)
        if sha is None:
            self._error(404, "RevisionNotFound", "Invalid rev id")
            return None
        return repo, sha

    def _json(self, data: object, body: bool) -> None:
        raw = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        if body:
            self.wfile.write(raw)

    def _file(self, local: Path, sha: str, body: bool) -> None:
        data = local.read_bytes()
        etag = '"' + hashlib.sha256(data).hexdigest() + '"'
        start, end, status = 0, len(data), 200
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if m and body:  # `bytes=N-` (resumed downloads) and `bytes=N-M` (safetensors headers)
            start = min(int(m.group(1)), len(data))
            end = min(int(m.group(2)) + 1, len(data)) if m.group(2) else len(data)
            status = 206
        self.send_response(status)
        self.send_header("X-Repo-Commit", sha)
        self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
        self.end_headers()
        if body:
            self.wfile.write(data[start:end])

    def _error(self, status: int, code: str, message: str) -> None:
        raw = json.dumps({"error": message}).encode()
        self.send_response(404 if not self.hub.error_codes and code.endswith("NotFound") else status)
        if self.hub.error_codes and code:
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", message)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)
