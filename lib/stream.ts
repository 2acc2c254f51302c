// Streaming ingest: chunks of an (async) iterable flow through one native writer and are
// committed as a single version, or not at all if any chunk fails.
import type { RecordBatch, Schema, Table } from "apache-arrow";
import { tableToIPC } from "apache-arrow";
import { type Data, type DataStream, fromIPC, ipcStreamBytes, isRowArray, toArrowTable } from "./arrow.js";
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
  // The caller's own error (thrown by their iterator) is rethrown as it is, not as a QuiverError.
  let sourceFailed = false;
  let started = false;
  const pull = async () => {
    try {
      return await iterator.next();
    } catch (e) {
      sourceFailed = true;
      throw e;
    } finally {
      started = true;
    }
  };
  let writer: NativeWriter | undefined;
  try {
    const first = await pull();
    // IPC stream bytes go to the engine as they are (see ipcStreamBytes), the rest through Arrow.
    const firstRaw = first.done ? null : ipcStreamBytes(first.value);
    const firstTable =
      firstRaw === null
        ? toArrowTable(first.done ? [] : (first.value as Data), first.done ? schema : (rowSchema ?? schema))
        : null;
    const firstBytes = firstRaw ?? tableToIPC(firstTable as Table, "stream");
    const w = await native(() => open(firstBytes));
    writer = w;
    if (!first.done) await native(() => w.write(firstBytes));
    let chunkSchema = rowSchema ?? schema ?? firstTable?.schema;
    for (;;) {
      const next = await pull();
      if (next.done) return await native(() => w.finish());
      const chunk = next.value as Data;
      let bytes = ipcStreamBytes(chunk);
      if (bytes === null) {
        // Rows after a first chunk of IPC bytes take its schema (the engine has read those bytes).
        if (isRowArray(chunk) && chunkSchema === undefined) chunkSchema = fromIPC(firstBytes).schema;
        bytes = tableToIPC(toArrowTable(chunk, isRowArray(chunk) ? chunkSchema : undefined), "stream");
      }
      const b = bytes;
      await native(() => w.write(b));
    }
  } catch (e) {
    await writer?.abort().catch(() => undefined);
    if (sourceFailed) throw e;
    // Like a `for await` loop left early: the source's `finally` blocks run (files closed, …).
    if (started) await Promise.resolve(iterator.return?.()).catch(() => undefined);
    throw toQuiverError(e);
  }
}
