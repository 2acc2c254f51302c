import { describe, expect, it } from "vitest";
import { InvalidArgumentError, tokenize } from "../dist/index.js";

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
