// Full-text search: how text becomes tokens.
import { integerArg, invalid } from "./check.js";
import { nativeSync } from "./errors.js";
import { binding, type NativeTokenizerOptions } from "./native.js";

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
