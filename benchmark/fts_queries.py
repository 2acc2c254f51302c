"""Deterministic full-text-search query generation (standard library only).

Shared by `fts-corpus.py` (Debian corpus) and `fts-tantivy.py` (also `--pydocs`). Also usable
on its own:

    python3 benchmark/fts_queries.py --texts T.jsonl[.gz] --out queries.json [--seed N]

Tokenisation mirrors tantivy's `default` tokenizer (SimpleTokenizer + RemoveLongFilter(40) +
LowerCaser): split on characters that are not alphanumeric, lowercase, drop tokens longer than
40 bytes (UTF-8). Query terms are restricted to plain ASCII tokens ([a-z0-9], at least one
letter, 3..40 characters) that are not stop words, so every system's tokenizer agrees on them.

Output (`queries.json`):

    {
      "format": "quiver-fts-queries/1",
      "seed": 20250618, "per_class": 200, "docs": N,
      "params": {"df_min": 20, "df_max": 20000, "min_len": 3, "max_len": 40, "stop_words": [...]},
      "classes": {
        "single": {"op": "or",     "queries": [{"terms": ["w"], "df": [123]}, ...]},
        "or3":    {"op": "or",     "queries": [{"terms": ["a", "b", "c"], "df": [..]}, ...]},
        "and3":   {"op": "and",    "queries": [{"terms": [...], "df": [...], "doc": 17}, ...]},
        "phrase": {"op": "phrase", "queries": [{"terms": ["a", "b"], "df": [...], "doc": 42}, ...]}
      }
    }

`terms` are already tokens (lowercase); `df` is each term's document frequency in the corpus;
`doc` is the (0-based) line of the document the query was drawn from (it matches it).
Query text for a query-parser: single/or3 = terms joined by spaces (OR), and3 = the same with
AND semantics, phrase = `"a b"` (consecutive positions, slop 0).
"""
from __future__ import annotations

import argparse
import gzip
import json
import math
import random
import re
import sys
from collections import Counter

FORMAT = "quiver-fts-queries/1"
DEFAULT_SEED = 20250618
PER_CLASS = 200
DF_MIN = 20
DF_MAX = 20000
MIN_LEN = 3
MAX_LEN = 40  # tantivy RemoveLongFilter(40) keeps a token only if its UTF-8 length is < 40
# Query terms are at most 39 ASCII characters, so they are indexed whether the cut-off is read
# as "drop >= 40 bytes" (tantivy) or "drop > 40 bytes".
MAX_QUERY_TERM_LEN = 39

STOP_WORDS = sorted(set("""
a about above after again against all also am an and any are as at be because been before
being below between both but by can could did do does doing down during each else few for
from further had has have having he her here hers herself him himself his how i if in into
is it its itself just may me might more most must my myself no nor not now of off on once
only or other our ours ourselves out over own same shall she should so some such than that
the their theirs them themselves then there these they this those through to too under
until up upon use used uses using very via was we were what when where which while who whom
why will with within without would yet you your yours yourself yourselves one two also
etc e.g i.e like many much well see
""".split()))

_TOKEN_RE = re.compile(r"[^\W_]+")  # runs of Unicode alphanumerics (underscore splits)
_QUERY_TERM_RE = re.compile(r"^[a-z0-9]*[a-z][a-z0-9]*$")


def tokenize_all(text: str) -> list[str]:
    """All tokens in order, lowercased, long ones NOT yet removed (positions stay exact)."""
    return [t.lower() for t in _TOKEN_RE.findall(text)]


def tokenize(text: str) -> list[str]:
    """Tokens as tantivy's default tokenizer indexes them (long tokens dropped)."""
    return [t for t in tokenize_all(text) if len(t.encode("utf-8")) < MAX_LEN]


def eligible(tok: str) -> bool:
    return (MIN_LEN <= len(tok) <= MAX_QUERY_TERM_LEN and tok not in _STOP
            and _QUERY_TERM_RE.match(tok) is not None)


_STOP = frozenset(STOP_WORDS)


def read_texts(path: str) -> list[str]:
    """One JSON value per line: a string, or an object with a "text" key. .gz is decompressed."""
    opener = gzip.open if path.endswith(".gz") else open
    out = []
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            v = json.loads(line)
            out.append(v["text"] if isinstance(v, dict) else v)
    return out


def generate(texts: list[str], seed: int = DEFAULT_SEED, per_class: int = PER_CLASS,
             df_min: int = DF_MIN, df_max: int = DF_MAX, log=None) -> dict:
    log = log or (lambda *_: None)
    toks = [tokenize_all(t) for t in texts]
    df: Counter = Counter()
    for ts in toks:
        df.update(set(ts))
    log(f"queries: {len(texts)} docs, {len(df)} distinct tokens")

    mid = sorted(w for w, c in df.items() if df_min <= c <= df_max and eligible(w))
    if not mid:
        raise SystemExit("no mid-frequency query words; corpus too small?")
    # log2-spaced df buckets; a bucket is drawn uniformly, then a word in it: so the queries
    # spread over the whole df range instead of piling up at the rare end (Zipf).
    buckets: dict[int, list[str]] = {}
    for w in mid:
        buckets.setdefault(int(math.log2(df[w])), []).append(w)
    bucket_keys = sorted(buckets)
    log(f"queries: {len(mid)} mid-frequency words (df {df_min}..{df_max}) in "
        f"{len(bucket_keys)} log2 buckets")
    mid_set = frozenset(mid)
    rng = random.Random(seed)

    def draw_word() -> str:
        b = buckets[bucket_keys[rng.randrange(len(bucket_keys))]]
        return b[rng.randrange(len(b))]

    def q(terms, **extra):
        return {"terms": list(terms), "df": [df[t] for t in terms], **extra}

    single, seen = [], set()
    while len(single) < per_class:
        w = draw_word()
        if w not in seen:
            seen.add(w)
            single.append(q([w]))

    or3 = []
    while len(or3) < per_class:
        ws = []
        while len(ws) < 3:
            w = draw_word()
            if w not in ws:
                ws.append(w)
        or3.append(q(ws))

    # and3: three distinct mid-frequency words of one random document (so >= 1 match),
    # in random order.
    and3 = []
    while len(and3) < per_class:
        d = rng.randrange(len(texts))
        cands = sorted({t for t in toks[d] if t in mid_set})
        if len(cands) < 3:
            continue
        and3.append(q(rng.sample(cands, 3), doc=d))

    # phrase: 2-3 consecutive tokens of a random document, each eligible (not a stop word,
    # 3..39 ASCII alnum chars); at least one of them must be at most df_max frequent.
    phrase, seen_p = [], set()
    while len(phrase) < per_class:
        d = rng.randrange(len(texts))
        n = 2 if rng.random() < 0.5 else 3
        ts = toks[d]
        starts = [i for i in range(len(ts) - n + 1)
                  if all(eligible(t) for t in ts[i:i + n])
                  and min(df[t] for t in ts[i:i + n]) <= df_max]
        if not starts:
            continue
        i = starts[rng.randrange(len(starts))]
        key = tuple(ts[i:i + n])
        if key in seen_p:
            continue
        seen_p.add(key)
        phrase.append(q(key, doc=d))

    return {
        "format": FORMAT,
        "seed": seed,
        "per_class": per_class,
        "docs": len(texts),
        "params": {"df_min": df_min, "df_max": df_max, "min_len": MIN_LEN,
                   "max_len": MAX_QUERY_TERM_LEN, "stop_words": STOP_WORDS,
                   "tokenizer": "split on non-alphanumeric (Unicode), lowercase, drop >= 40-byte tokens"},
        "classes": {
            "single": {"op": "or", "queries": single},
            "or3": {"op": "or", "queries": or3},
            "and3": {"op": "and", "queries": and3},
            "phrase": {"op": "phrase", "queries": phrase},
        },
    }


def write_json(obj, path: str) -> None:
    import os
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--texts", required=True, help="JSON-lines texts (.jsonl or .jsonl.gz)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--per-class", type=int, default=PER_CLASS)
    a = ap.parse_args()
    texts = read_texts(a.texts)
    qs = generate(texts, a.seed, a.per_class, log=lambda m: print(m, file=sys.stderr))
    write_json(qs, a.out)
    print(f"wrote {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
