import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import { Socket } from "node:net";
import { acceptKey } from "./frames";
import { secureRandomBytes } from "../clock";

export interface BackendHandshakeOptions {
  /** `http(s)://…` of the backend's WebSocket: the route's target, with the browser's path rest and query. */
  url: string | URL;
  /** The one subprotocol offered, and required in the answer; null: none offered, none accepted. */
  protocol: string | null;
  /** The `Authorization` header: the BFF's identity assertion. */
  authorization: string;
  timeoutMs: number;
  /** The browser's upgrade's request id (X-Request-Id), so the backend's logs can be joined with ours. */
  requestId: string;
}

export interface BackendHandshakeEvents {
  /** The backend answered 101 as RFC 6455 4.1 requires; `head` holds any frames it sent right after. */
  open(socket: Socket, head: Buffer): void;
  /**
   * The backend refused, failed or timed out; the attempt is already torn down. `reason`
   * says what happened, for the audit log: its status, a timeout, a refused connection.
   */
  fail(reason: string): void;
}

/**
 * Opens the backend's WebSocket as a client (RFC 6455 4.1) and hands over the raw socket,
 * so that the relay can pass frames through without parsing them. Exactly one event fires,
 * unless the returned abort function is called first, after which none does. A redirect or
 * any other non-101 answer is a failure, never followed (fail closed).
 */
export function openBackendSocket(options: BackendHandshakeOptions, events: BackendHandshakeEvents): () => void {
  // RFC 6455 4.1: a random 16-byte nonce, base64-encoded. It only proves the answer is a
  // WebSocket server's; it protects nothing secret.
  const key = secureRandomBytes(16).toString("base64");
  const url = new URL(options.url);
  const request = (url.protocol === "https:" ? httpsRequest : httpRequest)(url, {
    method: "GET",
    // A fresh connection of its own: an upgraded socket never returns to a pool.
    agent: false,
    headers: {
      Connection: "Upgrade",
      Upgrade: "websocket",
      "Sec-WebSocket-Version": "13",
      "Sec-WebSocket-Key": key,
      // RFC 6455 4.1: with no subprotocol the header is left out, not sent empty.
      ...(options.protocol === null ? {} : { "Sec-WebSocket-Protocol": options.protocol }),
      Authorization: options.authorization,
      "X-Request-Id": options.requestId,
    },
  });
  let settled = false;
  const settle = (): boolean => {
    if (settled) return false;
    settled = true;
    clearTimeout(timer);
    return true;
  };
  const fail = (reason: string): void => {
    if (!settle()) return;
    request.destroy();
    events.fail(reason);
  };
  const timer = setTimeout(() => fail(`backend handshake timed out after ${options.timeoutMs} ms`), options.timeoutMs);
  timer.unref();

  request.on("error", (error) => fail(connectionFailure(error)));
  request.on("response", (response) => {
    response.resume();
    fail(`backend answered ${response.statusCode ?? "?"}`);
  });
  request.on("upgrade", (response, socket, head) => {
    const problem = handshakeProblem(response, key, options.protocol);
    if (settled || problem !== null || !(socket instanceof Socket)) {
      socket.destroy();
      fail(problem ?? "backend handshake abandoned");
      return;
    }
    settle();
    events.open(socket, head);
  });
  request.end();

  return function abort() {
    if (settle()) request.destroy();
  };
}

/** What is wrong with a 101 answer (RFC 6455 4.1, the client's checks), or null. */
function handshakeProblem(response: IncomingMessage, key: string, protocol: string | null): string | null {
  const header = (name: string): string | undefined => {
    const value = response.headers[name];
    return Array.isArray(value) ? value[0] : value;
  };
  if (response.statusCode !== 101) return `backend answered ${response.statusCode ?? "?"}`;
  if (header("upgrade")?.toLowerCase() !== "websocket") return "backend upgraded to something else";
  if (header("sec-websocket-accept") !== acceptKey(key)) return "backend sent a wrong Sec-WebSocket-Accept";
  // RFC 6455 4.1: the answer names one of the offered subprotocols, or none if none was offered.
  if (header("sec-websocket-protocol") !== (protocol ?? undefined)) return "backend chose another subprotocol";
  // None was offered, so none may be in force: the relay reads RSV bits as errors.
  if (header("sec-websocket-extensions") !== undefined) return "backend chose an extension";
  return null;
}

/**
 * What went wrong below HTTP, in words an operator can act on: a refused connection is a
 * backend that is down or on another port, a reset one that hung up mid-handshake.
 */
function connectionFailure(error: Error): string {
  const code = "code" in error && typeof error.code === "string" ? error.code : "";
  switch (code) {
    case "ECONNREFUSED":
      return "backend refused the connection (ECONNREFUSED)";
    case "ECONNRESET":
    case "EPIPE":
      return `backend closed the connection during the handshake (${code})`;
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return `backend host not found (${code})`;
    case "ETIMEDOUT":
    case "EHOSTUNREACH":
    case "ENETUNREACH":
      return `backend unreachable (${code})`;
    default:
      return code === "" ? `backend connection failed: ${error.message}` : `backend connection failed (${code})`;
  }
}
