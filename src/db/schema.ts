import { blob, index, integer, primaryKey, sqliteTable, text } from "drizzle-orm/sqlite-core";

// All times are milliseconds since the epoch, taken from the injected clock.

export const accounts = sqliteTable("accounts", {
  id: text("id").primaryKey(),
  displayName: text("display_name").notNull(),
  createdAt: integer("created_at").notNull(),
});

/** One row per (issuer, subject): OIDC Core 5.7, the only stable identifier of an end user. */
export const identities = sqliteTable(
  "identities",
  {
    issuer: text("issuer").notNull(),
    subject: text("subject").notNull(),
    accountId: text("account_id")
      .notNull()
      .references(() => accounts.id, { onDelete: "cascade" }),
    provider: text("provider").notNull(),
    createdAt: integer("created_at").notNull(),
  },
  (table) => [primaryKey({ columns: [table.issuer, table.subject] }), index("identities_account").on(table.accountId)],
);

export const sessions = sqliteTable(
  "sessions",
  {
    id: text("id").primaryKey(),
    accountId: text("account_id")
      .notNull()
      .references(() => accounts.id, { onDelete: "cascade" }),
    /** SHA-256 of the token's secret part; the secret itself is never stored. */
    secretHash: blob("secret_hash", { mode: "buffer" }).notNull(),
    provider: text("provider").notNull(),
    createdAt: integer("created_at").notNull(),
    lastSeenAt: integer("last_seen_at").notNull(),
    /** Absolute expiry: creation + absolute timeout, capped by the refresh token's lifetime. */
    expiresAt: integer("expires_at").notNull(),
    userAgent: text("user_agent").notNull(),
    /** Provider tokens, AES-256-GCM sealed with the session id and field name as associated data. */
    accessToken: text("access_token"),
    accessTokenExpiresAt: integer("access_token_expires_at"),
    refreshToken: text("refresh_token"),
    idToken: text("id_token"),
    /** Bumped by every token refresh: a compare-and-swap so two writers cannot both refresh. */
    version: integer("version").notNull().default(0),
  },
  (table) => [index("sessions_account").on(table.accountId), index("sessions_expires").on(table.expiresAt)],
);

/**
 * A login in progress, found by the hash of its `state` and the hash of the login-state
 * cookie's handle together, deleted when used. One browser (one handle) may have a few at once.
 */
export const loginAttempts = sqliteTable(
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
    /** The session this browser had when the login started, ended when the login succeeds. */
    previousSessionId: text("previous_session_id"),
    previousAccountId: text("previous_account_id"),
    expiresAt: integer("expires_at").notNull(),
  },
  (table) => [index("login_attempts_browser").on(table.browser)],
);

export const wsTickets = sqliteTable(
  "ws_tickets",
  {
    /** SHA-256 (hex) of the ticket; the ticket itself is never stored. */
    hash: text("hash").primaryKey(),
    sessionId: text("session_id")
      .notNull()
      .references(() => sessions.id, { onDelete: "cascade" }),
    expiresAt: integer("expires_at").notNull(),
  },
  (table) => [index("ws_tickets_expires").on(table.expiresAt)],
);

export type SessionRow = typeof sessions.$inferSelect;
export type AccountRow = typeof accounts.$inferSelect;
