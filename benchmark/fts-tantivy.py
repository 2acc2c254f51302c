#!/usr/bin/env python3
"""Reference line for the full-text-search benchmark (issue 18): tantivy (PyPI `tantivy`).

    pip install --user tantivy            # tested with tantivy 0.27.0 (engine "tantivy v0.27.0")
    python3 benchmark/fts-tantivy.py --corpus benchmark/.data/fts-corpus [--out result.json]
    python3 benchmark/fts-tantivy.py --texts T.jsonl[.gz] --queries Q.json
    python3 benchmark/fts-tantivy.py --pydocs   # ../shared/data/pydocs-minilm-384/texts.jsonl.gz;
                                                # queries -> benchmark/.data/fts-pydocs/queries.json

Index: an on-disk index in a temporary directory (removed afterwards unless --keep-index) with
  * `text`: tokenizer "default" = SimpleTokenizer (split on non-alphanumeric chars) +
    RemoveLongFilter(40) (tokens of >= 40 bytes dropped) + LowerCaser; no stemming, no stop
    words; index_option "position" (needed by phrase queries); not stored.
  * `id`: i64 fast field (not indexed, not stored) = the document's line in texts.jsonl, used to
    report result ids (read after timing with Searcher.fast_field_values).
Build time = add_document for every text + commit() (the writer's indexing threads = all cores
unless --threads); merge_wait_s = wait_merging_threads() afterwards (background merges the
commit started), reported separately; index_bytes = all files in the index directory after
that.

Queries (see fts_queries.py for queries.json): single = TermQuery; or3 = BooleanQuery of
three TermQuery with Occur.Should; and3 = the same with Occur.Must; phrase = PhraseQuery (slop
0). Scoring is tantivy's BM25 (k1 = 1.2, b = 0.75). Each query is built once (not timed), one
warm-up pass runs every query, then every query is timed alone (time.perf_counter around
`searcher.search(query, limit=10, count=False)`). Result ids and total match counts come from
a separate untimed pass: ids = the top-10 by score, ties broken by the smaller id (tantivy itself
breaks ties by segment/doc address, which depends on the writer threads).

Note for comparisons: tantivy stores each document's length in one byte (fieldnorm, ~4%
buckets at larger lengths), so its BM25 scores are not bit-identical to an engine using exact
lengths; compare top-10 lists as sets / by recall rather than expecting identical order.

stdout: one JSON object (also written to --out if given):
  {"system", "package_version", "engine_version", "corpus": {...}, "threads", "heap_bytes",
   "build_s", "add_s", "commit_s", "merge_wait_s", "segments", "index_bytes",
   "classes": {cls: {"op", "queries", "p50_ms", "p95_ms", "mean_ms", "max_ms", "zero_hit"}},
   "results": {cls: [{"terms", "ids" (top-10 line numbers, best first), "scores" (BM25, rounded
   to 5 decimals), "hits" (number of matching documents)}]}}
Progress goes to stderr.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fts_queries  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PYDOCS_DIR = REPO.parent / "shared" / "data" / "pydocs-minilm-384"
PYDOCS_QUERIES = HERE / ".data" / "fts-pydocs" / "queries.json"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def percentile(xs: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", default=str(HERE / ".data" / "fts-corpus"),
                    help="folder with texts.jsonl and queries.json")
    ap.add_argument("--texts", help="texts file (JSON lines, .gz ok); overrides --corpus")
    ap.add_argument("--queries", help="queries.json; overrides --corpus")
    ap.add_argument("--pydocs", nargs="?", const=str(PYDOCS_DIR), metavar="DIR",
                    help="use DIR/texts.jsonl.gz (default %(const)s) and generated queries")
    ap.add_argument("--pydocs-queries", default=str(PYDOCS_QUERIES),
                    help="where --pydocs keeps its generated queries (default %(default)s)")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                    help="writer indexing threads (default: all cores = %(default)s)")
    ap.add_argument("--heap-mb", type=int, default=512, help="writer heap, total (MB)")
    ap.add_argument("--limit", type=int, default=10, help="top-k")
    ap.add_argument("--max-docs", type=int, help="index only the first N texts (quick tests)")
    ap.add_argument("--keep-index", metavar="DIR", help="build the index in DIR and keep it")
    ap.add_argument("--out", help="also write the JSON result here")
    a = ap.parse_args()

    import tantivy

    if a.pydocs:
        texts_path = Path(a.pydocs) / "texts.jsonl.gz"
        queries_path = Path(a.pydocs_queries)
    else:
        texts_path = Path(a.texts) if a.texts else Path(a.corpus) / "texts.jsonl"
        queries_path = Path(a.queries) if a.queries else Path(a.corpus) / "queries.json"

    t0 = time.perf_counter()
    texts = fts_queries.read_texts(str(texts_path))
    if a.max_docs:
        texts = texts[:a.max_docs]
    log(f"read {len(texts)} texts from {texts_path} ({time.perf_counter() - t0:.1f} s)")

    if a.pydocs and not queries_path.exists():
        log(f"generating queries -> {queries_path}")
        queries_path.parent.mkdir(parents=True, exist_ok=True)
        fts_queries.write_json(fts_queries.generate(texts, log=lambda m: log("  " + m)),
                               str(queries_path))
    with open(queries_path, encoding="utf-8") as f:
        queries = json.load(f)
    if queries.get("docs") not in (None, len(texts)):
        log(f"warning: queries were generated for {queries['docs']} docs, indexing {len(texts)}")

    sb = tantivy.SchemaBuilder()
    sb.add_text_field("text", stored=False, tokenizer_name="default", index_option="position")
    sb.add_integer_field("id", stored=False, indexed=False, fast=True)  # i64: Document(id=int)
    schema = sb.build()

    index_dir = Path(a.keep_index) if a.keep_index else Path(tempfile.mkdtemp(prefix="fts-tantivy-"))
    if a.keep_index:
        shutil.rmtree(index_dir, ignore_errors=True)
        index_dir.mkdir(parents=True)
    try:
        index = tantivy.Index(schema, path=str(index_dir))
        heap = a.heap_mb * 1_000_000
        log(f"building: {len(texts)} docs, {a.threads} writer threads, heap {a.heap_mb} MB, "
            f"index in {index_dir}")
        t_build = time.perf_counter()
        writer = index.writer(heap_size=heap, num_threads=a.threads)
        Document = tantivy.Document
        for i, t in enumerate(texts):
            writer.add_document(Document(text=t, id=i))
        t_added = time.perf_counter()
        writer.commit()
        t_committed = time.perf_counter()
        writer.wait_merging_threads()
        t_merged = time.perf_counter()
        index.reload()
        searcher = index.searcher()
        index_bytes = sum(p.stat().st_size for p in index_dir.rglob("*") if p.is_file())
        build = {
            "threads": a.threads,
            "heap_bytes": heap,
            "build_s": round(t_committed - t_build, 3),
            "add_s": round(t_added - t_build, 3),
            "commit_s": round(t_committed - t_added, 3),
            "merge_wait_s": round(t_merged - t_committed, 3),
            "segments": searcher.num_segments,
            "index_bytes": index_bytes,
        }
        log(f"built in {build['build_s']} s (add {build['add_s']} s, commit {build['commit_s']} s), "
            f"merges {build['merge_wait_s']} s, {build['segments']} segments, "
            f"{index_bytes / 1e6:.1f} MB, {searcher.num_docs} docs")

        Q, Occur = tantivy.Query, tantivy.Occur

        def make(op: str, terms: list[str]):
            if op == "phrase":
                return Q.phrase_query(schema, "text", terms)
            tqs = [Q.term_query(schema, "text", t) for t in terms]
            if len(tqs) == 1:
                return tqs[0]
            occ = Occur.Must if op == "and" else Occur.Should
            return Q.boolean_query([(occ, q) for q in tqs])

        classes = {name: (c["op"], [q["terms"] for q in c["queries"]],
                          [make(c["op"], q["terms"]) for q in c["queries"]])
                   for name, c in queries["classes"].items()}

        def ranked(q, count: int) -> list[tuple[float, int]]:
            """Top-k as (score, id), ties broken by the smaller id: collects past k until the
            group of documents tied with the k-th score is complete (untimed)."""
            fetch = min(count, max(4 * a.limit, 100))
            while True:
                hits = searcher.search(q, limit=max(fetch, 1), count=False).hits
                if (len(hits) <= a.limit or len(hits) >= count
                        or hits[-1][0] < hits[a.limit - 1][0]):
                    break
                fetch = min(count, fetch * 4)
            ids = searcher.fast_field_values("id", [h[1] for h in hits]) if hits else []
            return sorted(zip((h[0] for h in hits), ids), key=lambda x: (-x[0], x[1]))[:a.limit]

        for _, _, qs in classes.values():  # warm-up pass
            for q in qs:
                searcher.search(q, limit=a.limit, count=False)

        stats, results = {}, {}
        perf = time.perf_counter
        for name, (op, terms, qs) in classes.items():
            times = []
            for q in qs:
                s = perf()
                searcher.search(q, limit=a.limit, count=False)
                times.append((perf() - s) * 1000.0)
            res = []
            for tq, q in zip(terms, qs):
                count = searcher.search(q, limit=1, count=True).count
                top = ranked(q, count)
                res.append({"terms": tq, "ids": [d for _, d in top],
                            "scores": [round(sc, 5) for sc, _ in top], "hits": count})
            stats[name] = {
                "op": op, "queries": len(qs),
                "p50_ms": round(percentile(times, 50), 4),
                "p95_ms": round(percentile(times, 95), 4),
                "mean_ms": round(statistics.fmean(times), 4),
                "max_ms": round(max(times), 4),
                "zero_hit": sum(1 for r in res if r["hits"] == 0),
                "median_hits": statistics.median(r["hits"] for r in res),
            }
            results[name] = res
            log(f"{name:7s} ({op}): p50 {stats[name]['p50_ms']:.3f} ms, "
                f"p95 {stats[name]['p95_ms']:.3f} ms, median hits {stats[name]['median_hits']}, "
                f"zero-hit {stats[name]['zero_hit']}")
    finally:
        if not a.keep_index:
            shutil.rmtree(index_dir, ignore_errors=True)

    out = {
        "system": "tantivy-py",
        "package_version": importlib.metadata.version("tantivy"),
        "engine_version": getattr(tantivy, "__version__", None),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "corpus": {"texts": str(texts_path), "texts_sha256": sha256_file(texts_path),
                   "queries": str(queries_path), "queries_sha256": sha256_file(queries_path),
                   "docs": len(texts)},
        "tokenizer": "default (SimpleTokenizer + RemoveLongFilter(40) + LowerCaser), positions",
        "top_k": a.limit,
        **build,
        "classes": stats,
        "results": results,
    }
    text = json.dumps(out, ensure_ascii=False)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
