import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../fixtures/harness";
import { startRecordingUpstream, type RecordingUpstream } from "../fixtures/http-upstream";

/**
 * SECURITY.md I42: the request-line and client-address headers an upstream framework would
 * obey never reach it — the listed names that no pattern covers, and vendor variants of the
 * client-address family that no list names.
 */
describe("/api relay: headers a browser must not choose (SECURITY.md I42)", () => {
  let upstream: RecordingUpstream;
  let h: Harness;
  let token: string;
  beforeAll(async () => {
    upstream = await startRecordingUpstream();
    h = await startHarness({ env: { GAME_BACKEND_URL: upstream.url } });
    token = (await h.login("header-picker")).token;
  });
  afterAll(async () => {
    await h.close();
    await upstream.close();
  });

  it("strips path and host overrides, and client-address headers by their last word", async () => {
    const hostile = {
      "x-original-path": "/admin",
      "x-envoy-original-path": "/admin",
      "x-http-host-override": "evil.example",
      "x-acme-socketip": "6.6.6.6",
      "x-azure-clientip": "6.6.6.6",
      "x-edge-client-ipv6": "::6",
      ip: "6.6.6.6",
      "x-game-ip-note": "kept: ip is not its last word",
    };
    const response = await fetch(`${h.origin}/api/game/profile`, { headers: { cookie: `__Host-Http-session=${token}`, ...h.csrf(), ...hostile } });
    expect(response.status).toBe(200);
    const seen = upstream.requests.at(-1)?.headers ?? {};
    for (const name of ["x-original-path", "x-envoy-original-path", "x-http-host-override", "x-acme-socketip", "x-azure-clientip", "x-edge-client-ipv6", "ip"]) {
      expect(seen[name], name).toBeUndefined();
    }
    expect(seen["x-game-ip-note"]).toBe("kept: ip is not its last word");
  });
});

/**
 * A provider token is only ever the one the player logged in with: a session from the demo
 * provider calling a route that needs the "other" provider's token is refused, and nothing
 * is sent (the CONTRACT.md credential rule).
 */
describe("/api relay: a provider-token route of another provider", () => {
  let echo: RecordingUpstream;
  let h: Harness;
  beforeAll(async () => {
    echo = await startRecordingUpstream();
    h = await startHarness({
      secondProvider: true,
      upstreams: () => ({ routes: [{ prefix: "/api/other/", target: `${echo.url}/echo/`, credential: "provider-token", provider: "other" }] }),
    });
  });
  afterAll(async () => {
    await h.close();
    await echo.close();
  });

  it("→ 403 wrong_provider, calling nothing", async () => {
    const { token } = await h.login("demo-player");
    const response = await fetch(`${h.origin}/api/other/x`, { headers: { cookie: `__Host-Http-session=${token}`, ...h.csrf() } });
    expect(response.status).toBe(403);
    expect(await response.json()).toEqual({ error: "wrong_provider", message: expect.stringContaining("other") });
    expect(echo.requests).toHaveLength(0);
  });
});
