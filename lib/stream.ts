// Streaming ingest: chunks of an (async) iterable flow through one native writer and are
// committed as a single version, or not at all if any chunk fails.
import type { RecordBatch, Schema, Table } from "apache-arrow";
import { tableToIPC } from "apache-arrow";
import { type Data, type DataStream, isRowArray, toArrowTable } from "./arrow.js";
import { ownSchema } from "./arrow-interop.js";
import { native, toQuiverError } from "./errors.js";
import type { NativeWriter } from "./native.js";

/**
 * Writes every chunk of `data`. `open` receives the first chunk's IPC bytes (which carry the
 * schema) and starts the native writer. Row chunks after the first are built with `rowSchema`
 * when given, else with the first chunk's schema, so all chunks agree. Every chunk goes through
 * `toArrowTable`, which rebuilds Arrow objects of another apache-arrow copy in ours: our
 * `tableToIPC` writes nothing at all for a table it does not recognise.
 */
export async function writeStream(
  data: DataStream | Iterable<Table | RecordBatch>,
  schema: Schema | undefined,
  rowSchema: Schema | undefined,
  open: (firstChunk: Uint8Array) => Promise<NativeWriter>,
): Promise<number> {
  schema = ownSchema(schema);
  rowSchema = ownSchema(rowSchema);
  const iterator = (
    Symbol.asyncIterator in data
      ? (data as AsyncIterable<unknown>)[Symbol.asyncIterator]()
      : (data as Iterable<unknown>)[Symbol.iterator]()
  ) as AsyncIterator<unknown> | Iterator<unknown>;
  const first = await iterator.next();
  const firstTable = toArrowTable(first.done ? [] : (first.value as Data), first.done ? schema : (rowSchema ?? schema));
  const firstBytes = tableToIPC(firstTable, "stream");
  const writer = await native(() => open(firstBytes));
  try {
    if (!first.done) await native(() => writer.write(firstBytes));
    const chunkSchema = rowSchema ?? schema ?? firstTable.schema;
    for (;;) {
      const next = await iterator.next();
      if (next.done) break;
      const chunk = next.value as Data;
      const bytes = tableToIPC(toArrowTable(chunk, isRowArray(chunk) ? chunkSchema : undefined), "stream");
      await native(() => writer.write(bytes));
    }
    return await native(() => writer.finish());
  } catch (e) {
    await writer.abort().catch(() => undefined);
    throw toQuiverError(e);
  }
}
