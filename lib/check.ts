// Argument checks shared by the API, and a way to show any value in an error message.
//
// A message must never be the thing that fails: `${value}` throws a TypeError for a Symbol, and
// String(value) throws for an object whose toString throws or that has no prototype. So user
// values are always formatted with `describeValue`, which never throws.
import { InvalidArgumentError } from "./errors.js";

/** Longest string shown whole in a message. */
const MAX_SHOWN = 60;

/**
 * `value` as short text for an error message: `'text'`, `12`, `NaN`, `10n (a bigint)`,
 * `Symbol(x) (a symbol)`, `an object`, `a Map`, `an array of 3 values`, … Never throws.
 */
export function describeValue(value: unknown): string {
  try {
    switch (typeof value) {
      case "string":
        return `'${value.length > MAX_SHOWN ? `${value.slice(0, MAX_SHOWN)}…` : value}'`;
      case "number":
        return Object.is(value, -0) ? "-0" : String(value);
      case "bigint":
        return `${value.toString()}n (a bigint)`;
      case "symbol":
        return `${String(value)} (a symbol)`;
      case "boolean":
        return String(value);
      case "undefined":
        return "undefined";
      case "function":
        return typeof value.name === "string" && value.name !== "" ? `a function (${value.name})` : "a function";
      case "object": {
        if (value === null) return "null";
        if (Array.isArray(value)) return `an array of ${value.length} value${value.length === 1 ? "" : "s"}`;
        const proto: unknown = Object.getPrototypeOf(value);
        if (proto === null) return "an object with no prototype";
        const name: unknown = (proto as { constructor?: { name?: unknown } }).constructor?.name;
        if (typeof name !== "string" || name === "" || name === "Object") return "an object";
        return `${/^[AEIOU]/.test(name) ? "an" : "a"} ${name}`;
      }
      default:
        return `a ${typeof value}`;
    }
  } catch {
    // A revoked proxy, a throwing getter: still say something.
    return "a value that cannot be shown";
  }
}

/** Throws an InvalidArgumentError: `${what} must be ${expected}, got <value>`. */
export function invalid(what: string, expected: string, value: unknown): never {
  throw new InvalidArgumentError("InvalidArgument", `${what} must be ${expected}, got ${describeValue(value)}`);
}

/** A whole JS number in [min, max] (default: 0 to 2^53 − 1). No bigints, strings or NaN. */
export function integerArg(
  value: unknown,
  what: string,
  options: { min?: number; max?: number; expected?: string } = {},
): number {
  const min = options.min ?? 0;
  const max = options.max ?? Number.MAX_SAFE_INTEGER;
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    const expected =
      options.expected ??
      (min === 0 ? "a non-negative integer" : min === 1 ? "a positive integer" : `an integer >= ${min}`) +
        (max < Number.MAX_SAFE_INTEGER ? ` <= ${max}` : "");
    invalid(what, expected, value);
  }
  return value;
}

/** A JS number that is not NaN; infinities only when `finite` is false. */
export function numberArg(value: unknown, what: string, options: { finite?: boolean } = {}): number {
  const finite = options.finite ?? true;
  if (typeof value !== "number" || Number.isNaN(value) || (finite && !Number.isFinite(value))) {
    invalid(what, finite ? "a finite number" : "a number (not NaN)", value);
  }
  return value;
}

/** A non-empty string (table, column and index names). */
export function nameArg(value: unknown, what: string): string {
  if (typeof value !== "string" || value === "") invalid(what, "a non-empty string", value);
  return value;
}
