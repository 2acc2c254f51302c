// Trace events of the engine, as objects: what the README's "Tracing" section lists.
import { invalid } from "./check.js";
import { nativeSync } from "./errors.js";
import { binding } from "./native.js";

export type TraceLevel = "error" | "warn" | "info" | "debug" | "trace";

/** One event of the engine. */
export interface TraceEvent {
  /** "ERROR", "WARN", "INFO", "DEBUG" or "TRACE". */
  level: string;
  /** `quiver::file_audit`, `quiver::io_events`, `quiver::execution`, or an engine module. */
  target: string;
  /** The event's fields, e.g. `{ mode: "create", type: "manifest", path: "…" }`. */
  fields: Record<string, number | boolean | string>;
  /** When it happened, in milliseconds since the Unix epoch. */
  timestamp: number;
}

/** A live subscription; `unsubscribe()` ends it. */
export interface EventSubscription {
  unsubscribe(): void;
}

/**
 * Calls `listener` with every engine event of `level` (default "info") and above. Events are
 * queued and delivered on the JS thread: the engine never waits for a listener (a listener
 * that falls more than 4,096 events behind loses the newest), and a subscription does not keep
 * the process alive. An exception thrown by the listener becomes a process warning.
 */
export function subscribeEvents(listener: (event: TraceEvent) => void, options: { level?: TraceLevel } = {}): EventSubscription {
  if (typeof listener !== "function") invalid("subscribeEvents() listener", "a function", listener);
  if (options === null || typeof options !== "object") invalid("subscribeEvents() options", "an object", options);
  const level = options.level ?? "info";
  if (!["error", "warn", "info", "debug", "trace"].includes(level as string)) {
    invalid("level", "'error', 'warn', 'info', 'debug' or 'trace'", level);
  }
  const id = nativeSync(() =>
    binding.subscribeEvents((event) => {
      try {
        listener(event);
      } catch (e) {
        process.emitWarning(`a subscribeEvents() listener threw: ${e instanceof Error ? e.message : String(e)}`, "QuiverListenerWarning");
      }
    }, level),
  );
  let live = true;
  return {
    unsubscribe() {
      if (live) {
        live = false;
        binding.unsubscribeEvents(id);
      }
    },
  };
}
