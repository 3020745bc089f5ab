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
    /** The provider's own session id (the ID token's `sid`), for back-channel logout. */
    providerSid: text("provider_sid"),
  },
  (table) => [
    index("sessions_account").on(table.accountId),
    index("sessions_expires").on(table.expiresAt),
    index("sessions_provider_sid").on(table.provider, table.providerSid),
  ],
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

/**
 * The `jti` of every back-channel logout token accepted, kept until its `iat` falls out of
 * the acceptance window (after which the token is refused as too old anyway). In the
 * database, not in memory, so a replay is refused after a restart too.
 */
export const logoutTokenJTIs = sqliteTable(
  "logout_token_jtis",
  {
    issuer: text("issuer").notNull(),
    jti: text("jti").notNull(),
    expiresAt: integer("expires_at").notNull(),
  },
  (table) => [primaryKey({ columns: [table.issuer, table.jti] }), index("logout_token_jtis_expires").on(table.expiresAt)],
);

/** Accounts an operator has blocked: no login, no session, no socket. */
export const accountBlocks = sqliteTable("account_blocks", {
  accountId: text("account_id")
    .primaryKey()
    .references(() => accounts.id, { onDelete: "cascade" }),
  blockedAt: integer("blocked_at").notNull(),
  /** Who blocked it (the operator's name), for the record. */
  blockedBy: text("blocked_by").notNull(),
  reason: text("reason").notNull(),
});

/**
 * What the operator's command did, written in the same transaction as the change itself,
 * for the running server to pick up (it polls `PRAGMA data_version`): it audits each
 * action, announces each ended session (its sockets close) and revokes the session's
 * refresh token, then marks the row handled.
 */
export const operatorActions = sqliteTable(
  "operator_actions",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    /** "sessions.listed", "session.ended", "account.blocked", "account.unblocked". */
    action: text("action").notNull(),
    accountId: text("account_id").notNull(),
    sessionId: text("session_id"),
    provider: text("provider"),
    /** An ended session's refresh token, still sealed for its session (nobody here can read it). */
    refreshToken: text("refresh_token"),
    operator: text("operator").notNull(),
    detail: text("detail"),
    at: integer("at").notNull(),
    handledAt: integer("handled_at"),
  },
  (table) => [index("operator_actions_pending").on(table.handledAt)],
);

export type SessionRow = typeof sessions.$inferSelect;
export type AccountRow = typeof accounts.$inferSelect;
