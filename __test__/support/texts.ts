// Real English text for full-text tests, found on every clone after `npm install`: the
// paragraphs of the README files of the installed packages (pinned by package-lock.json), in
// a fixed order.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

/** Up to `max` paragraphs of at least `minWords` words, markdown markup stripped. */
export function readmeParagraphs(max: number, minWords = 4): string[] {
  const root = join(process.cwd(), "node_modules");
  const files: string[] = [];
  const visit = (dir: string, depth: number) => {
    let names: string[];
    try {
      names = readdirSync(dir).sort();
    } catch {
      return;
    }
    for (const name of names) {
      const path = join(dir, name);
      if (/^readme\.md$/i.test(name)) files.push(path);
      else if (depth < 3 && !name.startsWith(".") && statSync(path).isDirectory()) visit(path, depth + 1);
    }
  };
  visit(root, 0);
  const out: string[] = [];
  for (const file of files) {
    const text = readFileSync(file, "utf8");
    for (const block of text.split(/\n\s*\n/)) {
      if (block.trimStart().startsWith("```")) continue;
      const clean = block.replace(/[`*#>_[\]()|]/g, " ").replace(/\s+/g, " ").trim();
      if (clean.split(" ").length >= minWords) out.push(clean);
      if (out.length >= max) return out;
    }
  }
  return out;
}
