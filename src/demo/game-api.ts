import type { IncomingMessage, ServerResponse } from "node:http";
import { AssertionError, type AssertionVerifier } from "./verify-assertion";

/**
 * A request handler for the demo game's HTTP server: true when it answered. The demo game
 * server (src/demo/game.ts) passes its own verifier as the third argument.
 */
export type GameAPIHandler = (req: IncomingMessage, res: ServerResponse, verifier?: AssertionVerifier) => boolean;

const SCORE_BODY_LIMIT = 4096;
const MAX_SCORE = 1_000_000;

/**
 * The demo game's small HTTP API behind Portcullis' /api/game/: `GET /api/game/profile` and
 * `POST /api/game/score`. Like the WebSocket side it trusts only the identity assertion in
 * `Authorization`, verified against the BFF's JWKS; it never sees a cookie, and what the
 * body says about who the player is does not count.
 *
 * `verifier` is the one to use; without it, the handler uses the one the game server hands
 * it per request (the game's verifier pins its own origin as the audience, known only once
 * it listens). With neither, it answers 503.
 */
export function createGameAPI(verifier?: AssertionVerifier): GameAPIHandler {
  const scores = new Map<string, { best: number; plays: number }>();

  return function gameAPI(req, res, serverVerifier) {
    const path = (req.url ?? "").split("?")[0];
    if (path !== "/api/game/profile" && path !== "/api/game/score") return false;
    const check = verifier ?? serverVerifier;
    if (check === undefined) {
      send(res, 503, { error: "unavailable", message: "the game is still starting" });
      return true;
    }
    check
      .verifyAuthorization(req.headers.authorization)
      .then(async (identity) => {
        const record = scores.get(identity.sub) ?? { best: 0, plays: 0 };
        if (path === "/api/game/profile" && (req.method === "GET" || req.method === "HEAD")) {
          return send(res, 200, { id: identity.sub, name: identity.name, session: identity.sid, ...record });
        }
        if (path === "/api/game/score" && req.method === "POST") {
          const score = parseScore(await readSmallBody(req));
          if (score === null) return send(res, 400, { error: "bad_request", message: `send {"score": <whole number 0–${MAX_SCORE}>}` });
          const next = { best: Math.max(record.best, score), plays: record.plays + 1 };
          scores.set(identity.sub, next);
          return send(res, 200, { id: identity.sub, ...next });
        }
        return send(res, 405, { error: "method_not_allowed", message: "method not allowed" });
      })
      .catch((error: unknown) => {
        if (error instanceof AssertionError) return send(res, 401, { error: "unauthorized", message: error.message });
        if (error instanceof BodyTooLargeError) {
          // The unread rest of the body is still on the wire: do not reuse this connection.
          res.setHeader("connection", "close");
          return send(res, 413, { error: "too_large", message: error.message });
        }
        return send(res, 500, { error: "server_error", message: "something went wrong" });
      });
    return true;
  };
}

class BodyTooLargeError extends Error {
  constructor() {
    super(`the body is larger than ${SCORE_BODY_LIMIT} bytes`);
    this.name = "BodyTooLargeError";
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return;
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" });
  res.end(JSON.stringify(body));
}

function readSmallBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > SCORE_BODY_LIMIT) {
        // Stop reading, answer 413; the rest of the body is dropped with the connection.
        req.pause();
        reject(new BodyTooLargeError());
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

/** `{"score": n}` with a whole n in 0…1 000 000, narrowed from `unknown`; else null. */
function parseScore(text: string): number | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof value !== "object" || value === null || Array.isArray(value) || !("score" in value)) return null;
  const score: unknown = value.score;
  return typeof score === "number" && Number.isInteger(score) && score >= 0 && score <= MAX_SCORE ? score : null;
}
