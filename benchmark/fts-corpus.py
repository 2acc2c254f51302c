#!/usr/bin/env python3
"""Assemble a real English text corpus for the full-text-search benchmark (issue 18).

Standard library only (Python >= 3.9). Sources are what package registries ship:

  1. Package descriptions: the `Translation-en` files (short + long descriptions, English) of
     Debian sid/trixie/bookworm/bullseye `main` and Ubuntu noble/jammy/focal
     main/restricted/universe/multiverse. A document = the short description, or one
     paragraph of the long description (paragraphs are separated by " ." lines).
  2. Documentation shipped in Debian (trixie) packages, downloaded from the pool via the
     `Filename:` of the suite's Packages index and unpacked in Python (ar + tarfile):
     HTML manuals (every <p> element = one document) and Perl's pod pages (every ordinary
     paragraph = one document): python3.13-doc, postgresql-doc-17, git-doc, perl-doc,
     python-django-doc.

Every candidate paragraph is whitespace-collapsed ("¶" marks removed) and kept when it has
3..300 words (whitespace-separated), at least 3 of them containing a letter, and at most 10%
non-ASCII letters. Case-insensitive duplicates are dropped (the first source in the order below
wins). The documents are then ordered by the SHA-256 of their UTF-8 text (deterministic and
independent of source order).

Output in benchmark/.data/fts-corpus/ (git-ignored):

  texts.jsonl    one JSON string per line (UTF-8, "\\n" line ends); line i = document i
  sources.txt    line i = id of the source document i was taken from (see manifest)
  queries.json   200 queries per class (single, or3, and3, phrase); see fts_queries.py
  manifest.json  sources (URLs, sizes, sha256, versions, counts), filters, sha256 of outputs
  raw/           cached downloads; raw/extracted/ cached per-source paragraphs

Re-running reuses raw/ (nothing is downloaded twice) and rewrites identical outputs.

    python3 benchmark/fts-corpus.py            # download (once) + build
    python3 benchmark/fts-corpus.py --offline  # fail instead of downloading
"""
from __future__ import annotations

import argparse
import bz2
import gzip
import hashlib
import html.parser
import io
import json
import lzma
import os
import re
import sys
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fts_queries  # noqa: E402

HERE = Path(__file__).resolve().parent
OUT = HERE / ".data" / "fts-corpus"
RAW = OUT / "raw"
EXTRACTED = RAW / "extracted"
EXTRACTOR_VERSION = 3  # bump when the extraction rules change (invalidates raw/extracted)

DEBIAN = "http://deb.debian.org/debian"
UBUNTU = "http://archive.ubuntu.com/ubuntu"

DESCRIPTION_SOURCES = (
    [(DEBIAN, s, "main") for s in ("sid", "trixie", "bookworm", "bullseye")]
    + [(UBUNTU, s, c) for s in ("noble", "jammy", "focal")
       for c in ("main", "restricted", "universe", "multiverse")]
)

DOC_SUITE = (DEBIAN, "trixie", "main")
# (package, extractor, member path regex, excluded member regex)
DOC_PACKAGES = [
    ("python3.13-doc", "html", r"^usr/share/doc/python3\.13/html/.*\.html$",
     r"/(_sources|_static)/|/(genindex[^/]*|search|py-modindex|contents)\.html$"),
    ("postgresql-doc-17", "html", r"^usr/share/doc/postgresql-doc-17/html/.*\.html$",
     r"/(bookindex)\.html$"),
    ("git-doc", "html", r"^usr/share/doc/git-doc/.*\.html$", None),
    ("perl-doc", "pod", r"^usr/share/perl/[^/]+/pod/.*\.pod$", None),
    ("python-django-doc", "html", r"^usr/share/doc/python-django-doc/html/.*\.html$",
     r"/(_modules|_sources|_static)/|/(genindex|search|py-modindex)\.html$"),
]
# Not used: linux-doc-6.12 (39.7 MB .deb, kernel HTML docs) would add another ~175K distinct
# paragraphs (530K in all, above the 220K-400K this benchmark aims for), many of them terse
# kernel-doc API lines ("the anchor whose urbs you want to unanchor").

MIN_WORDS, MAX_WORDS = 3, 300
MAX_NON_ASCII_LETTERS = 0.10


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# downloads


class Downloader:
    def __init__(self, offline: bool):
        self.offline = offline

    @staticmethod
    def cache_path(url: str) -> Path:
        name = re.sub(r"^https?://", "", url)
        return RAW / re.sub(r"[^A-Za-z0-9._+-]", "_", name)

    def get(self, url: str, sha256: str | None = None, size: int | None = None) -> Path:
        """Path of the cached download of url (downloading it first if needed)."""
        path = self.cache_path(url)
        if path.exists() and (size is None or path.stat().st_size == size):
            return path
        if self.offline:
            raise SystemExit(f"--offline: {url} not cached at {path}")
        RAW.mkdir(parents=True, exist_ok=True)
        part = path.with_name(path.name + ".part")
        t0 = time.time()
        req = urllib.request.Request(url, headers={"User-Agent": "quiver-fts-corpus/1"})
        h = hashlib.sha256()
        n = 0
        with urllib.request.urlopen(req, timeout=60) as r, open(part, "wb") as f:
            total = int(r.headers.get("Content-Length") or 0)
            next_report = 16 << 20
            while True:
                b = r.read(1 << 20)
                if not b:
                    break
                f.write(b)
                h.update(b)
                n += len(b)
                if n >= next_report:
                    log(f"  {path.name}: {n >> 20} / {total >> 20} MiB")
                    next_report += 16 << 20
        if size is not None and n != size:
            part.unlink()
            raise SystemExit(f"{url}: got {n} bytes, index says {size}")
        if sha256 is not None and h.hexdigest() != sha256:
            part.unlink()
            raise SystemExit(f"{url}: sha256 mismatch")
        os.replace(part, path)
        log(f"downloaded {url} ({n / 1e6:.1f} MB, {time.time() - t0:.1f} s)")
        return path

    def get_first(self, urls: list[str]) -> tuple[str, Path]:
        """First of urls that is cached, else the first that downloads (404 -> next)."""
        for u in urls:
            if self.cache_path(u).exists():
                return u, self.cache_path(u)
        last = None
        for u in urls:
            try:
                return u, self.get(u)
            except urllib.error.HTTPError as e:
                if e.code != 404:
                    raise
                last = e
        raise SystemExit(f"none of {urls} could be downloaded ({last})")


def decompress_text(path: Path) -> str:
    raw = path.read_bytes()
    if path.name.endswith(".xz"):
        raw = lzma.decompress(raw)
    elif path.name.endswith(".bz2"):
        raw = bz2.decompress(raw)
    elif path.name.endswith(".gz"):
        raw = gzip.decompress(raw)
    return raw.decode("utf-8", errors="replace")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# Debian control files, versions, .deb archives


def parse_control(text: str):
    """Yield dicts of the stanzas of a Packages / Translation file (continuations joined by \\n)."""
    rec: dict[str, str] = {}
    key = None
    for line in text.split("\n"):
        if not line.strip():
            if rec:
                yield rec
            rec, key = {}, None
        elif line[0] in " \t":
            if key is not None:
                rec[key] += "\n" + line
        else:
            key, _, val = line.partition(":")
            rec[key] = val.strip()
    if rec:
        yield rec


def _order(c: str) -> int:
    if c == "~":
        return -1
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def _cmp_part(a: str, b: str) -> int:
    i = j = 0
    while i < len(a) or j < len(b):
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ca = _order(a[i]) if i < len(a) and not a[i].isdigit() else 0
            cb = _order(b[j]) if j < len(b) and not b[j].isdigit() else 0
            if ca != cb:
                return -1 if ca < cb else 1
            i += 1
            j += 1
        na = nb = ""
        while i < len(a) and a[i].isdigit():
            na += a[i]
            i += 1
        while j < len(b) and b[j].isdigit():
            nb += b[j]
            j += 1
        x, y = int(na or 0), int(nb or 0)
        if x != y:
            return -1 if x < y else 1
    return 0


def dpkg_cmp(a: str, b: str) -> int:
    """Compare Debian versions (epoch:upstream-revision) like dpkg --compare-versions."""
    def split(v):
        e, _, rest = v.rpartition(":") if ":" in v else ("0", "", v)
        up, _, rev = rest.rpartition("-") if "-" in rest else (rest, "", "0")
        return int(e or 0), up, rev
    ea, ua, ra = split(a)
    eb, ub, rb = split(b)
    if ea != eb:
        return -1 if ea < eb else 1
    return _cmp_part(ua, ub) or _cmp_part(ra, rb)


def deb_data_tar(path: Path) -> tarfile.TarFile:
    data = path.read_bytes()
    if data[:8] != b"!<arch>\n":
        raise SystemExit(f"{path}: not an ar archive")
    off = 8
    while off + 60 <= len(data):
        hdr = data[off:off + 60]
        name = hdr[:16].decode().strip().rstrip("/")
        size = int(hdr[48:58])
        if name.startswith("data.tar"):
            return tarfile.open(fileobj=io.BytesIO(data[off + 60:off + 60 + size]), mode="r:*")
        off += 60 + size + (size & 1)
    raise SystemExit(f"{path}: no data.tar member")


# ---------------------------------------------------------------------------------------------
# paragraph extraction

_WS = re.compile(r"\s+")
_HAS_LETTER = re.compile(r"[^\W\d_]")


def clean(text: str) -> str:
    return _WS.sub(" ", text.replace("\u00b6", " ").replace("\u00a0", " ")).strip()


def acceptable(p: str) -> bool:
    words = p.split(" ")
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return False
    if sum(1 for w in words if _HAS_LETTER.search(w)) < MIN_WORDS:
        return False
    letters = [c for c in p if c.isalpha()]
    non_ascii = sum(1 for c in letters if ord(c) > 127)
    return non_ascii <= MAX_NON_ASCII_LETTERS * len(letters)


def description_paragraphs(text: str) -> list[str]:
    out = []
    for rec in parse_control(text):
        desc = rec.get("Description-en", rec.get("Description"))
        if desc is None:
            continue
        lines = desc.split("\n")
        out.append(lines[0])
        para: list[str] = []
        for line in lines[1:]:
            if line.strip() == ".":
                if para:
                    out.append(" ".join(para))
                para = []
            else:
                para.append(line)
        if para:
            out.append(" ".join(para))
    return out


class ParagraphHTML(html.parser.HTMLParser):
    """Collects the text of every <p> element (outside script/style/pre)."""

    SKIP = {"script", "style", "pre", "head", "textarea"}
    ENDS_P = {"div", "ul", "ol", "dl", "table", "pre", "blockquote", "section", "h1", "h2",
              "h3", "h4", "h5", "h6", "hr", "form", "nav", "header", "footer"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[str] = []
        self.buf: list[str] | None = None
        self.skip = 0

    def flush(self):
        if self.buf is not None:
            self.paragraphs.append("".join(self.buf))
        self.buf = None

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skip += 1
        if tag == "p":
            self.flush()
            self.buf = []
        elif tag in self.ENDS_P:
            self.flush()
        elif tag == "br" and self.buf is not None:
            self.buf.append(" ")

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self.skip = max(0, self.skip - 1)
        if tag == "p" or tag in self.ENDS_P:
            self.flush()

    def handle_data(self, data):
        if self.buf is not None and not self.skip:
            self.buf.append(data)


def html_paragraphs(raw: bytes) -> list[str]:
    p = ParagraphHTML()
    p.feed(raw.decode("utf-8", errors="replace"))
    p.close()
    p.flush()
    return p.paragraphs


_POD_DOUBLE = re.compile(r"([A-Z])<{2,}\s+(.*?)\s+>{2,}", re.S)
_POD_SINGLE = re.compile(r"([A-Z])<([^<>]*)>")
_POD_ENTITIES = {"lt": "<", "gt": ">", "verbar": "|", "sol": "/", "quot": '"', "amp": "&"}


def _pod_code(m: re.Match) -> str:
    code, body = m.group(1), m.group(2)
    if code in "XZ":
        return ""
    if code == "E":
        if body in _POD_ENTITIES:
            return _POD_ENTITIES[body]
        try:
            return chr(int(body, 0)) if body[:1].isdigit() else html.unescape(f"&{body};")
        except ValueError:
            return body
    if code == "L":
        text, bar, target = body.partition("|")
        if bar:
            return text
        return body.replace('/"', " ").replace('"', "")
    return body


def pod_strip(text: str) -> str:
    text = _POD_DOUBLE.sub(_pod_code, text)
    for _ in range(8):
        new = _POD_SINGLE.sub(_pod_code, text)
        if new == text:
            break
        text = new
    return text


def pod_paragraphs(raw: bytes) -> list[str]:
    out = []
    in_pod, skip_block = True, 0
    for para in re.split(r"\n[ \t]*\n", raw.decode("utf-8", errors="replace")):
        if not para.strip():
            continue
        first = para.lstrip("\n")
        if first.startswith("="):
            cmd = first.split(None, 1)[0]
            if cmd == "=cut":
                in_pod = False
            else:
                in_pod = True
            if cmd in ("=begin",):
                skip_block += 1
            elif cmd == "=end":
                skip_block = max(0, skip_block - 1)
            continue
        if not in_pod or skip_block or first[:1] in (" ", "\t"):
            continue  # code, or a verbatim paragraph
        out.append(pod_strip(first))
    return out


def extract_cached(source_id: str, raw_sha: str, fn) -> list[str]:
    """Paragraphs of a source (cleaned), cached in raw/extracted/ keyed by the raw sha256."""
    EXTRACTED.mkdir(parents=True, exist_ok=True)
    path = EXTRACTED / (re.sub(r"[^A-Za-z0-9._+-]", "_", source_id) + ".json.gz")
    key = f"{raw_sha}:v{EXTRACTOR_VERSION}"
    if path.exists():
        with gzip.open(path, "rt", encoding="utf-8") as f:
            cached = json.load(f)
        if cached.get("key") == key:
            return cached["paragraphs"]
    t0 = time.time()
    paras = [clean(p) for p in fn()]
    paras = [p for p in paras if p]
    tmp = path.with_name(path.name + ".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8") as f:
        json.dump({"key": key, "paragraphs": paras}, f, ensure_ascii=False)
    os.replace(tmp, path)
    log(f"  extracted {len(paras)} paragraphs from {source_id} ({time.time() - t0:.1f} s)")
    return paras


# ---------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--offline", action="store_true", help="use raw/ only; never download")
    ap.add_argument("--seed", type=int, default=fts_queries.DEFAULT_SEED, help="query seed")
    a = ap.parse_args()
    t_start = time.time()
    dl = Downloader(a.offline)
    OUT.mkdir(parents=True, exist_ok=True)

    sources = []  # (meta, paragraphs)

    log("package descriptions (Translation-en)")
    for base, suite, comp in DESCRIPTION_SOURCES:
        stem = f"{base}/dists/{suite}/{comp}/i18n/Translation-en"
        url, path = dl.get_first([stem + ext for ext in (".xz", ".bz2", ".gz")])
        sha = sha256_file(path)
        distro = "debian" if base == DEBIAN else "ubuntu"
        sid = f"{distro}-{suite}-{comp}-descriptions"
        paras = extract_cached(sid, sha, lambda: description_paragraphs(decompress_text(path)))
        sources.append(({"id": sid, "kind": "package descriptions (Translation-en)", "url": url,
                         "bytes": path.stat().st_size, "sha256": sha}, paras))

    log("documentation packages")
    base, suite, comp = DOC_SUITE
    idx_url, idx_path = dl.get_first(
        [f"{base}/dists/{suite}/{comp}/binary-amd64/Packages{ext}" for ext in (".xz", ".gz")])
    wanted = {p[0] for p in DOC_PACKAGES}
    best: dict[str, dict] = {}
    for rec in parse_control(decompress_text(idx_path)):
        name = rec.get("Package")
        if name in wanted and (name not in best
                               or dpkg_cmp(rec["Version"], best[name]["Version"]) > 0):
            best[name] = rec
    for name, kind, member_re, exclude_re in DOC_PACKAGES:
        if name not in best:
            raise SystemExit(f"{name} not in {idx_url}")
        rec = best[name]
        url = f"{base}/{rec['Filename']}"
        path = dl.get(url, sha256=rec.get("SHA256"), size=int(rec["Size"]))
        inc, exc = re.compile(member_re), re.compile(exclude_re) if exclude_re else None
        parse = html_paragraphs if kind == "html" else pod_paragraphs

        def extract(path=path, inc=inc, exc=exc, parse=parse):
            out, files = [], 0
            with deb_data_tar(path) as tar:
                for m in tar:
                    n = m.name[2:] if m.name.startswith("./") else m.name
                    if not m.isfile() or not inc.search(n) or (exc and exc.search(n)):
                        continue
                    files += 1
                    out.extend(parse(tar.extractfile(m).read()))
            log(f"  {name}: {files} files")
            return out

        paras = extract_cached(f"{name}-{rec['Version']}", rec["SHA256"], extract)
        sources.append(({"id": name, "kind": f"{kind} documentation (.deb)", "url": url,
                         "package": name, "version": rec["Version"], "suite": suite,
                         "bytes": int(rec["Size"]), "sha256": rec["SHA256"],
                         "packages_index": idx_url}, paras))

    log("filtering and de-duplicating")
    seen: dict[str, int] = {}
    docs: list[tuple[str, str]] = []  # (text, source id)
    source_meta = []
    for meta, paras in sources:
        ok = new = 0
        for p in paras:
            if not acceptable(p):
                continue
            ok += 1
            k = p.casefold()
            if k in seen:
                continue
            seen[k] = len(docs)
            docs.append((p, meta["id"]))
            new += 1
        meta = dict(meta, paragraphs=len(paras), accepted=ok, new_distinct=new)
        source_meta.append(meta)
        log(f"  {meta['id']:45s} {len(paras):8d} paragraphs {ok:8d} accepted "
            f"{new:8d} new (total {len(docs)})")

    docs.sort(key=lambda d: hashlib.sha256(d[0].encode("utf-8")).digest())
    texts = [d[0] for d in docs]

    texts_path = OUT / "texts.jsonl"
    tmp = texts_path.with_name("texts.jsonl.tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for t in texts:
            f.write(json.dumps(t, ensure_ascii=False) + "\n")
    os.replace(tmp, texts_path)
    src_path = OUT / "sources.txt"
    with open(src_path.with_name("sources.txt.tmp"), "w", encoding="utf-8", newline="\n") as f:
        for d in docs:
            f.write(d[1] + "\n")
    os.replace(src_path.with_name("sources.txt.tmp"), src_path)
    log(f"wrote {texts_path} ({len(texts)} documents, {texts_path.stat().st_size / 1e6:.1f} MB)")

    log("generating queries")
    t_q = time.time()
    queries = fts_queries.generate(texts, seed=a.seed, log=lambda m: log("  " + m))
    queries_path = OUT / "queries.json"
    fts_queries.write_json(queries, str(queries_path))
    log(f"wrote {queries_path} ({time.time() - t_q:.1f} s)")

    nwords = sorted(len(t.split(" ")) for t in texts)
    nchars = sorted(len(t) for t in texts)
    manifest = {
        "format": "quiver-fts-corpus/1",
        "generator": "benchmark/fts-corpus.py",
        "documents": len(texts),
        "files": {
            "texts.jsonl": {"bytes": texts_path.stat().st_size, "sha256": sha256_file(texts_path),
                            "format": "one JSON string per line (UTF-8); line i = document i"},
            "sources.txt": {"bytes": src_path.stat().st_size, "sha256": sha256_file(src_path),
                            "format": "line i = source id of document i"},
            "queries.json": {"bytes": queries_path.stat().st_size,
                             "sha256": sha256_file(queries_path), "format": fts_queries.FORMAT,
                             "per_class": queries["per_class"], "seed": queries["seed"]},
        },
        "filters": {
            "paragraph": "whitespace collapsed, pilcrows removed",
            "words": [MIN_WORDS, MAX_WORDS], "min_words_with_letters": MIN_WORDS,
            "max_non_ascii_letter_fraction": MAX_NON_ASCII_LETTERS,
            "dedup": "case-insensitive (str.casefold), first source wins",
            "order": "ascending sha256 of the UTF-8 text",
        },
        "stats": {
            "words": {"min": nwords[0], "median": nwords[len(nwords) // 2],
                      "mean": round(sum(nwords) / len(nwords), 1), "max": nwords[-1],
                      "total": sum(nwords)},
            "chars": {"median": nchars[len(nchars) // 2],
                      "mean": round(sum(nchars) / len(nchars), 1), "max": nchars[-1]},
        },
        "sources": source_meta,
    }
    fts_queries.write_json(manifest, str(OUT / "manifest.json"))
    log(f"done: {len(texts)} documents, {sum(len(c['queries']) for c in queries['classes'].values())}"
        f" queries, {time.time() - t_start:.1f} s")


if __name__ == "__main__":
    main()
