// What the kill -9 harness's rows look like, and how a logged operation changes the expected
// state. Shared by the writer child (kill-writer.mjs) and the checking parent (kill.mjs).
import { Field, FixedSizeList, Float32, Int64, Schema, Utf8 } from "apache-arrow";

export const DIM = 8;

/** id: unique; n: how many acknowledged increments the row has had; tag and v: functions of id. */
export const schema = new Schema([
  new Field("id", new Int64(), false),
  new Field("n", new Int64(), false),
  new Field("tag", new Utf8(), false),
  new Field("v", new FixedSizeList(DIM, new Field("item", new Float32(), true)), false),
]);

/** The vector of row `id` (clustered a little, so an IVF_PQ index has something to find). */
export function vec(id) {
  const v = new Float32Array(DIM);
  for (let j = 0; j < DIM; j++) v[j] = (id % 5) * 10 + ((id * (j + 3)) % 101) / 50;
  return v;
}

export const tagOf = (id) => `t${id}`;

export function row(id, n) {
  return { id: BigInt(id), n: BigInt(n), tag: tagOf(id), v: vec(id) };
}

/**
 * The expected state: Map id → n, plus whether a vector index exists. `effect`:
 * { insert?: ids (n = 0), inc?: ids (n + 1), del?: ids, index?: true }. Returns a new state;
 * throws if the effect does not fit the state (a harness bug).
 */
export function apply(state, effect) {
  const rows = new Map(state.rows);
  for (const id of effect.del ?? []) {
    if (!rows.delete(id)) throw new Error(`model: delete of absent id ${id}`);
  }
  for (const id of effect.inc ?? []) {
    if (!rows.has(id)) throw new Error(`model: increment of absent id ${id}`);
    rows.set(id, rows.get(id) + 1);
  }
  for (const id of effect.insert ?? []) {
    if (rows.has(id)) throw new Error(`model: insert of present id ${id}`);
    rows.set(id, 0);
  }
  return { rows, indexed: state.indexed || effect.index === true };
}
