"""Downloads of the raw datasets and backbone weights: resume, checksums, atomic rename, extraction.

A file is fetched to ``<name>.part`` (resumed with an HTTP ``Range`` request when a partial file exists), verified
(md5 where published, else the sha256 prefix torchvision puts in its file names, else the sha256 recorded by the
first download in ``<dest>/checksums.json``) and only then renamed to ``<name>``: a file under its final name is
always complete. Sources, in order: the file already in place, a local mirror directory (``--mirror`` /
``SVF_MIRROR``, several joined with ``os.pathsep``), Google Drive (via ``gdown``) or the artifact's URLs.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

# weights_artifact: re-exported for the pipeline's paths (the download of a backbone's weights)
from ..backbones.imagenet import DEFAULT_WEIGHTS, IMAGENET_WEIGHTS, weights_artifact  # noqa: F401
from ..errors import DownloadFailure
from ..files import write_text

CHUNK = 1 << 20
CHECKSUMS_FILE = "checksums.json"  # sha256 recorded at first download for artifacts without a published checksum


class DownloadError(DownloadFailure):
    """A download or verification failed; the message names the file, the URL and what went wrong."""


@dataclass(frozen=True)
class Artifact:
    key: str
    filename: str
    urls: tuple[str, ...] = ()
    md5: str | None = None
    sha256_prefix: str | None = None  # torchvision style: the first hex digits of the sha256 in the file name
    gdrive_folder: str | None = None  # the file named `filename` inside this public Google Drive folder
    extract: bool = False
    size: str = ""  # approximate, for the docs and the listing
    description: str = ""


REGISTRY: dict[str, Artifact] = {a.key: a for a in (
    Artifact("voc2012", "VOCtrainval_11-May-2012.tar",
             ("http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",),
             md5="6cd6e144f989b92b3379bac3b3de84fd", extract=True, size="1.9 GB",
             description="PASCAL VOC2012 trainval (JPEGImages, SegmentationClass, ImageSets)"),
    Artifact("sbd", "benchmark.tgz",
             ("http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz",
              "http://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz"),
             md5="82b4d87ceb2ed10f6038a1cba92111cb", extract=True, size="1.4 GB",
             description="SBD (Hariharan et al.): benchmark_RELEASE/dataset/{img,cls}"),
    Artifact("sbd_train_noval", "train_noval.txt", ("http://home.bharathh.info/pubs/codes/SBD/train_noval.txt",),
             md5="79bff800c5f0b1ec6b21080a3c066722", size="63 KB",
             description="SBD train images that are not in VOC2012 val (5,623 ids)"),
    Artifact("coco_train2014", "train2014.zip", ("http://images.cocodataset.org/zips/train2014.zip",),
             md5="0da8c0bd3d6becc4dcb32757491aca88", extract=True, size="13 GB", description="COCO 2014 train images"),
    Artifact("coco_val2014", "val2014.zip", ("http://images.cocodataset.org/zips/val2014.zip",),
             md5="a3d79f5ed8d289b7a7554ce06a5782b3", extract=True, size="6.2 GB", description="COCO 2014 val images"),
    Artifact("coco_annotations2014", "annotations_trainval2014.zip",
             ("http://images.cocodataset.org/annotations/annotations_trainval2014.zip",),
             md5="0a379cfc70b0e71301e0f377548639bd", extract=True, size="241 MB",
             description="COCO 2014 instances_{train,val}2014.json"),
    *(Artifact(key, **fields) for key, fields in IMAGENET_WEIGHTS.items()),
)}

GROUPS = {
    "pascal": ("voc2012", "sbd", "sbd_train_noval"),
    "coco": ("coco_train2014", "coco_val2014", "coco_annotations2014"),
    "weights": DEFAULT_WEIGHTS,
}


def resolve_keys(names) -> list[str]:
    """Expand group names (pascal, coco, weights, all) into artifact keys, order kept, duplicates dropped."""
    keys: list[str] = []
    for name in names:
        if name == "all":
            keys += list(REGISTRY)
        elif name in GROUPS:
            keys += GROUPS[name]
        elif name in REGISTRY:
            keys.append(name)
        else:
            raise ValueError(f"unknown download item {name!r}; choose from {sorted(REGISTRY) + sorted(GROUPS)} or all")
    return list(dict.fromkeys(keys))


# --- checksums ----------------------------------------------------------------------------------------------------


def file_digest(path: str | Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _recorded_sha256(dest_dir: Path, filename: str) -> str | None:
    path = dest_dir / CHECKSUMS_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get(filename, {}).get("sha256")


def _record_sha256(dest_dir: Path, filename: str, sha256: str) -> None:
    path = dest_dir / CHECKSUMS_FILE
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[filename] = {"sha256": sha256, "recorded": time.strftime("%Y-%m-%d %H:%M:%S")}
    write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def verify(path: Path, artifact: Artifact, dest_dir: Path, source: str) -> None:
    """Check ``path`` against the artifact's checksum; raise DownloadError naming file, source and both values."""
    checks = []
    if artifact.md5:
        checks.append(("md5", artifact.md5, lambda d: d == artifact.md5))
    if artifact.sha256_prefix:
        checks.append(("sha256", artifact.sha256_prefix + "...", lambda d: d.startswith(artifact.sha256_prefix)))
    recorded = _recorded_sha256(dest_dir, artifact.filename)
    if recorded:
        checks.append(("sha256", recorded, lambda d: d == recorded))
    for algorithm, expected, ok in checks:
        actual = file_digest(path, algorithm)
        if not ok(actual):
            raise DownloadError(f"{artifact.filename}: {algorithm} mismatch for {path} (from {source}): "
                                f"expected {expected}, got {actual}")
    if not artifact.md5 and not artifact.sha256_prefix and not recorded:
        _record_sha256(dest_dir, artifact.filename, file_digest(path, "sha256"))


def _stamp(path: Path) -> Path:
    return path.with_name(f".{path.name}.verified")


def _stamp_matches(path: Path) -> bool:
    stamp = _stamp(path)
    if not stamp.is_file():
        return False
    st = path.stat()
    return json.loads(stamp.read_text()) == {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _write_stamp(path: Path) -> None:
    st = path.stat()
    write_text(_stamp(path), json.dumps({"size": st.st_size, "mtime_ns": st.st_mtime_ns}))


# --- HTTP ---------------------------------------------------------------------------------------------------------


def _progress(total: int | None, initial: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                file=sys.stderr, disable=not enabled, mininterval=1.0)


def _transfer_once(url: str, part: Path, timeout: float, progress: bool) -> None:
    """One request, appending to ``part`` from its current size; raises on an incomplete transfer."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "svf-download/1"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to send: the part file is already whole
            return
        raise
    with response:
        if offset and response.status != 206:  # the server ignored the range: start again
            offset = 0
        length = response.headers.get("Content-Length")
        expected = offset + int(length) if length is not None else None
        received = offset
        with open(part, "ab" if offset else "wb") as out, \
                _progress(expected, offset, part.name.removesuffix(".part"), progress) as bar:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if expected is not None and received < expected:
        raise ConnectionError(f"transfer ended after {received} of {expected} bytes")


def http_download(url: str, part: Path, retries: int = 3, timeout: float = 60.0, retry_wait: float = 5.0,
                  progress: bool = True) -> None:
    """Download ``url`` into ``part``, resuming it with Range requests after interruptions."""
    attempt = 0
    while True:
        try:
            _transfer_once(url, part, timeout, progress)
            return
        except urllib.error.HTTPError as exc:
            if exc.code < 500 or attempt >= retries:
                raise DownloadError(f"{part.name.removesuffix('.part')}: HTTP {exc.code} {exc.reason} from {url}") \
                    from exc
        except (http.client.HTTPException, urllib.error.URLError, OSError) as exc:
            if attempt >= retries:
                size = part.stat().st_size if part.exists() else 0
                raise DownloadError(f"{part.name.removesuffix('.part')}: download from {url} failed after "
                                    f"{attempt + 1} attempts ({exc}); {size} bytes kept in {part} for resuming") \
                    from exc
        attempt += 1
        time.sleep(retry_wait * attempt)


# --- sources ------------------------------------------------------------------------------------------------------


def mirror_dirs(mirror=None) -> list[Path]:
    """Mirror directories from the argument (path or list) or else from ``SVF_MIRROR`` (os.pathsep-separated)."""
    if mirror is None:
        mirror = os.environ.get("SVF_MIRROR", "")
    if isinstance(mirror, (str, Path)):
        mirror = [m for m in str(mirror).split(os.pathsep) if m]
    return [Path(m) for m in mirror]


def _from_mirror(src: Path, part: Path) -> None:
    if part.exists():
        part.unlink()
    try:
        os.link(src, part)  # no copy of a 13 GB zip when the mirror is on the same file system
    except OSError:
        shutil.copyfile(src, part)


def _from_gdrive(artifact: Artifact, part: Path, progress: bool) -> str:
    import gdown

    try:
        listing = gdown.download_folder(id=artifact.gdrive_folder, skip_download=True, quiet=True)
    except Exception as exc:
        raise DownloadError(f"{artifact.filename}: cannot list Google Drive folder {artifact.gdrive_folder} "
                            f"({exc}); download it by hand and pass --mirror") from exc
    matches = [f for f in listing or [] if Path(f.path).name == artifact.filename]
    if not matches:
        raise DownloadError(f"{artifact.filename}: not found in Google Drive folder {artifact.gdrive_folder}")
    url = f"https://drive.google.com/uc?id={matches[0].id}"
    try:
        gdown.download(id=matches[0].id, output=str(part), quiet=not progress, resume=True)
    except Exception as exc:
        raise DownloadError(f"{artifact.filename}: Google Drive download from {url} failed ({exc})") from exc
    return url


def fetch(artifact: Artifact, dest_dir: str | Path, mirror=None, progress: bool = True, retries: int = 3,
          timeout: float = 60.0, retry_wait: float = 5.0) -> Path:
    """Make ``<dest_dir>/<artifact.filename>`` exist and verified; returns its path."""
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / artifact.filename
    part = dest.with_name(dest.name + ".part")
    if dest.exists():
        if not _stamp_matches(dest):
            verify(dest, artifact, dest_dir, source="file in place")  # a bad file in place is the user's to remove
            _write_stamp(dest)
        return dest

    errors = []
    sources: list[tuple[str, object]] = [("mirror", m / artifact.filename) for m in mirror_dirs(mirror)
                                          if (m / artifact.filename).is_file()]
    if artifact.gdrive_folder:
        sources.append(("gdrive", None))
    sources += [("url", u) for u in artifact.urls]
    if not sources:
        raise DownloadError(f"{artifact.filename}: no source (no URL, not in mirrors {mirror_dirs(mirror)})")
    for kind, where in sources:
        try:
            if kind == "mirror":
                _from_mirror(where, part)
                source = str(where)
            elif kind == "gdrive":
                source = _from_gdrive(artifact, part, progress)
            else:
                http_download(where, part, retries=retries, timeout=timeout, retry_wait=retry_wait, progress=progress)
                source = where
            try:
                verify(part, artifact, dest_dir, source=source)
            except DownloadError:
                part.unlink()  # a complete file with the wrong checksum cannot be fixed by resuming
                raise
        except DownloadError as exc:
            errors.append(str(exc))
            continue
        os.replace(part, dest)
        _write_stamp(dest)
        return dest
    raise DownloadError("; ".join(errors))


# --- extraction ---------------------------------------------------------------------------------------------------


def extract(archive: str | Path, dest_dir: str | Path, progress: bool = False) -> Path:
    """Unpack a tar/tgz/zip into ``dest_dir`` once; a marker file makes re-runs skip. Returns the marker."""
    from tqdm import tqdm

    archive, dest_dir = Path(archive), Path(dest_dir)
    marker = dest_dir / f".{archive.name}.extracted"
    if marker.is_file():
        return marker
    dest_dir.mkdir(parents=True, exist_ok=True)
    name = archive.name.lower()
    bar = dict(desc=f"extract {archive.name}", unit="file", file=sys.stderr, disable=not progress, mininterval=2.0)
    try:
        if name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                for member in tqdm(zf.infolist(), **bar):
                    zf.extract(member, dest_dir)  # zipfile strips absolute paths and '..'
        elif name.endswith((".tar", ".tgz", ".tar.gz", ".tar.bz2", ".tar.xz")):
            with tarfile.open(archive) as tf:
                for member in tqdm(tf, **bar):
                    tf.extract(member, dest_dir, filter="data")  # refuses absolute paths, '..' and outside links
        else:
            raise DownloadError(f"{archive}: unknown archive type (expected .tar, .tgz, .tar.gz or .zip)")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        raise DownloadError(f"{archive}: cannot extract ({exc})") from exc
    write_text(marker, json.dumps({"archive": str(archive), "size": archive.stat().st_size}) + "\n")
    return marker


def download(names, dest_dir, mirror=None, do_extract: bool = True, progress: bool = True, **kwargs) -> list[Path]:
    """Fetch (and unpack) the named artifacts or groups into ``dest_dir``; returns the downloaded files."""
    paths = []
    for key in resolve_keys(names):
        artifact = REGISTRY[key]
        path = fetch(artifact, dest_dir, mirror=mirror, progress=progress, **kwargs)
        if do_extract and artifact.extract:
            extract(path, dest_dir, progress=progress)
        paths.append(path)
    return paths
