import type { Context } from "hono";
import type { AppEnv } from "../app-env";
import type { AuditLog } from "../audit/log";
import { DecryptionError } from "../crypto/token-cipher";
import type { Provider } from "./providers";
import type { Session } from "./session";
import type { SessionRepository } from "../store/types";

/**
 * Whether `POST /auth/logout` asks to leave the provider too: `?provider=1`, or a JSON body
 * `{"provider": true}`. Anything else (no body, another type, malformed JSON) is the
 * default logout: a player who did not ask is never sent to the provider.
 */
export async function asksForProviderLogout(c: Context<AppEnv>): Promise<boolean> {
  if (c.req.query("provider") === "1") return true;
  // Stryker: equivalent (the `""` for no Content-Type → any other text) — it is not application/json either.
  const contentType = (c.req.header("content-type") ?? "").split(";")[0]?.trim().toLowerCase();
  if (contentType !== "application/json") return false;
  let body: unknown;
  try {
    body = JSON.parse(await c.req.text());
  } catch {
    return false;
  }
  // Stryker: equivalent (`typeof body === "object"` → `true`) — a string, number or boolean
  // has no `provider` member; `null`, which would throw, is caught by the second test.
  return typeof body === "object" && body !== null && (body as Record<string, unknown>).provider === true;
}

/**
 * The provider's logout URL for this session (OIDC RP-Initiated Logout 1.0 section 2), or
 * null when the provider has no `end_session_endpoint`. Read before the session ends,
 * since the ID token goes with the row.
 *
 * `id_token_hint` lets the provider know which of its sessions and which client this is,
 * and lets it honour `post_logout_redirect_uri` (section 3). It puts our ID token in a URL
 * the browser visits, which is what the specification asks for; its audience is
 * Portcullis alone (no API accepts it), it goes only to the provider that issued it, and
 * the answer carrying it is `no-store`. `client_id` is sent too, for providers that want
 * it, and the redirect goes back to PUBLIC_ORIGIN, which must be registered there.
 */
export async function providerLogoutURL(
  session: Session,
  deps: { providers: Map<string, Provider>; sessions: SessionRepository; audit: AuditLog; publicOrigin: string },
): Promise<string | null> {
  const provider = deps.providers.get(session.provider);
  if (provider === undefined || provider.endSessionEndpoint === null) return null;
  let idToken: string | null = null;
  try {
    idToken = (await deps.sessions.readTokens(session.id))?.idToken ?? null;
  } catch (error) {
    if (!(error instanceof DecryptionError)) throw error;
    // The session ends anyway; the provider's page then asks the player who they are.
    deps.audit.write("crypto.decrypt.failed", { sessionId: session.id, reason: "id token for provider logout", detail: error.message });
  }
  const url = new URL(provider.endSessionEndpoint);
  if (idToken !== null) url.searchParams.set("id_token_hint", idToken);
  url.searchParams.set("client_id", provider.clientId);
  url.searchParams.set("post_logout_redirect_uri", postLogoutRedirectURI(deps.publicOrigin));
  return url.href;
}

/** What to register at the provider as the post-logout redirect URI: the game's front page. */
export function postLogoutRedirectURI(publicOrigin: string): string {
  return `${publicOrigin}/`;
}
