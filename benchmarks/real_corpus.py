"""A real corpus for dedup benchmarks: the text files of released sdists of PyPI packages.

    python benchmarks/real_corpus.py --variant small --out /work/data/real-small.parquet
    python benchmarks/real_corpus.py --variant large --out /work/data/real-large.parquet
    python benchmarks/real_corpus.py --variant large --limit-mb 250 --out /tmp/real-250mb.parquet

Why this corpus: successive releases of one package are the near-duplicate structure that
real code corpora have (a file edited a little between versions, copied unchanged, or
rewritten), with real token statistics, real licence headers and boilerplate, and tiny files
(``__init__.py``). Synthetic families cannot reproduce that mix.

What is in it (all deterministic for the same arguments and the same cached inputs):

* per package, ``RELEASES`` final releases (no pre- or dev-releases; post-releases count as
  final; versions in ``packaging``
  order) uploaded before ``--released-before`` that have an sdist, picked evenly over the
  package's history (first and last included). The cutoff keeps the choice stable when new
  versions appear;
* per release, the regular files whose extension (or whole name, e.g. ``LICENSE``) is in
  ``TEXT_EXTENSIONS`` / ``TEXT_NAMES``, at most ``--max-file-mb``, valid UTF-8 and free of NUL
  bytes. Every other file is counted under its reason in the printed summary; nothing is
  dropped silently. Empty files are kept (they are documents with no shingles);
* rows ordered round-robin over packages by release rank (the first release of every
  package, then the second, ...), files of a release by path; ``id`` is the row number.
  ``--limit-mb N`` stops after the first whole release with which the text reaches N MB
  (10**6 bytes of UTF-8), so every limited corpus is a prefix of the full one, ids included.

Columns: ``id`` int64, ``package``, ``version``, ``path`` (inside the sdist, without its
top-level ``name-version/`` directory, so one file keeps its path across versions) and
``content``. One Parquet file (zstd), row groups of at most ~32 MB of text. The chosen
releases and their sha256 are stored in the file's key-value metadata (``corpus_prep.sources``).

Downloads: the PyPI JSON API and ``files.pythonhosted.org``, with the standard library only.
Both the JSON documents and the archives are cached (``--cache``, default
``~/.cache/corpus-prep/sdists``); archives are checked against the sha256 that the JSON API
lists, cached or not. A second run with the same arguments makes no network request
(the summary counts them).
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import io
import json
import os
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq
from packaging.version import InvalidVersion, Version

VARIANTS = {
    # ~20,000 documents; chosen by measuring documents per release (see BENCHMARKS.md).
    "small": ["requests", "flask", "click", "jinja2", "werkzeug", "attrs", "itsdangerous", "markupsafe"],
    # >= 1 GB of text.
    "large": ["sympy", "django", "numpy", "pandas", "scipy"],
}
RELEASES = 24
DEFAULT_CUTOFF = "2026-11-01T00:00:00"
ROW_GROUP_BYTES = 32 * 2**20

TEXT_EXTENSIONS = frozenset("""
    py pyi pyx pxd pxi c h cc cpp cxx hpp hh hxx f f90 f77 for src in
    txt rst md markdown tex cfg toml ini yaml yml json
    html htm xml css js ts po pot sh bat ps1 mk cmake am ac sql conf cnf jinja tmpl el vim
""".split())
TEXT_NAMES = frozenset("""
    readme license licence copying authors contributors changes changelog history news notice
    todo install makefile pkg-info manifest version thanks
""".split())
SCHEMA = pa.schema([("id", pa.int64()), ("package", pa.string()), ("version", pa.string()),
                    ("path", pa.string()), ("content", pa.string())])


class FetchError(RuntimeError):
    pass


@dataclass
class Release:
    package: str
    version: str
    filename: str
    url: str
    sha256: str


@dataclass
class Fetcher:
    """Cached downloads; ``requests`` counts the network requests actually made."""
    cache: str
    refresh_index: bool = False
    requests: int = 0

    def _get(self, url: str) -> bytes:
        last = None
        for attempt in range(3):
            try:
                self.requests += 1
                with urllib.request.urlopen(url, timeout=120) as resp:
                    return resp.read()
            except urllib.error.HTTPError as e:
                if e.code == 404:
                    raise FetchError(f"{url}: not found (HTTP 404)") from e
                last = e
            except (urllib.error.URLError, OSError) as e:
                last = e
            time.sleep(2 ** attempt)
        raise FetchError(f"could not download {url}: {last}")

    def index(self, package: str) -> dict:
        path = os.path.join(self.cache, "json", f"{package.lower()}.json")
        if self.refresh_index or not os.path.exists(path):
            data = self._get(index_url(package))
            json.loads(data)  # refuse to cache something that is not JSON
            _write_atomic(path, data)
        with open(path, "rb") as f:
            return json.load(f)

    def archive(self, rel: Release) -> bytes:
        path = os.path.join(self.cache, rel.filename)
        if os.path.exists(path):
            with open(path, "rb") as f:
                data = f.read()
            if hashlib.sha256(data).hexdigest() == rel.sha256:
                return data
            print(f"cached {path} does not match its sha256; downloading again", file=sys.stderr)
        data = self._get(rel.url)
        digest = hashlib.sha256(data).hexdigest()
        if digest != rel.sha256:
            raise FetchError(f"{rel.url}: sha256 {digest} differs from the index's {rel.sha256}")
        _write_atomic(path, data)
        return data


def index_url(package: str) -> str:
    return f"https://pypi.org/pypi/{package}/json"


def _write_atomic(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.part{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


SDIST_PREFERENCE = (".tar.gz", ".tgz", ".zip", ".tar.bz2", ".tar.xz")


def choose_releases(index: dict, count: int, cutoff: str) -> list[Release]:
    """``count`` final releases with an sdist uploaded before ``cutoff``, evenly spread in
    version order (indices ``round(i * (n - 1) / (count - 1))``); all of them if fewer."""
    eligible = []
    for raw, files in index["releases"].items():
        try:
            version = Version(raw)
        except InvalidVersion:
            continue
        if version.is_prerelease:  # also true for dev releases
            continue
        sdists = [f for f in files if f["packagetype"] == "sdist" and not f.get("yanked")
                  and f["upload_time_iso_8601"] < cutoff
                  and f["filename"].lower().endswith(SDIST_PREFERENCE)]
        if not sdists:
            continue
        best = min(sdists, key=lambda f: ([f["filename"].lower().endswith(s) for s in SDIST_PREFERENCE].index(True),
                                          f["filename"]))
        eligible.append((version, raw, best))
    eligible.sort(key=lambda e: (e[0], e[1]))
    if len(eligible) > count:
        picks = sorted({round(i * (len(eligible) - 1) / (count - 1)) for i in range(count)})
        eligible = [eligible[i] for i in picks]
    name = index["info"]["name"]
    # Some index mirrors list file URLs relative to the JSON document.
    return [Release(name, raw, f["filename"], urllib.parse.urljoin(index_url(name), f["url"]), f["digests"]["sha256"])
            for _, raw, f in eligible]


def _members(data: bytes, filename: str):
    """(path inside the archive, size, read()) for every member but directories; ``read`` is
    None for links and other non-regular members."""
    if filename.lower().endswith(".zip"):
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    yield info.filename, info.file_size, lambda i=info: zf.read(i)
    else:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tf:
            for m in tf:
                if not m.isdir():
                    yield m.name, m.size, ((lambda m=m: tf.extractfile(m).read()) if m.isfile() else None)


def is_text_name(path: str) -> bool:
    base = path.rsplit("/", 1)[-1].lower()
    stem, dot, ext = base.rpartition(".")
    return (dot and ext in TEXT_EXTENSIONS) or base in TEXT_NAMES or (dot and stem in TEXT_NAMES)


def release_documents(data: bytes, rel: Release, max_bytes: int, skipped: collections.Counter,
                      skipped_ext: collections.Counter) -> list[tuple[str, str]]:
    """(path, text) of the release's text files, sorted by path; skips counted by reason."""
    docs: dict[str, str] = {}
    for name, size, read in _members(data, rel.filename):
        parts = [p for p in name.split("/") if p not in ("", ".")]
        path = "/".join(parts[1:]) if len(parts) > 1 else "/".join(parts)
        if read is None:
            skipped["link or special file"] += 1
        elif not is_text_name(path):
            skipped["extension"] += 1
            base = path.rsplit("/", 1)[-1]
            skipped_ext[base.rpartition(".")[2].lower() if "." in base else "(none)"] += 1
        elif size > max_bytes:
            skipped["over size limit"] += 1
        elif path in docs:
            skipped["duplicate path in archive"] += 1
        else:
            raw = read()
            if b"\x00" in raw:
                skipped["NUL byte"] += 1
                continue
            try:
                docs[path] = raw.decode("utf-8")
            except UnicodeDecodeError:
                skipped["not UTF-8"] += 1
    return sorted(docs.items())


@dataclass
class Summary:
    documents: int = 0
    text_bytes: int = 0
    packages: dict = field(default_factory=dict)
    skipped: collections.Counter = field(default_factory=collections.Counter)
    skipped_extensions: collections.Counter = field(default_factory=collections.Counter)


def build(packages: list[str], out: str, cache: str, releases: int = RELEASES, cutoff: str = DEFAULT_CUTOFF,
          limit_mb: float | None = None, max_file_mb: float = 2.0, refresh_index: bool = False) -> dict:
    start = time.perf_counter()
    fetcher = Fetcher(cache, refresh_index)
    chosen = {p: choose_releases(fetcher.index(p), releases, cutoff) for p in packages}
    for p, rels in chosen.items():
        if len(rels) < releases:
            print(f"{p}: only {len(rels)} eligible releases (asked for {releases})", file=sys.stderr)
    order = [chosen[p][i] for i in range(max(map(len, chosen.values()))) for p in packages if i < len(chosen[p])]

    s = Summary()
    sources = []
    tmp = f"{out}.part{os.getpid()}"
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    buffer: dict[str, list] = {c: [] for c in SCHEMA.names}
    buffered = 0
    with pq.ParquetWriter(tmp, SCHEMA, compression="zstd") as writer:
        def flush():
            nonlocal buffered
            if buffer["id"]:
                writer.write_table(pa.table(buffer, schema=SCHEMA), row_group_size=len(buffer["id"]))
                for col in buffer.values():
                    col.clear()
                buffered = 0

        for rel in order:
            if limit_mb is not None and s.text_bytes >= limit_mb * 1e6:
                break
            docs = release_documents(fetcher.archive(rel), rel, int(max_file_mb * 1e6), s.skipped,
                                     s.skipped_extensions)
            info = s.packages.setdefault(rel.package, {"releases": [], "documents": 0, "mb": 0})
            info["releases"].append(rel.version)
            rel_bytes = 0
            for path, text in docs:
                size = len(text.encode("utf-8"))
                if buffered and buffered + size > ROW_GROUP_BYTES:
                    flush()
                for col, value in zip(SCHEMA.names, (s.documents, rel.package, rel.version, path, text)):
                    buffer[col].append(value)
                buffered += size
                s.documents += 1
                rel_bytes += size
            s.text_bytes += rel_bytes
            info["documents"] += len(docs)
            info["mb"] += rel_bytes / 1e6
            sources.append({"package": rel.package, "version": rel.version, "filename": rel.filename,
                            "sha256": rel.sha256, "documents": len(docs)})
            print(f"{rel.package} {rel.version}: {len(docs)} documents, {rel_bytes / 1e6:.1f} MB "
                  f"(total {s.documents}, {s.text_bytes / 1e6:.1f} MB)", file=sys.stderr)
        flush()
        writer.add_key_value_metadata({"corpus_prep.sources": json.dumps(sources)})
    os.replace(tmp, out)
    for info in s.packages.values():
        info["mb"] = round(info["mb"], 1)
    return {"out": out, "documents": s.documents, "mb": round(s.text_bytes / 1e6, 1),
            "releases": len(sources), "packages": s.packages, "skipped": dict(s.skipped.most_common()),
            "skipped_extensions_top": dict(s.skipped_extensions.most_common(15)),
            "released_before": cutoff, "network_requests": fetcher.requests,
            "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--variant", choices=sorted(VARIANTS), required=True)
    p.add_argument("--out", required=True, help="output Parquet file")
    p.add_argument("--limit-mb", type=float, help="stop after the first whole release that reaches N MB of text")
    p.add_argument("--releases", type=int, default=RELEASES, help="releases per package")
    p.add_argument("--released-before", default=DEFAULT_CUTOFF, help="ISO time; later uploads are ignored")
    p.add_argument("--max-file-mb", type=float, default=2.0)
    p.add_argument("--cache", default=os.path.expanduser("~/.cache/corpus-prep/sdists"))
    p.add_argument("--refresh-index", action="store_true", help="download the packages' JSON documents again")
    args = p.parse_args()
    try:
        summary = build(VARIANTS[args.variant], args.out, args.cache, args.releases, args.released_before,
                        args.limit_mb, args.max_file_mb, args.refresh_index)
    except FetchError as e:
        sys.exit(f"error: {e}")
    print(json.dumps({"variant": args.variant, **summary}))


if __name__ == "__main__":
    main()
