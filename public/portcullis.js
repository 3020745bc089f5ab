/**
 * portcullis.js — the browser side of a Portcullis WebSocket, in one file a studio can copy.
 *
 * The page never holds a token. It asks the BFF for a one-time ticket (a same-origin POST
 * that carries the HttpOnly session cookie by itself), and offers that ticket as a
 * WebSocket subprotocol: it never goes into the URL, so it never reaches an access log.
 * Close codes follow CONTRACT.md:
 *
 *   4401        the session ended (logout, revoked, expired): stop, report "ended"
 *   1014, 1001  backend unreachable / BFF restarting: reconnect with a new ticket, backoff
 *   1006        no close frame (the gate refused the upgrade, the network dropped): same
 *   1008        policy (rate limit): report "refused", reconnect later with backoff
 *   1009        message too big: report "refused" and stop; the client must be fixed
 *   other       the game backend's own code: report "closed" and stop
 *
 * Usage:
 *
 *   import { connect } from "./portcullis.js";
 *   const game = connect({
 *     onMessage(data) { … },                       // every message, text or binary
 *     onState(state, detail) { … },                // see STATES below
 *   });
 *   game.send(JSON.stringify({ type: "move", dx: 1, dy: 0 }));
 *   game.close();                                  // stops for good
 */

/**
 * "connecting"   fetching a ticket and opening the socket (detail.attempt)
 * "connected"    open; detail.protocol is the negotiated subprotocol
 * "reconnecting" waiting detail.delayMs before the next try (detail.code, detail.reason)
 * "refused"      closed by policy (1008, 1009); detail.code, detail.willRetry
 * "ended"        the session is over: log in again (4401, or the ticket was refused with 401)
 * "closed"       stopped: by close(), or by a close code of the game's own (detail.code)
 */
export const STATES = Object.freeze(["connecting", "connected", "reconnecting", "refused", "ended", "closed"]);

const SESSION_ENDED = 4401;
const RECONNECT_CODES = new Set([1001, 1006, 1014]);
const POLICY = 1008;
const TOO_BIG = 1009;

/**
 * @param {object} options
 * @param {(data: string | ArrayBuffer, event: MessageEvent) => void} options.onMessage
 * @param {(state: string, detail: object) => void} [options.onState]
 * @param {string} [options.url]          the WebSocket URL; default: this origin as ws(s) + "/ws"
 * @param {string} [options.ticketURL]    default "/auth/ws-ticket"
 * @param {string} [options.protocol]     the game subprotocol; default "game.v1"
 * @param {number} [options.initialDelayMs] first backoff step; default 500
 * @param {number} [options.maxDelayMs]   backoff ceiling; default 15000
 * @param {() => number} [options.random] for tests; default Math.random
 * @returns {{ send(data: string | ArrayBufferLike | Blob | ArrayBufferView): boolean, close(): void, readonly state: string }}
 */
export function connect(options) {
  const onMessage = options.onMessage;
  const onState = options.onState ?? (() => {});
  const url = options.url ?? `${location.origin.replace(/^http/, "ws")}/ws`;
  const ticketURL = options.ticketURL ?? "/auth/ws-ticket";
  const protocol = options.protocol ?? "game.v1";
  const initialDelayMs = options.initialDelayMs ?? 500;
  const maxDelayMs = options.maxDelayMs ?? 15_000;
  const random = options.random ?? Math.random;

  let socket = null;
  let timer = null;
  let attempt = 0;
  let stopped = false;
  let state = "closed";

  function report(next, detail = {}) {
    state = next;
    onState(next, detail);
  }

  function stop(next, detail) {
    stopped = true;
    clearTimeout(timer);
    report(next, detail);
  }

  /**
   * Exponential backoff with "equal jitter": half the step is fixed, half random, so a
   * thousand clients dropped by one restart do not all come back in the same instant,
   * and none comes back at once.
   */
  function retry(detail, floorMs = 0) {
    if (stopped) return;
    const step = Math.min(maxDelayMs, initialDelayMs * 2 ** attempt);
    const delayMs = Math.max(floorMs, Math.round(step / 2 + (random() * step) / 2));
    attempt += 1;
    report("reconnecting", { ...detail, delayMs, attempt });
    timer = setTimeout(open, delayMs);
  }

  async function fetchTicket() {
    // X-CSRF plus the browser's own Origin / Sec-Fetch-Site is what the CSRF check wants.
    const response = await fetch(ticketURL, {
      method: "POST",
      headers: { "X-CSRF": "1" },
      credentials: "same-origin",
      cache: "no-store",
    });
    if (response.status === 401) return { ended: true };
    if (!response.ok) {
      const retryAfter = Number(response.headers.get("Retry-After"));
      return { failed: response.status, floorMs: Number.isFinite(retryAfter) ? retryAfter * 1000 : 0 };
    }
    const body = await response.json();
    if (typeof body !== "object" || body === null || typeof body.ticket !== "string") {
      return { failed: response.status, floorMs: 0 };
    }
    return { ticket: body.ticket };
  }

  async function open() {
    if (stopped) return;
    report("connecting", { attempt });
    let result;
    try {
      result = await fetchTicket();
    } catch {
      result = { failed: 0, floorMs: 0 };
    }
    if (stopped) return;
    if (result.ended) {
      stop("ended", { code: SESSION_ENDED, reason: "the ticket was refused: no session" });
      return;
    }
    if (result.ticket === undefined) {
      retry({ status: result.failed }, result.floorMs);
      return;
    }

    const ws = new WebSocket(url, [protocol, `ticket.${result.ticket}`]);
    ws.binaryType = "arraybuffer";
    socket = ws;
    ws.addEventListener("open", () => {
      if (socket !== ws) return;
      attempt = 0;
      report("connected", { protocol: ws.protocol });
    });
    ws.addEventListener("message", (event) => {
      if (socket === ws) onMessage(event.data, event);
    });
    ws.addEventListener("close", (event) => {
      if (socket !== ws) return;
      socket = null;
      if (stopped) return;
      const detail = { code: event.code, reason: event.reason };
      if (event.code === SESSION_ENDED) {
        stop("ended", detail);
      } else if (RECONNECT_CODES.has(event.code)) {
        retry(detail);
      } else if (event.code === POLICY) {
        report("refused", { ...detail, willRetry: true });
        // "Reconnect later": a rate limit is not helped by coming straight back.
        retry(detail, 5_000);
      } else if (event.code === TOO_BIG) {
        stop("refused", { ...detail, willRetry: false });
      } else {
        stop("closed", detail);
      }
    });
  }

  open();

  return {
    send(data) {
      if (socket === null || socket.readyState !== WebSocket.OPEN) return false;
      socket.send(data);
      return true;
    },
    close() {
      if (stopped) return;
      const ws = socket;
      socket = null;
      stop("closed", { code: 1000, reason: "closed by the page" });
      ws?.close(1000);
    },
    get state() {
      return state;
    },
  };
}

/*
 * The session routes of CONTRACT.md, for pages that want them. Every call is same-origin
 * and lets the browser send the HttpOnly cookie; nothing here ever sees a token.
 * State-changing calls carry X-CSRF: 1.
 */

async function request(path, method = "GET") {
  const headers = method === "GET" ? {} : { "X-CSRF": "1" };
  return fetch(path, { method, headers, credentials: "same-origin", cache: "no-store" });
}

/** `GET /auth/me`: `{user, session}`, or null when not logged in. */
export async function me() {
  const response = await request("/auth/me");
  return response.ok ? response.json() : null;
}

/** `GET /auth/providers`: `[{name, label}]`. */
export async function providers() {
  const response = await request("/auth/providers");
  if (!response.ok) return [];
  const body = await response.json();
  return Array.isArray(body?.providers) ? body.providers : [];
}

/** The link that starts a login; `returnTo` must be a same-origin path. */
export function loginURL(provider, returnTo = "/") {
  return `/auth/login/${encodeURIComponent(provider)}?returnTo=${encodeURIComponent(returnTo)}`;
}

/** `GET /auth/sessions`: the list, or null when the session has ended. */
export async function sessions() {
  const response = await request("/auth/sessions");
  if (!response.ok) return null;
  const body = await response.json();
  return Array.isArray(body?.sessions) ? body.sessions : [];
}

/** `DELETE /auth/sessions/:id`; true when revoked. */
export async function revokeSession(id) {
  const response = await request(`/auth/sessions/${encodeURIComponent(id)}`, "DELETE");
  return response.status === 204;
}

/** `DELETE /auth/sessions`: every other session of this account. */
export async function revokeOtherSessions() {
  const response = await request("/auth/sessions", "DELETE");
  return response.status === 204;
}

/** `POST /auth/logout`. */
export async function logout() {
  const response = await request("/auth/logout", "POST");
  return response.status === 204;
}
