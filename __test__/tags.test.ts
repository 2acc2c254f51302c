// Tags through the Node API, as LanceDB users call them: table.tags().create/list/getVersion/
// update/delete and checkout(tag).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { connect, InvalidArgumentError, NotFoundError } from "../lib/index.js";

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

describe("tags", () => {
  it("name versions, survive reopening, and check out read-only", async () => {
    const dir = mkdtempSync(join(tmpdir(), "quiver-tags-"));
    dirs.push(dir);
    const db = await connect(dir);
    const t = await db.createTable("t", [{ id: 1n }]);
    await t.add([{ id: 2n }]);
    await t.add([{ id: 3n }]);
    const tags = t.tags();
    expect(await tags.list()).toEqual({});
    await tags.create("first", 1);
    await tags.create("v2", 2);
    expect(await tags.list()).toEqual({ first: { version: 1 }, v2: { version: 2 } });
    expect(await tags.getVersion("v2")).toBe(2);
    await expect(tags.create("first", 3)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(tags.create("later", 42)).rejects.toBeInstanceOf(NotFoundError);
    await tags.update("first", 3);
    expect(await tags.getVersion("first")).toBe(3);

    await t.checkout("v2");
    expect(await t.version()).toBe(2);
    expect(await t.countRows()).toBe(2);
    await expect(t.add([{ id: 9n }])).rejects.toThrow(/read-only/);
    await t.checkoutLatest();

    const again = await (await connect(dir)).openTable("t");
    expect(await again.tags().getVersion("v2")).toBe(2);
    await tags.delete("v2");
    await expect(tags.getVersion("v2")).rejects.toBeInstanceOf(NotFoundError);
    await expect(tags.delete("v2")).rejects.toBeInstanceOf(NotFoundError);
    await expect(t.checkout("v2")).rejects.toBeInstanceOf(NotFoundError);
  });

  it("refuse names that could leave the tags folder, and arguments of the wrong kind", async () => {
    const t = await (await connect("memory://")).createTable("t", [{ id: 1n }]);
    for (const name of ["../x", "a/b", ".hidden", "a b", "é"]) {
      await expect(t.tags().create(name, 1)).rejects.toBeInstanceOf(InvalidArgumentError);
    }
    for (const bad of [Symbol("x"), {}, "", null]) {
      await expect(t.tags().create(bad as never, 1)).rejects.toBeInstanceOf(InvalidArgumentError);
      await expect(t.tags().getVersion(bad as never)).rejects.toBeInstanceOf(InvalidArgumentError);
    }
    await expect(t.tags().create("ok", 0)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(t.checkout("" as never)).rejects.toBeInstanceOf(InvalidArgumentError);
  });
});
