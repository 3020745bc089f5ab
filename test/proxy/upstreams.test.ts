import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config";
import { loadUpstreams, parseUpstreams, resolveUpstream, type UpstreamRoute } from "../../src/proxy/upstreams";
import { testKey } from "../fixtures/harness";

function problemsOf(run: () => unknown): string[] {
  try {
    run();
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
}

describe("#parseUpstreams", () => {
  it("reports every problem of the file at once", () => {
    const problems = problemsOf(() =>
      parseUpstreams(
        {
          routes: [
            { prefix: "api/game", target: "ftp://x", methods: ["TRACE"], credential: "magic" },
            { prefix: "/api/me/", target: "https://id.example.com/me?x=1", credential: "provider-token", provider: "nope" },
            { prefix: "/api/me/", target: "https://ok.example.com/", audience: "" },
            { prefix: "/api/x/", target: "https://user:pw@ok.example.com/", credentials: "assertion", provider: "demo" },
            "not a route",
          ],
        },
        ["demo"],
        "upstreams.json",
      ),
    );
    expect(problems).toEqual([
      expect.stringContaining("routes[0].prefix"),
      expect.stringContaining("routes[0].target"),
      expect.stringContaining("routes[0].methods"),
      expect.stringContaining("routes[0].credential"),
      expect.stringContaining("routes[1].target"),
      expect.stringContaining("routes[1].provider"),
      expect.stringContaining('routes[2].prefix "/api/me/" appears twice'),
      expect.stringContaining("routes[2].audience"),
      expect.stringContaining('routes[3]: unknown key "credentials"'),
      expect.stringContaining("routes[3].target"),
      expect.stringContaining("routes[3].provider only goes with"),
      expect.stringContaining("routes[4]: not an object"),
    ]);
  });

  it("refuses a file without routes", () => {
    for (const value of [null, [], {}, { routes: [] }, { routes: "x" }]) {
      expect(problemsOf(() => parseUpstreams(value, [], "f"))).toEqual([expect.stringContaining('expected {"routes"')]);
    }
  });

  it("resolves only inside a route's target", () => {
    const routes = parseUpstreams({ routes: [{ prefix: "/api/game/", target: "http://10.0.0.1:9000/v1/" }] }, [], "test");
    expect(resolveUpstream(routes, "/api/game/a/b?c=d")).toMatchObject({ url: new URL("http://10.0.0.1:9000/v1/a/b?c=d") });
    expect(resolveUpstream(routes, "/api/game")).toMatchObject({ url: new URL("http://10.0.0.1:9000/v1/") });
    expect(resolveUpstream(routes, "/api/game/../x")).toEqual({ refusal: "bad_path" });
    expect(resolveUpstream(routes, "/api/games/x")).toEqual({ refusal: "no_route" });
  });
});

describe("#loadUpstreams", () => {
  let dir: string | null = null;
  afterEach(() => {
    if (dir !== null) rmSync(dir, { recursive: true, force: true });
    dir = null;
  });
  const env = (extra: Record<string, string>): Record<string, string> => ({
    NODE_ENV: "test",
    PUBLIC_ORIGIN: "https://play.example.com",
    TOKEN_ENCRYPTION_KEYS: `k1:${testKey()}`,
    ASSERTION_SIGNING_KEYS: `a1:${testKey()}`,
    GAME_BACKEND_URL: "http://10.0.0.5:9000",
    ...extra,
  });

  it("defaults to one route /api/game/ → the game backend, with an assertion for its origin", () => {
    const routes = loadUpstreams(loadConfig(env({})), []);
    expect(routes).toEqual([
      expect.objectContaining({ prefix: "/api/game/", target: "http://10.0.0.5:9000/api/game/", audience: "http://10.0.0.5:9000", credential: { mode: "assertion" } }),
    ]);
  });

  it("reads UPSTREAMS_FILE and lists every problem in it at start-up", () => {
    dir = mkdtempSync(join(tmpdir(), "portcullis-upstreams-"));
    const file = join(dir, "upstreams.json");
    writeFileSync(file, JSON.stringify({ routes: [{ prefix: "/api/a/", target: "http://a.internal/" }, { prefix: "/api/b", target: "nope", credential: "provider-token" }] }));
    const problems = problemsOf(() => loadUpstreams(loadConfig(env({ UPSTREAMS_FILE: file })), ["demo"]));
    expect(problems).toEqual([expect.stringContaining("routes[1].prefix"), expect.stringContaining("routes[1].target"), expect.stringContaining("routes[1].provider")]);
    writeFileSync(file, "{ not json");
    expect(problemsOf(() => loadUpstreams(loadConfig(env({ UPSTREAMS_FILE: file })), []))).toEqual([expect.stringContaining(file)]);
    writeFileSync(file, JSON.stringify({ routes: [{ prefix: "/api/a/", target: "http://a.internal/v1", methods: ["GET"] }] }));
    const [route] = loadUpstreams(loadConfig(env({ UPSTREAMS_FILE: file })), []);
    expect(route).toMatchObject({ prefix: "/api/a/", target: "http://a.internal/v1/", audience: "http://a.internal" });
    expect([...(route?.methods ?? [])]).toEqual(["GET"]);
  });
});

describe("#resolveUpstream", () => {
  const routes: UpstreamRoute[] = parseUpstreams(
    { routes: [{ prefix: "/api/game/", target: "http://10.0.0.1:9000/v1/" }, { prefix: "/api/game/admin/", target: "http://10.0.0.2/" }] },
    [],
    "test",
  );
  const cases: [string, string | "bad_path" | "no_route"][] = [
    ["/api/game/a/b?c=d", "http://10.0.0.1:9000/v1/a/b?c=d"],
    ["/api/game", "http://10.0.0.1:9000/v1/"],
    ["/api/game/", "http://10.0.0.1:9000/v1/"],
    ["/api/game/admin/x", "http://10.0.0.2/x"],
    ["/api/game/J%C3%BCrgen", "http://10.0.0.1:9000/v1/J%C3%BCrgen"],
    ["/api/game/a?q=/../x", "http://10.0.0.1:9000/v1/a?q=/../x"],
    ["/api/games/x", "no_route"],
    ["/api/", "no_route"],
    ["/api/game/../x", "bad_path"],
    ["/api/game/a/%2e%2E/x", "bad_path"],
    ["/api/game/..;/x", "bad_path"],
    ["/api/game/%ef%bc%8e%ef%bc%8e/x", "bad_path"],
    ["/api/game/%c0%ae", "bad_path"],
    ["/api/game/a%2fb", "bad_path"],
    ["/api/game/a%5cb", "bad_path"],
    ["/api/game/a%2525", "bad_path"],
    ["/api/game/a\\b", "bad_path"],
    ["/api/game//x", "bad_path"],
    ["/api/game/a%0d%0aX-Injected:%201", "bad_path"],
    ["api/game/x", "bad_path"],
  ];
  it.each(cases)("%j → %s", (raw, expected) => {
    const result = resolveUpstream(routes, raw);
    if (expected === "bad_path" || expected === "no_route") {
      expect(result).toEqual({ refusal: expected });
    } else {
      expect("url" in result ? result.url.href : result).toBe(expected);
    }
  });
});
