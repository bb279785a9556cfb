"""Downloads against a local HTTP server (127.0.0.1) with Range support: resume, checksums, errors, mirrors."""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from svf.data.download import Artifact, DownloadError, download, extract, fetch, resolve_keys

DATA = bytes(range(256)) * 200  # 51,200 bytes
MD5 = hashlib.md5(DATA).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection: a short body ends with EOF

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        srv = self.server
        rng = self.headers.get("Range")
        srv.requests.append((self.path, rng))
        route = srv.routes.get(self.path)
        if route is None:
            self.send_error(404)
            return
        kind, body = route
        if kind == "status":
            self.send_error(body)
            return
        start = int(rng.split("=")[1].split("-")[0]) if rng and kind != "norange" else 0
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body) - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.end_headers()
        payload = body[start:]
        calls = sum(1 for p, _ in srv.requests if p == self.path)
        if kind == "truncate" or (kind == "flaky" and calls == 1):
            payload = payload[: len(payload) // 2]  # announce everything, send half, hang up
        self.wfile.write(payload)


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.routes, srv.requests = {}, []
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()


def _artifact(server, route, kind="ok", body=DATA, md5=MD5, name="data.bin"):
    server.routes[route] = (kind, body)
    return Artifact("t", name, (server.url + route,), md5=md5)


def _fetch(art, dest, **kw):
    return fetch(art, dest, mirror=[], progress=False, retries=kw.pop("retries", 2), retry_wait=0, timeout=5, **kw)


def test_good_file_lands_verified_without_part(server, tmp_path):
    path = _fetch(_artifact(server, "/good"), tmp_path)
    assert path.read_bytes() == DATA
    assert not (tmp_path / "data.bin.part").exists()
    _fetch(_artifact(server, "/good"), tmp_path)  # second call: in place, no request
    assert len(server.requests) == 1


def test_truncated_transfer_keeps_part_and_never_final_name(server, tmp_path):
    with pytest.raises(DownloadError, match=r"data\.bin: download from http://127\.0\.0\.1:\d+/cut failed"):
        _fetch(_artifact(server, "/cut", kind="truncate"), tmp_path, retries=1)
    assert not (tmp_path / "data.bin").exists()
    assert 0 < (tmp_path / "data.bin.part").stat().st_size < len(DATA)
    assert server.requests[1][1] is not None  # the retry asked for the rest with a Range header


def test_wrong_checksum_names_file_url_and_both_values(server, tmp_path):
    with pytest.raises(DownloadError) as info:
        _fetch(_artifact(server, "/bad", md5="0" * 32), tmp_path)
    msg = str(info.value)
    assert "data.bin" in msg and "/bad" in msg and "0" * 32 in msg and MD5 in msg
    assert not (tmp_path / "data.bin").exists() and not (tmp_path / "data.bin.part").exists()


def test_server_errors_name_status_and_url(server, tmp_path):
    server.routes["/boom"] = ("status", 500)
    with pytest.raises(DownloadError, match=r"HTTP 500 .* from http://127\.0\.0\.1:\d+/boom"):
        _fetch(Artifact("t", "x.bin", (server.url + "/boom",), md5=MD5), tmp_path, retries=1)
    assert [p for p, _ in server.requests].count("/boom") == 2  # 5xx is retried
    with pytest.raises(DownloadError, match="HTTP 404"):
        _fetch(Artifact("t", "x.bin", (server.url + "/missing",), md5=MD5), tmp_path)
    assert [p for p, _ in server.requests].count("/missing") == 1  # 4xx is not


def test_interrupted_transfer_resumes_with_range(server, tmp_path):
    path = _fetch(_artifact(server, "/flaky", kind="flaky"), tmp_path)
    assert path.read_bytes() == DATA
    (_, first), (_, second) = server.requests
    assert first is None and second == f"bytes={len(DATA) // 2}-"


def test_part_file_from_an_earlier_run_is_resumed(server, tmp_path):
    (tmp_path / "data.bin.part").write_bytes(DATA[:1000])
    assert _fetch(_artifact(server, "/good"), tmp_path).read_bytes() == DATA
    assert server.requests == [("/good", "bytes=1000-")]


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    (tmp_path / "data.bin.part").write_bytes(b"x" * 1000)
    assert _fetch(_artifact(server, "/norange", kind="norange"), tmp_path).read_bytes() == DATA


def test_mirror_dir_replaces_url(server, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "data.bin").write_bytes(DATA)
    art = Artifact("t", "data.bin", (server.url + "/nowhere",), md5=MD5)
    assert fetch(art, tmp_path / "a", mirror=[mirror], progress=False).read_bytes() == DATA
    monkeypatch.setenv("SVF_MIRROR", str(mirror))
    assert fetch(art, tmp_path / "b", progress=False).read_bytes() == DATA
    assert server.requests == []
    (mirror / "data.bin").write_bytes(DATA[:-1])  # corrupt mirror copy: fall back to the URL, which 404s
    with pytest.raises(DownloadError, match=r"md5 mismatch .*mirror.*; data\.bin: HTTP 404"):
        fetch(art, tmp_path / "c", progress=False, retry_wait=0)
    assert (mirror / "data.bin").exists()  # the mirror's file is never removed


def test_bad_file_in_place_is_reported_not_replaced(tmp_path):
    (tmp_path / "data.bin").write_bytes(b"oops")
    with pytest.raises(DownloadError, match="file in place"):
        fetch(Artifact("t", "data.bin", ("http://127.0.0.1:9/x",), md5=MD5), tmp_path, mirror=[], progress=False)
    assert (tmp_path / "data.bin").read_bytes() == b"oops"


def test_unpublished_checksum_is_recorded_then_enforced(server, tmp_path):
    art = _artifact(server, "/w", md5=None, name="w.pth")
    _fetch(art, tmp_path)
    recorded = json.loads((tmp_path / "checksums.json").read_text())["w.pth"]["sha256"]
    assert recorded == hashlib.sha256(DATA).hexdigest()
    (tmp_path / "w.pth").unlink()
    server.routes["/w"] = ("ok", DATA + b"changed")
    with pytest.raises(DownloadError, match=f"sha256 mismatch.*expected {recorded}"):
        _fetch(art, tmp_path)


def _tar_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_extract_tgz_and_zip_once_with_marker(tmp_path):
    tgz = tmp_path / "a.tgz"
    tgz.write_bytes(_tar_bytes({"top/x.txt": b"x"}))
    out = tmp_path / "out"
    extract(tgz, out)
    assert (out / "top/x.txt").read_bytes() == b"x"
    (out / "top/x.txt").unlink()
    extract(tgz, out)  # marker present: skipped
    assert not (out / "top/x.txt").exists()
    zpath = tmp_path / "b.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("annotations/i.json", "{}")
    extract(zpath, out)
    assert (out / "annotations/i.json").read_text() == "{}"


def test_extract_refuses_paths_outside_and_unknown_types(tmp_path):
    evil = tmp_path / "evil.tar"
    evil.write_bytes(_tar_bytes({"../escaped.txt": b"x"}))
    with pytest.raises(DownloadError, match="evil.tar: cannot extract"):
        extract(evil, tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists()
    (tmp_path / "f.rar").write_bytes(b"")
    with pytest.raises(DownloadError, match="unknown archive type"):
        extract(tmp_path / "f.rar", tmp_path / "out")


def test_download_fetches_and_extracts_registry_items(server, tmp_path, monkeypatch):
    body = _tar_bytes({"VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt": b"2007_000033\n"})
    server.routes["/voc.tar"] = ("ok", body)
    import svf.data.download as dl

    monkeypatch.setitem(dl.REGISTRY, "voc2012", Artifact("voc2012", "VOCtrainval_11-May-2012.tar",
                                                         (server.url + "/voc.tar",),
                                                         md5=hashlib.md5(body).hexdigest(), extract=True))
    download(["voc2012"], tmp_path, mirror=[], progress=False, retry_wait=0)
    assert (tmp_path / "VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt").read_text() == "2007_000033\n"
    assert resolve_keys(["pascal", "sbd"]) == ["voc2012", "sbd", "sbd_train_noval"]
    with pytest.raises(ValueError, match="unknown download item 'imagenet'"):
        resolve_keys(["imagenet"])


def test_google_drive_source_lists_folder_and_records_sha256(tmp_path, monkeypatch):
    import gdown

    class Entry:
        def __init__(self, id_, path):
            self.id, self.path = id_, path

    calls = {}
    monkeypatch.setattr(gdown, "download_folder", lambda id, skip_download, quiet: [
        Entry("f101", "initmodel/resnet101_v2.pth"), Entry("f50", "initmodel/resnet50_v2.pth")])

    def fake_download(id, output, quiet, resume):
        calls["id"], calls["output"] = id, output
        with open(output, "wb") as f:
            f.write(DATA)
        return output

    monkeypatch.setattr(gdown, "download", fake_download)
    art = Artifact("resnet50_v2", "resnet50_v2.pth", gdrive_folder="FOLDER")
    path = fetch(art, tmp_path, mirror=[], progress=False)
    assert calls == {"id": "f50", "output": str(tmp_path / "resnet50_v2.pth.part")}
    assert path.read_bytes() == DATA
    recorded = json.loads((tmp_path / "checksums.json").read_text())["resnet50_v2.pth"]["sha256"]
    assert recorded == hashlib.sha256(DATA).hexdigest()
    monkeypatch.setattr(gdown, "download_folder", lambda id, skip_download, quiet: [])
    with pytest.raises(DownloadError, match="resnet50_v2.pth: not found in Google Drive folder FOLDER"):
        fetch(art, tmp_path / "other", mirror=[], progress=False)
