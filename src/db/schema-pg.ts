import { bigint, customType, index, integer, pgTable, primaryKey, text } from "drizzle-orm/pg-core";

// The PostgreSQL twin of ./schema.ts: the same tables, columns and meaning, so the store
// suite holds both engines to one behaviour. Times are milliseconds since the epoch from the
// injected clock (bigint: they outgrow int4), never the server's now().

/** Raw bytes (drizzle 0.45's pg-core has no bytea builder). */
const bytea = customType<{ data: Buffer; driverData: Buffer }>({
  dataType: () => "bytea",
});

const millis = (name: string) => bigint(name, { mode: "number" });

export const accounts = pgTable("accounts", {
  id: text("id").primaryKey(),
  displayName: text("display_name").notNull(),
  createdAt: millis("created_at").notNull(),
});

/** One row per (issuer, subject): OIDC Core 5.7, the only stable identifier of an end user. */
export const identities = pgTable(
  "identities",
  {
    issuer: text("issuer").notNull(),
    subject: text("subject").notNull(),
    accountId: text("account_id")
      .notNull()
      .references(() => accounts.id, { onDelete: "cascade" }),
    provider: text("provider").notNull(),
    createdAt: millis("created_at").notNull(),
  },
  (table) => [primaryKey({ columns: [table.issuer, table.subject] }), index("identities_account").on(table.accountId)],
);

export const sessions = pgTable(
  "sessions",
  {
    id: text("id").primaryKey(),
    accountId: text("account_id")
      .notNull()
      .references(() => accounts.id, { onDelete: "cascade" }),
    /** SHA-256 of the token's secret part; the secret itself is never stored. */
    secretHash: bytea("secret_hash").notNull(),
    provider: text("provider").notNull(),
    createdAt: millis("created_at").notNull(),
    lastSeenAt: millis("last_seen_at").notNull(),
    /** Absolute expiry: creation + absolute timeout, capped by the refresh token's lifetime. */
    expiresAt: millis("expires_at").notNull(),
    userAgent: text("user_agent").notNull(),
    /** Provider tokens, AES-256-GCM sealed with the session id and field name as associated data. */
    accessToken: text("access_token"),
    accessTokenExpiresAt: millis("access_token_expires_at"),
    refreshToken: text("refresh_token"),
    idToken: text("id_token"),
    /** Bumped by every token refresh: a compare-and-swap so two writers cannot both refresh. */
    version: integer("version").notNull().default(0),
  },
  (table) => [index("sessions_account").on(table.accountId), index("sessions_expires").on(table.expiresAt)],
);

/** A login in progress; see ./schema.ts. `seq` orders a browser's attempts as SQLite's rowid does. */
export const loginAttempts = pgTable(
  "login_attempts",
  {
    /** SHA-256 (hex) of the state sent to the provider. */
    id: text("id").primaryKey(),
    /** SHA-256 (hex) of the login-state cookie's handle: the browser that started the login. */
    browser: text("browser").notNull(),
    provider: text("provider").notNull(),
    codeVerifier: text("code_verifier").notNull(),
    nonce: text("nonce").notNull(),
    returnTo: text("return_to").notNull(),
    previousSessionId: text("previous_session_id"),
    previousAccountId: text("previous_account_id"),
    expiresAt: millis("expires_at").notNull(),
    seq: bigint("seq", { mode: "number" }).generatedAlwaysAsIdentity(),
  },
  (table) => [index("login_attempts_browser").on(table.browser)],
);

export const wsTickets = pgTable(
  "ws_tickets",
  {
    /** SHA-256 (hex) of the ticket; the ticket itself is never stored. */
    hash: text("hash").primaryKey(),
    sessionId: text("session_id")
      .notNull()
      .references(() => sessions.id, { onDelete: "cascade" }),
    expiresAt: millis("expires_at").notNull(),
  },
  (table) => [index("ws_tickets_expires").on(table.expiresAt)],
);

/**
 * Who is refreshing a session's provider tokens right now (SECURITY.md I41). At most one row
 * per session: taken by an upsert that succeeds only when there is none or its lease has
 * expired, deleted by its holder when done. No foreign key: a lease may outlive its session
 * for the few seconds until its holder releases it, and the sweep clears abandoned ones.
 */
export const refreshLeases = pgTable("refresh_leases", {
  sessionId: text("session_id").primaryKey(),
  /** A random value per acquisition, so a holder presumed dead cannot release its successor's lease. */
  holder: text("holder").notNull(),
  expiresAt: millis("expires_at").notNull(),
});
