import { readFileSync } from "node:fs";
import { ConfigError, type Config } from "../config";

export type Credential = { mode: "assertion" } | { mode: "provider-token"; provider: string };

/** One fixed route of the allowlist (SECURITY.md D20). */
export interface UpstreamRoute {
  /** Public path prefix, ending in `/`: `/api/game/`. */
  prefix: string;
  /** Base URL the rest of the path is appended to, ending in `/`. */
  target: string;
  /** The target as configured, for a request to the prefix without its trailing `/`. */
  exactTarget: string;
  audience: string;
  methods: Set<string>;
  credential: Credential;
}

const METHODS = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]);
const DEFAULT_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/**
 * The upstream table: `UPSTREAMS_FILE` (JSON) or, by default, one route `/api/game/` → the
 * game backend's `/api/game/`. Every problem in the file is reported at once.
 *
 * ```json
 * { "routes": [
 *   { "prefix": "/api/game/", "target": "http://127.0.0.1:3002/api/game/", "audience": "http://127.0.0.1:3002",
 *     "methods": ["GET", "POST"], "credential": "assertion" },
 *   { "prefix": "/api/me/", "target": "https://id.example.com/me", "credential": "provider-token", "provider": "corp" }
 * ] }
 * ```
 */
export function loadUpstreams(config: Config, providerNames: string[]): UpstreamRoute[] {
  if (config.upstreamsFile === null) {
    if (config.gameBackendURL === null) return [];
    return [
      {
        prefix: "/api/game/",
        target: `${config.gameBackendURL}/api/game/`,
        exactTarget: `${config.gameBackendURL}/api/game`,
        audience: config.gameBackendAudience ?? new URL(config.gameBackendURL).origin,
        methods: new Set(DEFAULT_METHODS),
        credential: { mode: "assertion" },
      },
    ];
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(config.upstreamsFile, "utf8"));
  } catch (error) {
    throw new ConfigError([`UPSTREAMS_FILE ${config.upstreamsFile}: ${error instanceof Error ? error.message : String(error)}`]);
  }
  return parseUpstreams(parsed, providerNames, `UPSTREAMS_FILE ${config.upstreamsFile}`);
}

export function parseUpstreams(value: unknown, providerNames: string[], where: string): UpstreamRoute[] {
  const problems: string[] = [];
  const routes: UpstreamRoute[] = [];
  const seenPrefixes = new Set<string>();
  const list = typeof value === "object" && value !== null ? (value as { routes?: unknown }).routes : undefined;
  if (!Array.isArray(list) || list.length === 0) {
    throw new ConfigError([`${where}: expected {"routes": [ … ]} with at least one route`]);
  }
  list.forEach((entry: unknown, index) => {
    const at = `${where} routes[${index}]`;
    if (typeof entry !== "object" || entry === null) {
      problems.push(`${at}: not an object`);
      return;
    }
    const record = entry as Record<string, unknown>;
    const { prefix, target, audience, methods, credential, provider } = record;
    const before = problems.length;
    if (typeof prefix !== "string" || !/^\/api\/([A-Za-z0-9_-]+\/)+$/.test(prefix)) {
      problems.push(`${at}.prefix must look like "/api/name/" (letters, digits, - and _, ending in /)`);
    } else if (seenPrefixes.has(prefix)) {
      problems.push(`${at}.prefix "${prefix}" appears twice`);
    } else {
      seenPrefixes.add(prefix);
    }
    let targetURL: URL | null = null;
    try {
      targetURL = typeof target === "string" ? new URL(target) : null;
    } catch {
      targetURL = null;
    }
    if (targetURL === null || (targetURL.protocol !== "http:" && targetURL.protocol !== "https:") || targetURL.search !== "" || targetURL.hash !== "" || targetURL.username !== "") {
      problems.push(`${at}.target must be an http(s):// URL without query, fragment or credentials`);
    }
    if (audience !== undefined && (typeof audience !== "string" || audience === "")) {
      problems.push(`${at}.audience must be a non-empty string`);
    }
    const methodList = methods === undefined ? DEFAULT_METHODS : methods;
    if (!Array.isArray(methodList) || methodList.length === 0 || !methodList.every((m) => typeof m === "string" && METHODS.has(m))) {
      problems.push(`${at}.methods must be a list of ${[...METHODS].join(", ")}`);
    }
    let parsedCredential: Credential | null = null;
    if (credential === undefined || credential === "assertion") {
      parsedCredential = { mode: "assertion" };
    } else if (credential === "provider-token") {
      if (typeof provider !== "string" || !providerNames.includes(provider)) {
        problems.push(`${at}.provider must name a configured provider (${providerNames.join(", ") || "none configured"})`);
      } else {
        parsedCredential = { mode: "provider-token", provider };
      }
    } else {
      problems.push(`${at}.credential must be "assertion" or "provider-token"`);
    }
    if (problems.length > before || targetURL === null || parsedCredential === null || typeof prefix !== "string") return;
    const base = targetURL.href.endsWith("/") ? targetURL.href : `${targetURL.href}/`;
    routes.push({
      prefix,
      target: base,
      exactTarget: targetURL.href,
      audience: typeof audience === "string" ? audience : targetURL.origin,
      methods: new Set(methodList as string[]),
      credential: parsedCredential,
    });
  });
  if (problems.length > 0) throw new ConfigError(problems);
  return routes;
}

/**
 * The route and upstream URL for a raw request target, or why not. Works on the raw,
 * undecoded path: anything that could climb out of the route's target once decoded or
 * normalised by someone downstream — `..` and `.` segments, empty segments (`//host`),
 * backslashes, encoded `/`, `\`, `.`, `%` (double encoding) or NUL, control characters — is refused, not cleaned
 * up (SECURITY.md D20).
 */
export function resolveUpstream(
  routes: UpstreamRoute[],
  rawTarget: string,
): { route: UpstreamRoute; url: URL } | { refusal: "bad_path" | "no_route" } {
  const queryStart = rawTarget.indexOf("?");
  const path = queryStart === -1 ? rawTarget : rawTarget.slice(0, queryStart);
  const query = queryStart === -1 ? "" : rawTarget.slice(queryStart);
  if (
    !path.startsWith("/") ||
    path.includes("\\") ||
    path.includes("//") ||
    /%(2f|5c|2e|00|25)/i.test(path) ||
    /[\u0000-\u001f\u007f\s]/.test(rawTarget) ||
    /(^|\/)\.\.?(\/|$)/.test(path) ||
    /%(?![0-9a-f]{2})/i.test(path)
  ) {
    return { refusal: "bad_path" };
  }
  const exact = routes.find((r) => path === r.prefix.slice(0, -1));
  if (exact !== undefined) return { route: exact, url: new URL(exact.exactTarget + query) };
  const route = routes.find((r) => path.startsWith(r.prefix));
  if (route === undefined) return { refusal: "no_route" };
  const url = new URL(route.target + path.slice(route.prefix.length) + query);
  // Defence in depth: whatever the string work above missed, the result stays under the target.
  if (!url.href.startsWith(route.target)) return { refusal: "bad_path" };
  return { route, url };
}
