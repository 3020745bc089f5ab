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
  const problems: string[] = [];
  const routes = readUpstreams(config, providerNames, problems);
  if (problems.length > 0) throw new ConfigError(problems);
  return routes;
}

/** As {@link loadUpstreams}, adding every problem to `problems` (the start-up's one list) instead of throwing. */
export function readUpstreams(config: Config, providerNames: string[], problems: string[]): UpstreamRoute[] {
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
    problems.push(`UPSTREAMS_FILE ${config.upstreamsFile}: ${error instanceof Error ? error.message : String(error)}`);
    return [];
  }
  return collectUpstreams(parsed, providerNames, `UPSTREAMS_FILE ${config.upstreamsFile}`, problems);
}

/** Checks the upstreams file's JSON field by field; throws one {@link ConfigError} listing every problem. */
export function parseUpstreams(value: unknown, providerNames: string[], where: string): UpstreamRoute[] {
  const problems: string[] = [];
  const routes = collectUpstreams(value, providerNames, where, problems);
  if (problems.length > 0) throw new ConfigError(problems);
  return routes;
}

function collectUpstreams(value: unknown, providerNames: string[], where: string, problems: string[]): UpstreamRoute[] {
  const routes: UpstreamRoute[] = [];
  const seenPrefixes = new Set<string>();
  const list = isRecord(value) ? value.routes : undefined;
  if (!Array.isArray(list) || list.length === 0) {
    problems.push(`${where}: expected {"routes": [ … ]} with at least one route`);
    return [];
  }
  list.forEach((entry: unknown, index) => {
    const at = `${where} routes[${index}]`;
    if (!isRecord(entry)) {
      problems.push(`${at}: not an object`);
      return;
    }
    const { prefix, target, audience, methods, credential, provider } = entry;
    const before = problems.length;
    for (const key of Object.keys(entry)) {
      // A misspelt key ("credentials", "method") would otherwise silently fall back to a default.
      if (!ROUTE_KEYS.has(key)) problems.push(`${at}: unknown key "${key}"`);
    }
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
    if (
      targetURL === null ||
      (targetURL.protocol !== "http:" && targetURL.protocol !== "https:") ||
      targetURL.search !== "" ||
      targetURL.hash !== "" ||
      targetURL.username !== "" ||
      targetURL.password !== ""
    ) {
      problems.push(`${at}.target must be an http(s):// URL without query, fragment or credentials`);
    }
    if (audience !== undefined && (typeof audience !== "string" || audience === "")) {
      problems.push(`${at}.audience must be a non-empty string`);
    }
    const methodList = parseMethods(methods);
    if (methodList === null) {
      problems.push(`${at}.methods must be a non-empty list of ${[...METHODS].join(", ")}`);
    }
    let parsedCredential: Credential | null = null;
    if (credential === undefined || credential === "assertion") {
      parsedCredential = { mode: "assertion" };
      if (provider !== undefined) problems.push(`${at}.provider only goes with "credential": "provider-token"`);
    } else if (credential === "provider-token") {
      if (typeof provider !== "string" || !providerNames.includes(provider)) {
        problems.push(`${at}.provider must name a configured provider (${providerNames.join(", ") || "none configured"})`);
      } else {
        parsedCredential = { mode: "provider-token", provider };
      }
    } else {
      problems.push(`${at}.credential must be "assertion" or "provider-token"`);
    }
    if (problems.length > before || targetURL === null || parsedCredential === null || methodList === null || typeof prefix !== "string") return;
    const base = targetURL.href.endsWith("/") ? targetURL.href : `${targetURL.href}/`;
    routes.push({
      prefix,
      target: base,
      exactTarget: targetURL.href,
      audience: typeof audience === "string" ? audience : targetURL.origin,
      methods: new Set(methodList),
      credential: parsedCredential,
    });
  });
  return routes;
}

/** What {@link resolveUpstream} needs of a route; WebSocket routes (`ws/routes.ts`) share it. */
export type PrefixRoute = Pick<UpstreamRoute, "prefix" | "target" | "exactTarget">;

/** Why a raw request target was not relayed: a 400 (`bad_path`) or a 404 (`no_route`). */
export type UpstreamRefusal = "bad_path" | "no_route";

/**
 * The route and upstream URL for a raw, undecoded request target (`/api/game/x?y=1`), or
 * why not (SECURITY.md D20). Hostile paths are refused, never cleaned up: a path that
 * "normalises" to something harmless here may be read differently by the upstream's own
 * framework (Tomcat's `..;`, IIS's backslashes, a double decode), so the only safe answer
 * to anything ambiguous is 400. Refused, on the raw bytes:
 *
 * - anything that is not printable ASCII (controls, spaces, NUL, raw UTF-8): RFC 3986
 *   section 2 wants those percent-encoded, so only a tool or an attacker sends them raw;
 * - backslashes, `#`, empty segments (`//host`) and malformed `%` escapes;
 *
 * and, per segment, once decoded and NFKC-normalised (the decode the upstream will do, and
 * the Unicode folding some do after it: `%EF%BC%8E` is a full-width dot): `.` and `..`,
 * also with `;parameters` (`..;` climbs in Tomcat), and any `/`, `\`, `%` (a second round
 * of decoding), or control character.
 */
export function resolveUpstream<R extends PrefixRoute>(routes: R[], rawTarget: string): { route: R; url: URL } | { refusal: UpstreamRefusal } {
  const queryStart = rawTarget.indexOf("?");
  const path = queryStart === -1 ? rawTarget : rawTarget.slice(0, queryStart);
  const query = queryStart === -1 ? "" : rawTarget.slice(queryStart);
  if (!path.startsWith("/") || /[^\x21-\x7e]|#/.test(rawTarget) || /\\|%(?![0-9a-f]{2})/i.test(path)) {
    return { refusal: "bad_path" };
  }
  const segments = path.slice(1).split("/");
  // The last segment may be empty (`/api/game/`), no other may be.
  if (segments.slice(0, -1).some((segment) => segment === "") || !segments.every(isHarmlessSegment)) {
    return { refusal: "bad_path" };
  }
  const exact = routes.find((r) => path === r.prefix.slice(0, -1));
  if (exact !== undefined) return { route: exact, url: new URL(exact.exactTarget + query) };
  // The longest prefix wins, so `/api/game/admin/` can be its own route beside `/api/game/`.
  const route = routes.filter((r) => path.startsWith(r.prefix)).sort((a, b) => b.prefix.length - a.prefix.length)[0];
  if (route === undefined) return { refusal: "no_route" };
  const url = new URL(route.target + path.slice(route.prefix.length) + query);
  // Defence in depth: whatever the checks above missed, the result stays under the target.
  if (!url.href.startsWith(route.target)) return { refusal: "bad_path" };
  return { route, url };
}

function isHarmlessSegment(raw: string): boolean {
  let decoded: string;
  try {
    decoded = decodeURIComponent(raw);
  } catch {
    // Percent escapes that are not UTF-8 (`%c0%ae`, the overlong dot): refuse.
    return false;
  }
  for (const form of [decoded, decoded.normalize("NFKC")]) {
    const name = form.split(";")[0] ?? "";
    if (name === "." || name === ".." || /[\/\\%\u0000-\u001f\u007f]/.test(form)) return false;
  }
  return true;
}

const ROUTE_KEYS = new Set(["prefix", "target", "audience", "methods", "credential", "provider"]);

function parseMethods(value: unknown): string[] | null {
  if (value === undefined) return DEFAULT_METHODS;
  if (!Array.isArray(value) || value.length === 0) return null;
  const methods: string[] = [];
  for (const item of value) {
    if (typeof item !== "string" || !METHODS.has(item)) return null;
    methods.push(item);
  }
  return methods;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
