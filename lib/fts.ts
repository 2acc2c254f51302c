// Full-text search: how text becomes tokens, and the query objects.
import { integerArg, invalid } from "./check.js";
import { nativeSync } from "./errors.js";
import { binding, type NativeFtsNode, type NativeTokenizerOptions } from "./native.js";

/**
 * How text becomes tokens, in this order: the base tokenizer splits it; tokens longer than
 * `maxTokenLength` bytes are dropped; then lowercasing, stop-word removal (before stemming,
 * on the lowercased word: LanceDB stems first, so a stop word whose stem differs slips
 * through there), Snowball stemming, and folding of Latin letters to ASCII. Defaults are
 * LanceDB's.
 */
export interface TokenizerOptions {
  /**
   * `"simple"` (default): runs of letters and digits, any script (punctuation and spaces
   * split, so "don't" is "don" and "t"). `"whitespace"`: runs of non-space characters.
   * `"raw"`: the whole text as one token. `"ngram"`: every run of `ngramMinLength` to
   * `ngramMaxLength` characters of the text, spaces included (for substring and typo-tolerant
   * matching).
   */
  baseTokenizer?: "simple" | "whitespace" | "raw" | "ngram";
  /**
   * The stemmer's and stop words' language (default "English"): Arabic, Danish, Dutch,
   * English, French, German, Greek, Hungarian, Italian, Norwegian, Portuguese, Romanian,
   * Russian, Spanish, Swedish, Tamil or Turkish.
   */
  language?: string;
  /** Tokens longer than this many bytes (UTF-8) are dropped (default 40). */
  maxTokenLength?: number;
  /** Default true. */
  lowercase?: boolean;
  /** Snowball stemming: "running" and "runs" become "run" (default true). */
  stem?: boolean;
  /** Drop the language's stop words, NLTK's list (default true). */
  removeStopWords?: boolean;
  /** With `removeStopWords`, these replace the language's list. */
  customStopWords?: string[];
  /** "café" → "cafe", "straße" → "strasse"; other scripts are kept (default true). */
  asciiFolding?: boolean;
  /** `"ngram"` only: shortest n-gram, in characters (default 3). */
  ngramMinLength?: number;
  /** `"ngram"` only: longest n-gram (default 3, at most 255). */
  ngramMaxLength?: number;
  /** `"ngram"` only: only the n-grams starting the text (default false). */
  prefixOnly?: boolean;
}

/** A token and its position: the base tokenizer's count, so dropped words leave gaps. */
export interface Token {
  text: string;
  position: number;
}

const BASE_TOKENIZERS = ["simple", "whitespace", "raw", "ngram"];

/** Checks tokenizer options as a user passed them, and converts them for the engine. */
export function tokenizerOptions(options: unknown, what = "options"): NativeTokenizerOptions {
  if (options === undefined || options === null) return {};
  if (typeof options !== "object" || Array.isArray(options)) invalid(what, "an object", options);
  const o = options as Record<string, unknown>;
  const flag = (key: string): boolean | undefined => {
    const value = o[key];
    if (value !== undefined && typeof value !== "boolean") invalid(`${what}.${key}`, "a boolean", value);
    return value as boolean | undefined;
  };
  const count = (key: string, max: number): number | undefined =>
    o[key] === undefined ? undefined : integerArg(o[key], `${what}.${key}`, { min: 1, max });
  const base = o.baseTokenizer;
  if (base !== undefined && (typeof base !== "string" || !BASE_TOKENIZERS.includes(base))) {
    invalid(`${what}.baseTokenizer`, `one of ${BASE_TOKENIZERS.map((b) => `"${b}"`).join(", ")}`, base);
  }
  const language = o.language;
  if (language !== undefined && typeof language !== "string") invalid(`${what}.language`, "a string", language);
  const custom = o.customStopWords;
  if (custom !== undefined && (!Array.isArray(custom) || !custom.every((w) => typeof w === "string"))) {
    invalid(`${what}.customStopWords`, "an array of strings", custom);
  }
  return {
    baseTokenizer: base as string | undefined,
    language: language as string | undefined,
    maxTokenLength: count("maxTokenLength", 65_536),
    lowercase: flag("lowercase"),
    stem: flag("stem"),
    removeStopWords: flag("removeStopWords"),
    customStopWords: custom as string[] | undefined,
    asciiFolding: flag("asciiFolding"),
    ngramMinLength: count("ngramMinLength", 255),
    ngramMaxLength: count("ngramMaxLength", 255),
    prefixOnly: flag("prefixOnly"),
  };
}

/**
 * The tokens a full-text index with these options makes of `text` (and of a query's text):
 * to see why a document does or does not match.
 *
 * ```ts
 * tokenize("The runners were running");  // [{ text: "runner", position: 1 }, { text: "run", position: 3 }]
 * ```
 */
export function tokenize(text: string, options?: TokenizerOptions): Token[] {
  if (typeof text !== "string") invalid("text", "a string", text);
  const native = tokenizerOptions(options);
  return nativeSync(() => binding.tokenize(text, native));
}

/** Options of `Index.fts()`: the tokenizer's, and whether to keep positions. */
export interface FtsOptions extends TokenizerOptions {
  /**
   * Keep each token's positions (default false): phrase queries need them; the index grows
   * (typically by half).
   */
  withPosition?: boolean;
}

/** How a match combines its terms. */
export enum Operator {
  /** Rows holding every term. */
  And = "AND",
  /** Rows holding any term (default); more terms held score higher. */
  Or = "OR",
}

/** How a clause of a `BooleanQuery` counts. */
export enum Occur {
  /** Rows must match it; its score adds up. */
  Must = "MUST",
  /** Rows may match it (with no `Must` clause, at least one `Should` must match); its score adds up. */
  Should = "SHOULD",
  /** Rows matching it are left out. */
  MustNot = "MUST_NOT",
}

/** A full-text query: what `fullTextSearch()` and `search()` take besides a string. */
export interface FullTextQuery {
  /** @internal Appends the query's nodes (children first); returns its own index. */
  toNodes(nodes: NativeFtsNode[]): number;
}

/** Options of a `MatchQuery`. */
export interface MatchQueryOptions {
  /** Multiplies the query's scores (default 1). */
  boost?: number;
  /**
   * Edits (insertions, deletions, substitutions of a character) a term may be away from a
   * query token and still match: 0, 1, 2, or `"auto"` (default): 0 for tokens of up to 2
   * characters, 1 for 3 to 5, 2 above. Each matching term scores with its own BM25.
   */
  fuzziness?: number | "auto";
  /** Most terms a fuzzy token expands to, closest first (default 50). */
  maxExpansions?: number;
  /** `Operator.Or` (default) or `Operator.And`. */
  operator?: Operator | "AND" | "OR";
  /** Characters at the start of a token that fuzzy matching keeps as they are (default 0). */
  prefixLength?: number;
}

function textArg(text: unknown, what: string): string {
  if (typeof text !== "string") invalid(what, "a string", text);
  return text as string;
}

function columnArg(column: unknown, what: string): string {
  if (typeof column !== "string" || column === "") invalid(what, "a column name", column);
  return column as string;
}

function operatorArg(operator: unknown): string | undefined {
  if (operator === undefined) return undefined;
  if (operator !== "AND" && operator !== "OR") invalid("operator", 'Operator.And or Operator.Or ("AND" or "OR")', operator);
  return operator as string;
}

function finiteArg(value: unknown, what: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "number" || !Number.isFinite(value)) invalid(what, "a finite number", value);
  return value as number;
}

function optionsArg<T>(options: T | undefined, what: string): Partial<T> {
  if (options === undefined) return {};
  if (options === null || typeof options !== "object") invalid(what, "an object", options);
  return options;
}

/** Rows whose `column` holds the terms of `query` (tokenized as the column's index does), by BM25. */
export class MatchQuery implements FullTextQuery {
  private readonly node: NativeFtsNode;

  constructor(query: string, column: string, options?: MatchQueryOptions) {
    const o = optionsArg(options, "MatchQuery options");
    const fuzziness = o.fuzziness;
    if (fuzziness !== undefined && fuzziness !== "auto") integerArg(fuzziness, "fuzziness", { min: 0, max: 2, expected: '0, 1, 2 or "auto"' });
    this.node = {
      kind: "match",
      text: textArg(query, "MatchQuery query"),
      column: columnArg(column, "MatchQuery column"),
      boost: finiteArg(o.boost, "boost"),
      fuzziness: fuzziness === undefined ? "auto" : String(fuzziness),
      maxExpansions: o.maxExpansions === undefined ? undefined : integerArg(o.maxExpansions, "maxExpansions", { min: 1, max: 10_000 }),
      operator: operatorArg(o.operator),
      prefixLength: o.prefixLength === undefined ? undefined : integerArg(o.prefixLength, "prefixLength", { max: 1_000 }),
    };
  }

  /** @internal */
  toNodes(nodes: NativeFtsNode[]): number {
    nodes.push(this.node);
    return nodes.length - 1;
  }
}

/**
 * Rows whose `column` holds the tokens of `query` in order. `slop` (default 0) is how many
 * more positions than the query's the matched span may take: 0 is the exact phrase, 1 lets
 * one other word in. The index must keep positions (`Index.fts({ withPosition: true })`).
 */
export class PhraseQuery implements FullTextQuery {
  private readonly node: NativeFtsNode;

  constructor(query: string, column: string, options?: { slop?: number }) {
    const o = optionsArg(options, "PhraseQuery options");
    this.node = {
      kind: "phrase",
      text: textArg(query, "PhraseQuery query"),
      column: columnArg(column, "PhraseQuery column"),
      slop: o.slop === undefined ? undefined : integerArg(o.slop, "slop", { max: 0xffff_ffff }),
    };
  }

  /** @internal */
  toNodes(nodes: NativeFtsNode[]): number {
    nodes.push(this.node);
    return nodes.length - 1;
  }
}

function queryArg(query: unknown, what: string): FullTextQuery {
  if (query === null || typeof query !== "object" || typeof (query as FullTextQuery).toNodes !== "function") {
    invalid(what, "a MatchQuery, PhraseQuery, BoostQuery, MultiMatchQuery or BooleanQuery", query);
  }
  return query as FullTextQuery;
}

/** Rows matching `positive`, scored by it; those also matching `negative` score `negativeBoost` (default 0.5) times as much. */
export class BoostQuery implements FullTextQuery {
  private readonly positive: FullTextQuery;
  private readonly negative: FullTextQuery;
  private readonly negativeBoost?: number;

  constructor(positive: FullTextQuery, negative: FullTextQuery, options?: { negativeBoost?: number }) {
    this.positive = queryArg(positive, "BoostQuery positive");
    this.negative = queryArg(negative, "BoostQuery negative");
    this.negativeBoost = finiteArg(optionsArg(options, "BoostQuery options").negativeBoost, "negativeBoost");
  }

  /** @internal */
  toNodes(nodes: NativeFtsNode[]): number {
    const positive = this.positive.toNodes(nodes);
    const negative = this.negative.toNodes(nodes);
    nodes.push({ kind: "boost", children: [positive, negative], negativeBoost: this.negativeBoost });
    return nodes.length - 1;
  }
}

/** `query` matched in each of `columns` (each with its FTS index), scores added up, each column's times its boost. */
export class MultiMatchQuery implements FullTextQuery {
  private readonly node: NativeFtsNode;

  constructor(query: string, columns: string[], options?: { boosts?: number[]; operator?: Operator | "AND" | "OR" }) {
    if (!Array.isArray(columns) || columns.length === 0) invalid("MultiMatchQuery columns", "a non-empty array of column names", columns);
    const o = optionsArg(options, "MultiMatchQuery options");
    const boosts = o.boosts;
    if (boosts !== undefined) {
      if (!Array.isArray(boosts) || boosts.length !== columns.length) invalid("boosts", `an array of ${columns.length} numbers (one per column)`, boosts);
      boosts.forEach((b, i) => finiteArg(b, `boosts[${i}]`));
    }
    this.node = {
      kind: "multi_match",
      text: textArg(query, "MultiMatchQuery query"),
      columns: columns.map((c, i) => columnArg(c, `MultiMatchQuery columns[${i}]`)),
      boosts: boosts ? [...boosts] : undefined,
      operator: operatorArg(o.operator),
    };
  }

  /** @internal */
  toNodes(nodes: NativeFtsNode[]): number {
    nodes.push(this.node);
    return nodes.length - 1;
  }
}

/** Clauses combined: rows matching every `Must`, and any `Should` when there is no `Must`, and no `MustNot`; scores add up. */
export class BooleanQuery implements FullTextQuery {
  private readonly clauses: [Occur, FullTextQuery][];

  constructor(queries: [Occur, FullTextQuery][]) {
    if (!Array.isArray(queries) || queries.length === 0) invalid("BooleanQuery queries", "a non-empty array of [Occur, query] pairs", queries);
    this.clauses = queries.map((pair, i) => {
      if (!Array.isArray(pair) || pair.length !== 2) invalid(`BooleanQuery clause ${i}`, "an [Occur, query] pair", pair);
      const [occur, query] = pair;
      if (!["MUST", "SHOULD", "MUST_NOT"].includes(occur)) invalid(`BooleanQuery clause ${i} occur`, "Occur.Must, Occur.Should or Occur.MustNot", occur);
      return [occur, queryArg(query, `BooleanQuery clause ${i} query`)];
    });
  }

  /** @internal */
  toNodes(nodes: NativeFtsNode[]): number {
    const children = this.clauses.map(([, q]) => q.toNodes(nodes));
    nodes.push({ kind: "boolean", children, occurs: this.clauses.map(([o]) => o) });
    return nodes.length - 1;
  }
}

/**
 * The nodes of `query`: a plain string matches its terms (no fuzziness) in `columns` (one
 * column: a match; several: a multi-match; none: every column with an FTS index).
 */
export function ftsNodes(query: string | FullTextQuery, columns?: string[]): NativeFtsNode[] {
  const nodes: NativeFtsNode[] = [];
  if (typeof query === "string") {
    if (columns && columns.length > 1) {
      nodes.push({ kind: "multi_match", text: query, columns });
    } else {
      nodes.push({ kind: "match", text: query, column: columns?.[0], fuzziness: "0" });
    }
    return nodes;
  }
  queryArg(query, "the full-text query");
  query.toNodes(nodes);
  return nodes;
}

/** The text a query searches for (what rerankers receive). */
export function queryText(nodes: NativeFtsNode[]): string {
  return nodes
    .filter((n) => n.text !== undefined)
    .map((n) => n.text)
    .join(" ");
}
