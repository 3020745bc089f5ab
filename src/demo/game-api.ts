import type { IncomingMessage, ServerResponse } from "node:http";
import { AssertionError, type AssertionVerifier } from "./verify-assertion";

/**
 * The demo game's small HTTP API behind Portcullis' /api/game/: `GET /api/game/profile` and
 * `POST /api/game/score`. Like the WebSocket side it trusts only the identity assertion in
 * `Authorization`, verified against the BFF's JWKS.
 */
export function createGameAPI(): (req: IncomingMessage, res: ServerResponse, verifier: AssertionVerifier) => boolean {
  const scores = new Map<string, { best: number; plays: number }>();

  return function gameAPI(req, res, verifier) {
    const path = (req.url ?? "").split("?")[0];
    if (path !== "/api/game/profile" && path !== "/api/game/score") return false;
    verifier
      .verifyAuthorization(req.headers.authorization)
      .then(async (identity) => {
        const record = scores.get(identity.sub) ?? { best: 0, plays: 0 };
        if (path === "/api/game/profile" && (req.method === "GET" || req.method === "HEAD")) {
          return send(res, 200, { id: identity.sub, name: identity.name, session: identity.sid, ...record });
        }
        if (path === "/api/game/score" && req.method === "POST") {
          const score = parseScore(await readSmallBody(req));
          if (score === null) return send(res, 400, { error: "bad_request", message: 'send {"score": <whole number 0–1000000>}' });
          const next = { best: Math.max(record.best, score), plays: record.plays + 1 };
          scores.set(identity.sub, next);
          return send(res, 200, { id: identity.sub, ...next });
        }
        return send(res, 405, { error: "method_not_allowed", message: "method not allowed" });
      })
      .catch((error: unknown) => {
        if (error instanceof AssertionError) return send(res, 401, { error: "unauthorized", message: error.message });
        return send(res, 500, { error: "server_error", message: "error" });
      });
    return true;
  };
}

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" });
  res.end(JSON.stringify(body));
}

function readSmallBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    req.setEncoding("utf8");
    req.on("data", (chunk: string) => {
      text += chunk;
      if (text.length > 4096) req.destroy(new Error("body too large"));
    });
    req.on("end", () => resolve(text));
    req.on("error", reject);
  });
}

function parseScore(text: string): number | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  const score = typeof value === "object" && value !== null ? (value as { score?: unknown }).score : undefined;
  return typeof score === "number" && Number.isInteger(score) && score >= 0 && score <= 1_000_000 ? score : null;
}
