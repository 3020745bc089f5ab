import type { AuditLog } from "../audit/log";
import { ProviderError, type Provider } from "../auth/providers";
import type { EndedGrant, ProviderTokens, Session } from "../auth/session";
import type { Clock } from "../clock";
import { DecryptionError } from "../crypto/token-cipher";
import { refuse } from "../http/errors";
import { noMetrics, type Metrics } from "../metrics/metrics";
import type { RefreshLease, SessionRepository } from "../store/types";

/** CONTRACT.md: refresh at most 60 s before the access token expires. */
const REFRESH_AHEAD_MS = 60_000;

/**
 * The user's provider access token for `provider-token` upstreams, refreshed before it
 * expires, one refresh at a time per session across every node (RFC 9700 4.14.2: a
 * rotated refresh token used twice may revoke the whole grant; SECURITY.md I41). In this
 * process concurrent requests share one promise; across nodes the store's refresh lease
 * lets one node call the provider while the others wait and then use what it stored. The
 * `version` compare-and-swap in `replaceTokens` stays as the last line: a holder whose
 * lease lapsed mid-refresh cannot overwrite its successor's result.
 *
 * It also answers for the other end of a grant's life: {@link revokeGrant} is the session
 * store's revoker, so whatever ends a session revokes its refresh token at the provider
 * (SECURITY.md I43).
 */
export class TokenRefresher {
  private readonly inflight = new Map<string, Promise<string>>();

  constructor(
    private readonly sessions: SessionRepository,
    private readonly lease: RefreshLease,
    private readonly providers: Map<string, Provider>,
    private readonly audit: AuditLog,
    private readonly clock: Clock,
    private readonly metrics: Metrics = noMetrics,
  ) {}

  /**
   * RFC 7009 revocation of an ended session's refresh token, where the provider has it.
   * The composition root makes this the session store's revoker.
   */
  async revokeGrant(grant: EndedGrant): Promise<void> {
    const provider = this.providers.get(grant.provider);
    if (provider?.revoke) {
      await provider.revoke(grant.refreshToken);
    }
  }

  /** A usable access token; refuses with 401 (session ended) or 502 (provider unreachable). */
  async accessToken(session: Session): Promise<string> {
    const tokens = await this.read(session);
    if (!this.due(tokens)) {
      return tokens.accessToken;
    }
    let pending = this.inflight.get(session.id);
    if (pending === undefined) {
      pending = this.refresh(session).finally(() => this.inflight.delete(session.id));
      this.inflight.set(session.id, pending);
    }
    return pending;
  }

  private due(tokens: ProviderTokens): boolean {
    return tokens.accessTokenExpiresAt !== null && tokens.accessTokenExpiresAt - REFRESH_AHEAD_MS <= this.clock.now();
  }

  private async refresh(session: Session): Promise<string> {
    const outcome = await this.lease.run(session.id, () => this.refreshHolding(session));
    if (outcome.ran) return outcome.value;
    // Another node held the lease: it has stored its result (or failed, or the session
    // ended meanwhile). What is stored now decides; this node never calls the provider.
    this.metrics.tokenRefresh("superseded");
    const tokens = await this.read(session);
    if (tokens.accessTokenExpiresAt !== null && tokens.accessTokenExpiresAt <= this.clock.now()) {
      refuse(502, "provider_unavailable", "The identity provider could not refresh your access; try again.");
    }
    return tokens.accessToken;
  }

  /** Runs while this node holds the session's refresh lease. */
  private async refreshHolding(session: Session): Promise<string> {
    const version = await this.sessions.version(session.id);
    const tokens = await this.read(session);
    // Another node refreshed between our look and our lease: use its result.
    if (!this.due(tokens)) {
      this.metrics.tokenRefresh("superseded");
      return tokens.accessToken;
    }
    const provider = this.providers.get(session.provider);
    if (version === null || provider === undefined || tokens.refreshToken === null) {
      // Nothing to refresh with (a provider without refresh tokens): the access token serves
      // until it actually expires, and then the session is over.
      if (tokens.accessTokenExpiresAt !== null && tokens.accessTokenExpiresAt > this.clock.now()) return tokens.accessToken;
      this.metrics.tokenRefresh("no_refresh_token");
      this.audit.write("token.refresh.failed", { sessionId: session.id, provider: session.provider, reason: "no refresh token" });
      await this.sessions.end(session.id, session.accountId, "refresh_refused");
      refuse(401, "no_session", "Your session has ended; log in again.");
    }
    let fresh: ProviderTokens;
    try {
      fresh = await provider.refresh(tokens.refreshToken);
    } catch (error) {
      const reason = error instanceof ProviderError ? error.code : "error";
      this.audit.write("token.refresh.failed", { sessionId: session.id, provider: provider.name, reason });
      if (error instanceof ProviderError && error.isGrantRevoked) {
        // A holder whose lease lapsed may have used this refresh token a moment earlier and
        // stored the rotated one: then the refusal is about a stale token, not a dead grant.
        if ((await this.sessions.version(session.id)) !== version) {
          this.metrics.tokenRefresh("superseded");
          return (await this.read(session)).accessToken;
        }
        this.metrics.tokenRefresh("refused");
        // BBA / ASVS 10.4.8: the provider revoked the grant, so the session ends here too;
        // the store announces it and the session's sockets close with 4401 on every node.
        await this.sessions.end(session.id, session.accountId, "refresh_refused");
        refuse(401, "no_session", "The identity provider ended your session; log in again.");
      }
      this.metrics.tokenRefresh("failed");
      // Unreachable, a 5xx, or a refusal that is about us (invalid_client: our credentials
      // are misconfigured) rather than the user: keep the session, let the client retry.
      this.audit.write("upstream.failed", { sessionId: session.id, upstream: provider.name, reason: `token refresh: ${reason}` });
      refuse(502, "provider_unavailable", "The identity provider could not refresh your access; try again.");
    }
    // Providers that do not rotate refresh tokens answer without one: keep the old one.
    const next: ProviderTokens = { ...fresh, refreshToken: fresh.refreshToken ?? tokens.refreshToken };
    if (!(await this.sessions.replaceTokens(session.id, version, next))) {
      // Another writer refreshed first (or the session ended meanwhile): its row decides.
      this.metrics.tokenRefresh("superseded");
      return (await this.read(session)).accessToken;
    }
    this.metrics.tokenRefresh("succeeded");
    this.audit.write("token.refresh.succeeded", { sessionId: session.id, provider: provider.name });
    this.audit.write("session.refreshed", { sessionId: session.id });
    return next.accessToken;
  }

  /**
   * Refuses (401) and ends a session whose stored provider tokens fail to decrypt, for
   * routes that do not otherwise need them: a tampered row is refused whatever the
   * upstream (SECURITY.md D17). One AES-GCM open per field, and only for ciphertexts that
   * have not passed before (the store remembers which did).
   */
  async checkIntact(session: Session): Promise<void> {
    await this.refuseTampered(session, () => this.sessions.checkTokens(session));
  }

  private async read(session: Session): Promise<ProviderTokens> {
    const tokens = await this.open(session);
    if (tokens === null) {
      await this.sessions.end(session.id, session.accountId, "revoked");
      refuse(401, "no_session", "Your session has ended; log in again.");
    }
    return tokens;
  }

  private async open(session: Session): Promise<ProviderTokens | null> {
    return this.refuseTampered(session, () => this.sessions.readTokens(session.id));
  }

  private async refuseTampered<T>(session: Session, readSealed: () => Promise<T>): Promise<T> {
    try {
      return await readSealed();
    } catch (error) {
      if (!(error instanceof DecryptionError)) throw error;
      // A ciphertext that fails authentication was tampered with or moved: refuse the
      // session outright, before anything is sent upstream (SECURITY.md D17).
      this.audit.write("crypto.decrypt.failed", { sessionId: session.id, reason: "provider tokens", detail: error.message });
      await this.sessions.end(session.id, session.accountId, "decrypt_failed");
      refuse(401, "no_session", "Your session could not be read; log in again.");
    }
  }
}
