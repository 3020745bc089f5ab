const UNAVAILABLE_SQLITE_CODES = /^SQLITE_(BUSY|LOCKED|READONLY|IOERR|FULL|CANTOPEN|PROTOCOL)/;
// postgres.js's own codes for a connection it lost or could not make, and the system
// errors under them.
const UNAVAILABLE_CLIENT_CODES = new Set([
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
  "CONNECT_TIMEOUT",
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "ENOTFOUND",
  "EAI_AGAIN",
]);
// SQLSTATE: class 08 (connection exception), 53 (insufficient resources), 57P01–57P05
// (terminated by an administrator, crash shutdown, cannot connect now, idle timeouts),
// 57014 (statement timeout), 55000 (a database not accepting connections), 40001/40P01
// (serialization failure, deadlock: the transaction was rolled back as a whole).
const UNAVAILABLE_SQLSTATE = /^(08...|53...|57P0[1-5]|57014|55000|40001|40P01)$/;

/**
 * An error that means "the database is unavailable right now", not a bug in a query: the
 * statement (or its whole transaction) did not happen, and the client should retry. Either
 * engine's codes; the callers answer 503 without knowing which engine runs.
 */
export function isStoreUnavailable(error: unknown, depth = 0): boolean {
  if (typeof error !== "object" || error === null || depth > 3) return false;
  // drizzle wraps the driver's error ("Failed query: …") and keeps it as the cause.
  if (isStoreUnavailable(Reflect.get(error, "cause"), depth + 1)) return true;
  const code: unknown = Reflect.get(error, "code");
  if (typeof code === "string" && (UNAVAILABLE_SQLITE_CODES.test(code) || UNAVAILABLE_CLIENT_CODES.has(code) || UNAVAILABLE_SQLSTATE.test(code))) {
    return true;
  }
  return error instanceof TypeError && /database connection is not open/.test(error.message);
}
