// The two systems under test behind one small interface, each used the way its own users
// would: Quiver through `quiverdb`, LanceDB through `@lancedb/lancedb`. Both receive the same
// apache-arrow tables or the same plain objects.
import type { RecordBatch, Table as ArrowTable } from "apache-arrow";
import { installedVersion } from "./env.js";

export type SystemName = "quiver" | "lancedb";
export const SYSTEMS: SystemName[] = ["quiver", "lancedb"];

type Row = Record<string, unknown>;

interface QueryLike extends AsyncIterable<RecordBatch> {
  select(columns: string[]): QueryLike;
  where(filter: string): QueryLike;
  limit(n: number): QueryLike;
  withRowId(): QueryLike;
  toArrow(): Promise<ArrowTable>;
}

interface MergeBuilderLike {
  whenMatchedUpdateAll(): MergeBuilderLike;
  whenNotMatchedInsertAll(): MergeBuilderLike;
  execute(data: ArrowTable): Promise<unknown>;
}

interface TableLike {
  query(): QueryLike;
  search(vector: Float32Array): unknown;
  listIndices(): Promise<unknown[]>;
  countRows(filter?: string): Promise<number>;
  delete(filter: string): Promise<unknown>;
  update(options: { where: string; valuesSql: Record<string, string> }): Promise<unknown>;
  mergeInsert(on: string): MergeBuilderLike;
  close(): void;
}

export interface System {
  name: SystemName;
  version: string;
  /** Creates (or replaces) table `name` from Arrow data or plain objects. */
  createTable(name: string, data: ArrowTable | Row[]): Promise<void>;
  openTable(name: string): Promise<void>;
  /** Streams every batch of a scan (optionally projected and filtered); returns rows seen. */
  scan(options?: { columns?: string[]; filter?: string; limit?: number }): Promise<number>;
  /** All row ids, in scan order. */
  rowIds(): Promise<bigint[]>;
  /** Fetches whole rows by row id as an Arrow table; returns rows fetched. */
  takeRowIds(ids: bigint[]): Promise<number>;
  countRows(filter?: string): Promise<number>;
  delete(filter: string): Promise<void>;
  /** Sets columns to SQL expressions on the rows matching `where`. */
  update(where: string, valuesSql: Record<string, string>): Promise<void>;
  /** Upsert keyed on `on`: matched rows replaced, new ones inserted. */
  upsert(on: string, data: ArrowTable): Promise<void>;
  /** Builds (or rebuilds) an IVF_PQ index on `vector`, the system's defaults unless given. */
  createVectorIndex(options?: { numPartitions?: number }): Promise<void>;
  /** Whether `vector` has an index. */
  hasVectorIndex(): Promise<boolean>;
  /** The ids of the `k` nearest rows (the system's defaults unless given). */
  search(query: Float32Array, options: SearchOptions): Promise<number[]>;
  close(): void;
}

export interface SearchOptions {
  k: number;
  nprobes?: number;
  refineFactor?: number;
  filter?: string;
  /** Exact search, ignoring any index. */
  exact?: boolean;
}

interface VectorQueryLike {
  limit(n: number): VectorQueryLike;
  nprobes(n: number): VectorQueryLike;
  refineFactor(n: number): VectorQueryLike;
  where(filter: string): VectorQueryLike;
  select(columns: string[]): VectorQueryLike;
  bypassVectorIndex(): VectorQueryLike;
  toArray(): Promise<Row[]>;
}

async function searchWith(query: VectorQueryLike, options: SearchOptions): Promise<number[]> {
  // `_distance` named too: LanceDB warns on every query whose projection leaves it out.
  let q = query.select(["id", "_distance"]).limit(options.k);
  if (options.nprobes !== undefined) q = q.nprobes(options.nprobes);
  if (options.refineFactor !== undefined) q = q.refineFactor(options.refineFactor);
  if (options.filter !== undefined) q = q.where(options.filter);
  if (options.exact) q = q.bypassVectorIndex();
  return (await q.toArray()).map((r) => Number(r.id));
}

async function drain(query: QueryLike): Promise<number> {
  let rows = 0;
  for await (const batch of query) rows += batch.numRows;
  return rows;
}

function tableOps(
  table: () => TableLike,
  take: (ids: bigint[]) => Promise<ArrowTable>,
): Pick<System, "scan" | "rowIds" | "takeRowIds" | "countRows" | "delete" | "update" | "upsert" | "hasVectorIndex" | "search"> {
  return {
    async hasVectorIndex() {
      return (await table().listIndices()).length > 0;
    },
    async search(query, options) {
      return searchWith(table().search(query) as VectorQueryLike, options);
    },
    async scan(options = {}) {
      let query = table().query();
      if (options.columns) query = query.select(options.columns);
      if (options.filter) query = query.where(options.filter);
      if (options.limit !== undefined) query = query.limit(options.limit);
      return drain(query);
    },
    async rowIds() {
      const ids: bigint[] = [];
      for await (const batch of table().query().select(["id"]).withRowId()) {
        const column = batch.getChild("_rowid");
        if (!column) throw new Error("scan did not return _rowid");
        for (const id of column) ids.push(BigInt(id as bigint));
      }
      return ids;
    },
    async takeRowIds(ids) {
      return (await take(ids)).numRows;
    },
    async countRows(filter) {
      return table().countRows(filter);
    },
    async delete(filter) {
      await table().delete(filter);
    },
    async update(where, valuesSql) {
      await table().update({ where, valuesSql });
    },
    async upsert(on, data) {
      await table().mergeInsert(on).whenMatchedUpdateAll().whenNotMatchedInsertAll().execute(data);
    },
  };
}

/** Connection settings a workload may ask for; a system without the setting ignores it. */
export interface ConnectSettings {
  /** Quiver: read vector pages through memory maps for exact search (LanceDB has no such option). */
  memoryMap?: boolean;
}

export interface Driver {
  name: SystemName;
  version: string;
  connect(uri: string, settings?: ConnectSettings): Promise<System>;
}

async function quiver(): Promise<Driver> {
  const q = await import("quiverdb");
  return {
    name: "quiver",
    version: q.version(),
    async connect(uri, settings = {}) {
      const db = await q.connect(uri, { memoryMap: settings.memoryMap });
      let table: InstanceType<typeof q.Table> | null = null;
      const current = () => {
        if (!table) throw new Error("no table open");
        return table;
      };
      return {
        name: "quiver",
        version: q.version(),
        async createTable(name, data) {
          table = await db.createTable(name, data as never, { mode: "overwrite" });
        },
        async openTable(name) {
          table = await db.openTable(name);
        },
        ...tableOps(current as unknown as () => TableLike, (ids) => current().takeRowIds(ids)),
        async createVectorIndex(options = {}) {
          await current().createIndex("vector", { config: q.Index.ivfPq(options), replace: true });
        },
        close() {
          table?.close();
          db.close();
        },
      };
    },
  };
}

async function lancedb(): Promise<Driver> {
  const l = await import("@lancedb/lancedb");
  const version = installedVersion("@lancedb/lancedb");
  return {
    name: "lancedb",
    version,
    async connect(uri) {
      const db = await l.connect(uri);
      let table: Awaited<ReturnType<typeof db.openTable>> | null = null;
      const current = () => {
        if (!table) throw new Error("no table open");
        return table;
      };
      return {
        name: "lancedb",
        version,
        async createTable(name, data) {
          table = await db.createTable(name, data as never, { mode: "overwrite" });
        },
        async openTable(name) {
          table = await db.openTable(name);
        },
        ...tableOps(
          current as unknown as () => TableLike,
          (ids) => current().takeRowIds(ids).toArrow() as Promise<ArrowTable>,
        ),
        async createVectorIndex(options = {}) {
          await current().createIndex("vector", { config: l.Index.ivfPq(options), replace: true });
        },
        close() {
          table?.close();
          db.close();
        },
      };
    },
  };
}

/** Loads a system's package (not timed: module loading is not part of any workload). */
export function loadDriver(name: SystemName): Promise<Driver> {
  return name === "quiver" ? quiver() : lancedb();
}
