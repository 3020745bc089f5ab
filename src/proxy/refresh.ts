import type { AuditLog } from "../audit/log";
import { ProviderError, type Provider } from "../auth/providers";
import type { EndedGrant, ProviderTokens, Session, SessionStore } from "../auth/session";
import type { Clock } from "../clock";
import { DecryptionError } from "../crypto/token-cipher";
import { refuse } from "../http/errors";
import { noMetrics, type Metrics } from "../metrics/metrics";

/** CONTRACT.md: refresh at most 60 s before the access token expires. */
const REFRESH_AHEAD_MS = 60_000;

/**
 * The user's provider access token for `provider-token` upstreams, refreshed before it
 * expires, one refresh at a time per session (RFC 9700 4.14.2: a rotated refresh token used
 * twice may revoke the whole grant). In this process concurrent requests share one promise.
 * Across processes the `version` compare-and-swap in {@link SessionStore.replaceTokens} lets
 * only one writer win; the loser re-reads what the winner stored, and a loser whose stale
 * refresh token the provider refuses does not end a session the winner has just renewed.
 * (Two processes can still both reach the provider in the same instant; preventing that
 * would take a lease column on the session row.)
 *
 * It also answers for the other end of a grant's life: {@link revokeGrant} is the session
 * store's revoker, so whatever ends a session revokes its refresh token at the provider
 * (SECURITY.md I43).
 */
export class TokenRefresher {
  private readonly inflight = new Map<string, Promise<string>>();

  constructor(
    private readonly sessions: SessionStore,
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
    const tokens = this.read(session);
    if (tokens.accessTokenExpiresAt === null || tokens.accessTokenExpiresAt - REFRESH_AHEAD_MS > this.clock.now()) {
      return tokens.accessToken;
    }
    let pending = this.inflight.get(session.id);
    if (pending === undefined) {
      pending = this.refresh(session).finally(() => this.inflight.delete(session.id));
      this.inflight.set(session.id, pending);
    }
    return pending;
  }

  private async refresh(session: Session): Promise<string> {
    const version = this.sessions.version(session.id);
    const tokens = this.read(session);
    const provider = this.providers.get(session.provider);
    if (version === null || provider === undefined || tokens.refreshToken === null) {
      // Nothing to refresh with (a provider without refresh tokens): the access token serves
      // until it actually expires, and then the session is over.
      if (tokens.accessTokenExpiresAt !== null && tokens.accessTokenExpiresAt > this.clock.now()) return tokens.accessToken;
      this.metrics.tokenRefresh("no_refresh_token");
      this.audit.write("token.refresh.failed", { sessionId: session.id, provider: session.provider, reason: "no refresh token" });
      this.sessions.end(session.id, session.accountId, "refresh_refused");
      refuse(401, "no_session", "Your session has ended; log in again.");
    }
    let fresh: ProviderTokens;
    try {
      fresh = await provider.refresh(tokens.refreshToken);
    } catch (error) {
      const reason = error instanceof ProviderError ? error.code : "error";
      this.audit.write("token.refresh.failed", { sessionId: session.id, provider: provider.name, reason });
      if (error instanceof ProviderError && error.isGrantRevoked) {
        // Another process may have used this refresh token a moment earlier and stored
        // the rotated one: then the refusal is about a stale token, not a dead grant.
        if (this.sessions.version(session.id) !== version) {
          this.metrics.tokenRefresh("superseded");
          return this.read(session).accessToken;
        }
        this.metrics.tokenRefresh("refused");
        // BBA / ASVS 10.4.8: the provider revoked the grant, so the session ends here too;
        // the store announces it and the session's sockets close with 4401.
        this.sessions.end(session.id, session.accountId, "refresh_refused");
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
    if (!this.sessions.replaceTokens(session.id, version, next)) {
      // Another process refreshed first (or the session ended meanwhile): its row decides.
      this.metrics.tokenRefresh("superseded");
      return this.read(session).accessToken;
    }
    this.metrics.tokenRefresh("succeeded");
    this.audit.write("token.refresh.succeeded", { sessionId: session.id, provider: provider.name });
    this.audit.write("session.refreshed", { sessionId: session.id });
    return next.accessToken;
  }

  /**
   * Refuses (401) and ends a session whose stored provider tokens fail to decrypt, for
   * routes that do not otherwise need them: a tampered row is refused whatever the
   * upstream (SECURITY.md D17). One AES-GCM open per field, microseconds.
   */
  checkIntact(session: Session): void {
    this.open(session);
  }

  private read(session: Session): ProviderTokens {
    const tokens = this.open(session);
    if (tokens === null) {
      this.sessions.end(session.id, session.accountId, "revoked");
      refuse(401, "no_session", "Your session has ended; log in again.");
    }
    return tokens;
  }

  private open(session: Session): ProviderTokens | null {
    try {
      return this.sessions.readTokens(session.id);
    } catch (error) {
      if (!(error instanceof DecryptionError)) throw error;
      // A ciphertext that fails authentication was tampered with or moved: refuse the
      // session outright, before anything is sent upstream (SECURITY.md D17).
      this.audit.write("crypto.decrypt.failed", { sessionId: session.id, reason: "provider tokens", detail: error.message });
      this.sessions.end(session.id, session.accountId, "decrypt_failed");
      refuse(401, "no_session", "Your session could not be read; log in again.");
    }
  }
}
