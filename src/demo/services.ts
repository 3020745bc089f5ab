import type { ProviderConfig } from "../config";
import { startDemoGame, type DemoGame } from "./game";
import { createGameAPI } from "./game-api";
import type { DemoIdPOptions } from "./idp";

/** The client id Portcullis has at the demo identity provider. */
export const DEMO_CLIENT_ID = "portcullis-demo";

/**
 * Portcullis registered at the demo identity provider for a public origin: its callback,
 * its front page after the provider's logout, and its back-channel logout route. One
 * registration serves one node or a whole cluster behind one origin.
 */
export function demoClient(publicOrigin: string, clientSecret: string): DemoIdPOptions["clients"][number] {
  return {
    clientId: DEMO_CLIENT_ID,
    clientSecret,
    redirectURIs: [`${publicOrigin}/auth/callback/demo`],
    postLogoutRedirectURIs: [`${publicOrigin}/`],
    backchannelLogoutURI: `${publicOrigin}/auth/backchannel-logout/demo`,
  };
}

/** The demo identity provider as Portcullis's provider configuration. */
export function demoProvider(issuer: string, clientSecret: string): ProviderConfig {
  return {
    kind: "oidc",
    name: "demo",
    label: "Demo",
    issuer,
    clientId: DEMO_CLIENT_ID,
    clientSecret,
    scopes: ["openid", "profile", "offline_access"],
    prompt: [],
    nameClaim: null,
  };
}

/**
 * The demo game backend on 127.0.0.1, trusting the assertions signed for `publicOrigin`
 * (every node behind one origin shares the signing keys, so one JWKS serves them all).
 */
export function startDemoGameFor(options: { publicOrigin: string; port: number; audience: string | null }): Promise<DemoGame> {
  return startDemoGame({
    port: options.port,
    host: "127.0.0.1",
    // The BFF listens only after the game does: the verifier fetches the JWKS lazily.
    jwksURL: `${options.publicOrigin}/.well-known/jwks.json`,
    issuer: options.publicOrigin,
    // An explicit GAME_BACKEND_AUDIENCE must be what the game expects too, or every upgrade is a 502.
    ...(options.audience === null ? {} : { audience: options.audience }),
    httpHandler: createGameAPI(),
  });
}
