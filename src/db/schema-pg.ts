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
    /** The provider's own session id (the ID token's `sid`), for back-channel logout. */
    providerSid: text("provider_sid"),
  },
  (table) => [
    index("sessions_account").on(table.accountId),
    index("sessions_expires").on(table.expiresAt),
    index("sessions_provider_sid").on(table.provider, table.providerSid),
  ],
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

/** The `jti` of every back-channel logout token accepted; see ./schema.ts. */
export const logoutTokenJTIs = pgTable(
  "logout_token_jtis",
  {
    issuer: text("issuer").notNull(),
    jti: text("jti").notNull(),
    expiresAt: millis("expires_at").notNull(),
  },
  (table) => [primaryKey({ columns: [table.issuer, table.jti] }), index("logout_token_jtis_expires").on(table.expiresAt)],
);

/** Accounts an operator has blocked: no login, no session, no socket. */
export const accountBlocks = pgTable("account_blocks", {
  accountId: text("account_id")
    .primaryKey()
    .references(() => accounts.id, { onDelete: "cascade" }),
  blockedAt: millis("blocked_at").notNull(),
  blockedBy: text("blocked_by").notNull(),
  reason: text("reason").notNull(),
});

/**
 * What the operator's command did; see ./schema.ts. On PostgreSQL the command NOTIFYs
 * `portcullis_operator_actions` in the same transaction, and whichever node claims a row
 * first (FOR UPDATE SKIP LOCKED) handles it; the session ends reach every node on the bus.
 */
export const operatorActions = pgTable(
  "operator_actions",
  {
    id: bigint("id", { mode: "number" }).primaryKey().generatedAlwaysAsIdentity(),
    action: text("action").notNull(),
    accountId: text("account_id").notNull(),
    sessionId: text("session_id"),
    provider: text("provider"),
    refreshToken: text("refresh_token"),
    operator: text("operator").notNull(),
    detail: text("detail"),
    at: millis("at").notNull(),
    handledAt: millis("handled_at"),
  },
  (table) => [index("operator_actions_pending").on(table.handledAt)],
);

/**
 * The WebSocket connections open on every node, one row per socket, so
 * WS_MAX_SOCKETS_PER_SESSION holds across nodes (SECURITY.md I41). A node claims a row under
 * the session row's lock (so two nodes cannot both take the last slot), deletes it when the
 * socket closes, and renews `expires_at` for all of its rows on every registry recheck; the
 * rows of a node that died (kill -9) lapse at `expires_at` and stop counting.
 */
export const liveSockets = pgTable(
  "live_sockets",
  {
    id: text("id").primaryKey(),
    sessionId: text("session_id")
      .notNull()
      .references(() => sessions.id, { onDelete: "cascade" }),
    node: text("node").notNull(),
    expiresAt: millis("expires_at").notNull(),
  },
  (table) => [index("live_sockets_session").on(table.sessionId), index("live_sockets_node").on(table.node)],
);
