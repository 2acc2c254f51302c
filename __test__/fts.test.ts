import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  BooleanQuery,
  BoostQuery,
  connect,
  Index,
  InvalidArgumentError,
  LinearCombinationReranker,
  MatchQuery,
  MultiMatchQuery,
  type Occur,
  Operator,
  PhraseQuery,
  type Reranker,
  RRFReranker,
  tokenize,
} from "../dist/index.js";
import { readmeParagraphs } from "./support/texts.js";

describe("tokenize", () => {
  it("applies LanceDB's defaults: stop words out, stems, folding, positions kept", () => {
    expect(tokenize("The runners were running to the Café")).toEqual([
      { text: "runner", position: 1 },
      { text: "run", position: 3 },
      { text: "cafe", position: 6 },
    ]);
  });

  it("honours every option", () => {
    const plain = { stem: false, removeStopWords: false, asciiFolding: false };
    expect(tokenize("Don't STOP", plain).map((t) => t.text)).toEqual(["don", "t", "stop"]);
    expect(tokenize("Don't STOP", { ...plain, lowercase: false, baseTokenizer: "whitespace" }).map((t) => t.text)).toEqual([
      "Don't",
      "STOP",
    ]);
    expect(tokenize("as is", { ...plain, baseTokenizer: "raw" }).map((t) => t.text)).toEqual(["as is"]);
    expect(tokenize("abcd", { ...plain, baseTokenizer: "ngram", ngramMinLength: 2, ngramMaxLength: 3, prefixOnly: true }).map((t) => t.text)).toEqual([
      "ab",
      "abc",
    ]);
    expect(tokenize("tiny enormous", { ...plain, maxTokenLength: 4 }).map((t) => t.text)).toEqual(["tiny"]);
    expect(tokenize("les chats mangeaient", { language: "French" }).map((t) => t.text)).toEqual(["chat", "mang"]);
    expect(tokenize("the running man", { customStopWords: ["RUNNING"], stem: false }).map((t) => t.text)).toEqual(["the", "man"]);
    expect(tokenize("Straße Москва", { ...plain, asciiFolding: true }).map((t) => t.text)).toEqual(["strasse", "москва"]);
  });

  it("rejects bad options with typed errors", () => {
    const bad: unknown[] = [
      { baseTokenizer: "icu" },
      { language: "Klingon" },
      { language: 7 },
      { stem: "yes" },
      { maxTokenLength: 0 },
      { ngramMinLength: 1.5 },
      { baseTokenizer: "ngram", ngramMinLength: 4, ngramMaxLength: 3 },
      { customStopWords: "the" },
      [],
    ];
    for (const options of bad) {
      expect(() => tokenize("text", options as never), JSON.stringify(options)).toThrow(InvalidArgumentError);
    }
    expect(() => tokenize(42 as never)).toThrow(InvalidArgumentError);
  });
});

describe("full-text search", () => {
  const plain = { stem: false, removeStopWords: false, asciiFolding: false };
  /** Lowercased runs of letters and digits, at most 40 bytes: the simple tokenizer with `plain`, written independently. */
  const words = (text: string): string[] =>
    (text.match(/[\p{Alphabetic}\p{N}]+/gu) ?? []).map((w) => w.toLowerCase()).filter((w) => Buffer.byteLength(w) <= 40);

  /** A straightforward BM25 (k1 1.2, b 0.75, Lucene's idf) over docs (id → text). */
  function reference(docs: Map<number, string>) {
    const tokens = new Map<number, string[]>();
    for (const [id, text] of docs) tokens.set(id, words(text));
    const n = tokens.size;
    let total = 0;
    for (const t of tokens.values()) total += t.length;
    const avg = total / n;
    return (query: string, and: boolean, k: number): { id: number; score: number }[] => {
      // A repeated query word scores once per occurrence, as in Lucene and LanceDB.
      const terms = words(query);
      const df = terms.map((t) => [...tokens.values()].filter((d) => d.includes(t)).length);
      const out: { id: number; score: number }[] = [];
      for (const [id, doc] of tokens) {
        let score = 0;
        let matched = 0;
        terms.forEach((t, i) => {
          const tf = doc.filter((w) => w === t).length;
          if (tf === 0) return;
          matched++;
          const idf = Math.log(1 + (n - df[i] + 0.5) / (df[i] + 0.5));
          score += (idf * tf * 2.2) / (tf + 1.2 * (0.25 + (0.75 * doc.length) / avg));
        });
        if (matched > 0 && (!and || matched === terms.length)) out.push({ id, score });
      }
      out.sort((a, b) => b.score - a.score || a.id - b.id);
      return out.slice(0, k);
    };
  }

  /** Same top rows as the reference, ties at the k-th score aside. */
  function expectSameTop(got: { id: number; _score: number }[], want: { id: number; score: number }[], what: string) {
    expect(got.length, what).toBe(want.length);
    got.forEach((g, i) => expect(Math.abs(g._score - want[i].score), what).toBeLessThan(1e-3 * Math.max(1, want[i].score)));
    const kth = want.at(-1)?.score ?? 0;
    const above = (l: { id: number; s: number }[]) => l.filter((r) => r.s > kth + 1e-3 * Math.max(1, kth)).map((r) => r.id).sort((a, b) => a - b);
    expect(above(got.map((g) => ({ id: g.id, s: g._score }))), what).toEqual(above(want.map((w) => ({ id: w.id, s: w.score }))));
  }

  async function corpusTable(count: number, index: Record<string, unknown> | null = { ...plain, withPosition: true }) {
    const texts = readmeParagraphs(count);
    const db = await connect(join(mkdtempSync(join(tmpdir(), "quiver-fts-")), "db"));
    const rows = texts.map((text, id) => ({ id, text, vec: [Math.sin(id), Math.cos(id), (id % 7) / 7, 1] }));
    const table = await db.createTable("docs", rows);
    if (index) await table.createIndex("text", { config: Index.fts(index) });
    return { table, texts };
  }

  it("ranks real text exactly as a straightforward BM25, for OR and AND", async () => {
    const { table, texts } = await corpusTable(3000);
    expect(texts.length).toBeGreaterThan(1000);
    const bm25 = reference(new Map(texts.map((t, i) => [i, t])));
    const vocabulary = [...new Set(texts.flatMap(words))].sort();
    let seed = 12345;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let q = 0; q < 300; q++) {
      // Words from a paragraph (frequent ones) or from the whole vocabulary (rare ones).
      const source = words(texts[Math.floor(random() * texts.length)]);
      const query = Array.from({ length: 1 + Math.floor(random() * 3) }, () =>
        random() < 0.3 ? vocabulary[Math.floor(random() * vocabulary.length)] : source[Math.floor(random() * source.length)],
      ).join(" ");
      const or = (await table.search(query).select(["id"]).limit(10).toArray()) as { id: number; _score: number }[];
      expectSameTop(or, bm25(query, false, 10), `OR ${query}`);
      const and = (await table
        .query()
        .fullTextSearch(new MatchQuery(query, "text", { operator: Operator.And, fuzziness: 0 }))
        .select(["id"])
        .limit(10)
        .toArray()) as { id: number; _score: number }[];
      expectSameTop(and, bm25(query, true, 10), `AND ${query}`);
    }
  }, 120_000);

  it("matches phrases as a brute-force scan does, and finds fuzzy edits", async () => {
    const { table, texts } = await corpusTable(1500);
    const docs = texts.map(words);
    const holds = (doc: string[], phrase: string[], slop: number): boolean => {
      const choose = (i: number, prev: number, first: number): boolean =>
        i === phrase.length ||
        doc.some((w, p) => w === phrase[i] && p > prev && (i === 0 || p - first <= phrase.length - 1 + slop) && choose(i + 1, p, i === 0 ? p : first));
      return choose(0, -1, 0);
    };
    for (let d = 0; d < 40; d++) {
      const doc = docs[(d * 37) % docs.length];
      if (doc.length < 4) continue;
      const start = (d * 13) % (doc.length - 3);
      const phrase = doc.slice(start, start + 2 + (d % 2));
      const slop = d % 3;
      const got = (await table.query().fullTextSearch(new PhraseQuery(phrase.join(" "), "text", { slop })).select(["id"]).limit(100_000).toArray()).map(
        (r) => r.id,
      );
      const want = docs.flatMap((doc, id) => (holds(doc, phrase, slop) ? [id] : []));
      expect(new Set(got), `${phrase.join(" ")} slop ${slop}`).toEqual(new Set(want));
    }
    const typo = await table.query().fullTextSearch(new MatchQuery("databse", "text", { fuzziness: 1 })).select(["text"]).limit(50).toArray();
    expect(typo.length).toBeGreaterThan(0);
    expect(typo.every((r) => words(r.text as string).some((w) => ["database", "databse", "databases"].includes(w) || w.length > 0))).toBe(true);
    expect(typo.some((r) => words(r.text as string).includes("database"))).toBe(true);
    await expect(table.query().fullTextSearch(new MatchQuery("databse", "text", { fuzziness: 0 })).toArray()).resolves.toEqual([]);
  }, 60_000);

  it("searches appended rows at once, never returns deleted rows, and folds both in on optimize", async () => {
    const { table } = await corpusTable(500);
    await table.add([{ id: 100_000, text: "zyzzyva quokka appears only here", vec: [0, 0, 0, 1] }]);
    const found = await table.search("zyzzyva").select(["id"]).toArray();
    expect(found.map((r) => r.id)).toEqual([100_000]);
    expect((await table.indexStats("text_idx")).numUnindexedRows).toBe(1);
    await table.update({ where: "id = 100000", values: { text: "now it mentions a wombat" } });
    expect(await table.search("zyzzyva").toArray()).toEqual([]);
    expect((await table.search("wombat").select(["id"]).toArray()).map((r) => r.id)).toEqual([100_000]);
    await table.delete("id = 100000");
    expect(await table.search("wombat").toArray()).toEqual([]);
    const before = await table.search("the module").select(["id"]).limit(20).toArray();
    await table.optimize();
    expect((await table.indexStats("text_idx")).numUnindexedRows).toBe(0);
    expect(await table.search("the module").select(["id"]).limit(20).toArray()).toEqual(before);
    // A prefilter keeps only matching rows, still best first.
    const filtered = await table.search("the module").where("id < 100").select(["id"]).limit(20).toArray();
    expect(filtered.length).toBeGreaterThan(0);
    expect(filtered.every((r) => (r.id as number) < 100)).toBe(true);
  }, 60_000);

  it("fuses hybrid results by the RRF formula, and takes custom rerankers", async () => {
    const { table } = await corpusTable(800);
    await table.createIndex("vec");
    const vector = [0.3, 0.9, 0.5, 1];
    const text = "install the package";
    const vec = await table.search(vector).select(["id"]).withRowId().limit(10).toArray();
    const fts = await table.search(text).select(["id"]).withRowId().limit(10).toArray();
    const rrf = new Map<number, number>();
    for (const list of [vec, fts]) list.forEach((r, rank) => rrf.set(r.id as number, (rrf.get(r.id as number) ?? 0) + 1 / (60 + rank)));
    const expected = [...rrf.entries()].sort((a, b) => b[1] - a[1]).slice(0, 10);
    const hybrid = await table.search(vector).fullTextSearch(text).select(["id"]).limit(10).toArray();
    expect(hybrid.map((r) => r._relevance_score as number)).toEqual(expected.map(([, s]) => Math.fround(s)));
    expect(new Set(hybrid.map((r) => r.id))).toEqual(new Set(expected.map(([id]) => id)));
    for (const r of hybrid) expect(r._distance !== null || r._score !== null).toBe(true);
    // Linear combination, and the same through query().
    const linear = await table.query().nearestTo(vector).fullTextSearch(text).rerank(LinearCombinationReranker.create(0.5)).limit(5).toArray();
    expect(linear).toHaveLength(5);
    expect(linear.map((r) => r._relevance_score as number)).toEqual([...linear.map((r) => r._relevance_score as number)].sort((a, b) => b - a));
    // A custom reranker sees both result sets (with their columns and _rowid).
    const seen: number[] = [];
    const custom: Reranker = {
      rerankHybrid(query, vectorResults, ftsResults) {
        seen.push(vectorResults.numRows, ftsResults.numRows);
        expect(query).toBe(text);
        expect(ftsResults.schema.fields.map((f) => f.name)).toContain("_score");
        return ftsResults;
      },
    };
    const reranked = await table.search(vector).fullTextSearch(text).select(["id", "text"]).rerank(custom).limit(3).toArray();
    expect(seen).toEqual([3, 3]);
    expect(reranked.map((r) => r.id)).toEqual(fts.slice(0, 3).map((r) => r.id));
    // FTS-only and vector-only reranks.
    const ftsOnly = await table.search(text).rerank(RRFReranker.create(10)).select(["id"]).limit(4).toArray();
    expect(ftsOnly.map((r) => r.id)).toEqual(fts.slice(0, 4).map((r) => r.id));
    expect(ftsOnly[0]._relevance_score).toBeCloseTo(1 / 10);
    const vecOnly = await table.search(vector).rerank().select(["id"]).limit(4).toArray();
    expect(vecOnly.map((r) => r.id)).toEqual(vec.slice(0, 4).map((r) => r.id));
    expect(await table.search(vector).fullTextSearch(text).explainPlan()).toMatch(/Rerank[\s\S]*FullTextSearch/);
  }, 60_000);

  it("filters before ranking by default, after it with postfilter()", async () => {
    const { table, texts } = await corpusTable(1500);
    const bm25 = reference(new Map(texts.map((t, i) => [i, t])));
    const query = words(texts[7]).slice(0, 3).join(" ");
    const all = bm25(query, false, 1_000_000);
    const pre = (await table.search(query).where("id % 2 = 0").select(["id"]).limit(10).toArray()) as { id: number; _score: number }[];
    expectSameTop(pre, all.filter((h) => h.id % 2 === 0).slice(0, 10), `prefilter ${query}`);
    const post = (await table.search(query).where("id % 2 = 0").postfilter().select(["id"]).limit(10).toArray()) as { id: number; _score: number }[];
    const top = all.slice(0, 10);
    const kth = top[top.length - 1].score;
    // The best 10 of all rows, then those matching: ties at the 10th score aside.
    const sure = (ids: number[]) => ids.filter((id) => top.some((h) => h.id === id && h.score > kth + 1e-4));
    expect(sure(post.map((r) => r.id))).toEqual(sure(top.filter((h) => h.id % 2 === 0).map((h) => h.id)));
    expect(post.every((r) => r.id % 2 === 0)).toBe(true);
    const plan = await table.search(query).where("id % 2 = 0").postfilter().explainPlan();
    expect(plan).toMatch(/Postfilter: filter=/);
    expect(plan).not.toMatch(/Prefilter/);
    // In a hybrid query both sides postfilter.
    const hybrid = await table.search([1, 0, 0, 1]).fullTextSearch(query).where("id % 2 = 0").postfilter().limit(10).toArray();
    expect(hybrid.length).toBeGreaterThan(0);
    expect(hybrid.every((r) => r.id % 2 === 0)).toBe(true);
  }, 60_000);

  it("explains plans, tokenizes as a column's index does, and rejects what it cannot do", async () => {
    const { table } = await corpusTable(300, { removeStopWords: true });
    const plan = await table.search("installing packages").analyzePlan();
    expect(plan).toMatch(/FullTextSearch/);
    expect(plan).toMatch(/parts_loaded=\d+/);
    expect(plan).toMatch(/index_comparisons=\d+/);
    expect(await table.search("installing packages").explainPlan()).toMatch(/Bm25Source: column=text index=text_idx/);
    expect(await table.tokenize("Installing the packages", { column: "text" })).toEqual([
      { text: "instal", position: 0 },
      { text: "packag", position: 2 },
    ]);
    await expect(table.query().fullTextSearch(new PhraseQuery("the package", "text")).toArray()).rejects.toThrow(/withPosition/);
    await expect(table.query().fullTextSearch(new PhraseQuery("the package", "text")).toArray()).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(table.createIndex("id", { config: Index.fts() })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(table.tokenize("x", { column: "id" })).rejects.toThrow(/no full-text index/);
    expect(() => new MatchQuery("x", "text", { fuzziness: 3 })).toThrow(InvalidArgumentError);
    expect(() => new BooleanQuery([["SOMETIMES" as Occur, new MatchQuery("x", "text")]])).toThrow(InvalidArgumentError);
    expect(() => table.search("text", "hybrid" as "fts")).toThrow(/embedding function/);
    expect(() => table.search("text").nprobes(5)).toThrow(InvalidArgumentError);
    const boosted = await table
      .query()
      .fullTextSearch(new BoostQuery(new MatchQuery("package", "text"), new MatchQuery("install", "text"), { negativeBoost: 0.1 }))
      .limit(1000)
      .toArray();
    const multi = await table.query().fullTextSearch(new MultiMatchQuery("package", ["text"])).limit(1000).toArray();
    expect(boosted.length).toBe(multi.length);
    const noIndex = await corpusTable(50, null);
    await expect(noIndex.table.search("package").toArray()).rejects.toThrow(/no full-text index/);
    expect((await noIndex.table.search("package", "fts", "text").limit(3).toArray()).length).toBeGreaterThan(0);
  }, 60_000);
});
