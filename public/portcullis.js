// Portcullis browser client: copy this file into your game. It never sees a token: the
// session lives in an HttpOnly cookie the browser sends by itself, and every WebSocket is
// opened with a one-time ticket fetched just before. Nothing is kept in any browser storage.

/** Close codes of the Portcullis contract. */
export const CloseCode = Object.freeze({
  SESSION_ENDED: 4401, // log in again
  POLICY: 1008, // rate limit or forbidden message: reconnect later
  TOO_BIG: 1009, // message too big: fix the client
  BACKEND_UNAVAILABLE: 1014, // reconnect with a new ticket, with backoff
  GOING_AWAY: 1001, // the BFF is shutting down: reconnect with a new ticket
});

const CSRF = { "X-CSRF": "1" };

/** The logged-in player, or null. */
export async function me() {
  const response = await fetch("/auth/me", { credentials: "same-origin" });
  if (response.status === 401) return null;
  if (!response.ok) throw new Error(`/auth/me answered ${response.status}`);
  return response.json();
}

export async function providers() {
  const response = await fetch("/auth/providers");
  return response.ok ? (await response.json()).providers : [];
}

export function loginURL(provider, returnTo = location.pathname) {
  return `/auth/login/${encodeURIComponent(provider)}?returnTo=${encodeURIComponent(returnTo)}`;
}

export async function logout() {
  await fetch("/auth/logout", { method: "POST", headers: CSRF, credentials: "same-origin" });
}

/**
 * Logs out here and returns the identity provider's logout URL (OIDC RP-Initiated Logout),
 * or null when the provider has none: navigate there to leave the provider too. It sends
 * the player back to this site's front page, signed out of both.
 */
export async function logoutEverywhere() {
  const response = await fetch("/auth/logout?provider=1", { method: "POST", headers: CSRF, credentials: "same-origin" });
  if (response.status !== 200) return null;
  const { providerLogoutURL } = await response.json();
  return typeof providerLogoutURL === "string" ? providerLogoutURL : null;
}

export async function sessions() {
  const response = await fetch("/auth/sessions", { credentials: "same-origin" });
  if (response.status === 401) return null;
  return (await response.json()).sessions;
}

export async function revokeSession(id) {
  const response = await fetch(`/auth/sessions/${encodeURIComponent(id)}`, { method: "DELETE", headers: CSRF, credentials: "same-origin" });
  return response.status === 204;
}

export async function revokeOtherSessions() {
  await fetch("/auth/sessions", { method: "DELETE", headers: CSRF, credentials: "same-origin" });
}

/** Calls a relayed /api route (X-CSRF is required on every /api request, whatever the method). */
export async function api(path, init = {}) {
  return fetch(path, { credentials: "same-origin", ...init, headers: { ...CSRF, ...(init.headers ?? {}) } });
}

/**
 * Connects to the game through the gate and keeps the connection up.
 *
 *   const game = connect({ onMessage, onState });
 *   game.send(JSON.stringify({ type: "move", dx: 1, dy: 0 }));
 *
 * onState(state, detail) gets "connecting" | "connected" | "reconnecting" | "ended" |
 * "error" | "closed". After 4401 it stops for good ("ended": show the login again);
 * after 1014/1001 (and network failures) it reconnects with a fresh ticket and a jittered
 * exponential backoff; 1008/1009 are reported as "error" and retried more slowly.
 */
export function connect({ onMessage, onState = () => {}, path = "/ws", protocol = "game.v1", maxDelayMs = 30_000 } = {}) {
  let socket = null;
  let attempt = 0;
  let stopped = false;
  let timer = null;

  async function open() {
    if (stopped) return;
    onState(attempt === 0 ? "connecting" : "reconnecting", { attempt });
    let ticket;
    try {
      const response = await fetch("/auth/ws-ticket", { method: "POST", headers: CSRF, credentials: "same-origin" });
      if (response.status === 401) return end("session");
      if (!response.ok) throw new Error(`ticket answered ${response.status}`);
      ticket = (await response.json()).ticket;
    } catch {
      return retry();
    }
    const url = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}${path}`;
    // The ticket travels as a subprotocol, never in the URL, so no access log sees it.
    socket = new WebSocket(url, [protocol, `ticket.${ticket}`]);
    socket.binaryType = "arraybuffer";
    socket.addEventListener("open", () => {
      attempt = 0;
      onState("connected", {});
    });
    socket.addEventListener("message", (event) => onMessage?.(event.data));
    socket.addEventListener("close", (event) => {
      socket = null;
      if (stopped) return onState("closed", { code: event.code });
      if (event.code === CloseCode.SESSION_ENDED) return end("session");
      if (event.code === CloseCode.TOO_BIG || event.code === CloseCode.POLICY) {
        onState("error", { code: event.code, reason: event.reason });
        attempt = Math.max(attempt, 3);
      }
      retry(event.code);
    });
  }

  function retry(code) {
    if (stopped) return;
    attempt += 1;
    // Full jitter (AWS architecture blog): spread reconnects so a restart is not a stampede.
    const delay = Math.random() * Math.min(maxDelayMs, 500 * 2 ** attempt);
    onState("reconnecting", { attempt, code, delay });
    timer = setTimeout(open, delay);
  }

  function end(why) {
    stopped = true;
    onState("ended", { why });
  }

  open();
  return {
    send(data) {
      if (socket?.readyState === WebSocket.OPEN) socket.send(data);
    },
    close() {
      stopped = true;
      clearTimeout(timer);
      socket?.close(1000, "bye");
    },
  };
}
export { connectSocketIO } from "./portcullis-socketio.js";
