import * as portcullis from "/portcullis.js";

const $ = (id) => document.getElementById(id);
const statusEl = $("status");
const canvas = $("arena");
const ctx = canvas.getContext("2d");
const COLORS = ["#f4b942", "#5ec8f2", "#f26d85", "#7ee081", "#b48cf2", "#f2935e", "#5ef2c6", "#e0e07e"];

const state = { me: null, you: null, players: new Map(), arena: { width: 960, height: 540 }, game: null, sessionTimer: null };

const STATUS_TEXT = {
  idle: "not connected",
  connecting: "connecting…",
  connected: "connected",
  reconnecting: "reconnecting…",
  error: "connection problem",
  ended: "session ended",
  closed: "disconnected",
};

function setStatus(name, detail = "") {
  statusEl.dataset.state = name;
  statusEl.textContent = detail ? `${STATUS_TEXT[name]} (${detail})` : STATUS_TEXT[name];
}

async function showLogin(ended) {
  $("game-view").hidden = true;
  $("who").hidden = true;
  $("login-view").hidden = false;
  $("ended").hidden = !ended;
  // Built first and swapped in at once: two calls in a row must not list each provider twice.
  const links = (await portcullis.providers()).map((provider) => {
    const link = document.createElement("a");
    link.className = "provider";
    link.href = portcullis.loginURL(provider.name, "/");
    link.textContent = `Log in with ${provider.label}`;
    return link;
  });
  $("providers").replaceChildren(...links);
}

function showGame() {
  $("login-view").hidden = true;
  $("game-view").hidden = false;
  $("who").hidden = false;
  $("player-name").textContent = state.me.user.displayName;
  // "Log out of Demo ID too": named after the provider the player logged in with.
  const provider = state.me.user.provider;
  portcullis.providers().then((list) => {
    const label = list.find((p) => p.name === provider)?.label ?? provider;
    if (state.me?.user.provider === provider) $("logout-provider").textContent = `Log out of ${label} too`;
  });
}

function sessionEnded() {
  state.game?.close();
  state.game = null;
  clearInterval(state.sessionTimer);
  clearGame();
  setStatus("ended");
  showLogin(true);
}

/** Forget everything the last player saw, so nothing of theirs is left for the next one. */
function clearGame() {
  state.me = null;
  state.you = null;
  state.players.clear();
  stopMoving();
  $("player-name").textContent = "";
  $("roster").replaceChildren();
  $("chat-log").replaceChildren();
  $("sessions").replaceChildren();
  $("chat-input").value = "";
}

function onMessage(data) {
  // A late message of a game that just ended must not bring its players back.
  if (typeof data !== "string" || state.me === null) return;
  let message;
  try {
    message = JSON.parse(data);
  } catch {
    return;
  }
  switch (message.type) {
    case "welcome":
      state.you = message.you.id;
      state.arena = message.arena;
      state.players = new Map(message.players.map((p) => [p.id, p]));
      break;
    case "join":
      state.players.set(message.player.id, message.player);
      break;
    case "leave":
      state.players.delete(message.id);
      break;
    case "move": {
      const player = state.players.get(message.id);
      if (player) Object.assign(player, { x: message.x, y: message.y });
      break;
    }
    case "chat":
      addChat(message.name, message.text);
      break;
    default:
      return;
  }
  renderRoster();
}

function addChat(name, text) {
  const item = document.createElement("li");
  const from = document.createElement("span");
  from.className = "from";
  from.textContent = name;
  item.append(from, document.createTextNode(text));
  $("chat-log").append(item);
  item.scrollIntoView({ block: "end" });
}

function renderRoster() {
  const roster = $("roster");
  roster.replaceChildren(
    ...[...state.players.values()].map((p) => {
      const item = document.createElement("li");
      item.dataset.name = p.name;
      // "Sam (2)": the account's second session or tab (the game backend numbers them).
      item.dataset.label = p.label ?? p.name;
      item.dataset.x = String(p.x);
      item.dataset.y = String(p.y);
      const swatch = document.createElement("span");
      swatch.className = `swatch c${Math.max(0, COLORS.indexOf(p.color))}`;
      item.append(swatch, document.createTextNode(p.id === state.you ? `${p.label ?? p.name} (you)` : (p.label ?? p.name)));
      return item;
    }),
  );
}

function draw() {
  const { width, height } = state.arena;
  if (canvas.width !== width) canvas.width = width;
  if (canvas.height !== height) canvas.height = height;
  ctx.fillStyle = "#0d0a1f";
  ctx.fillRect(0, 0, width, height);
  ctx.strokeStyle = "#ffffff0d";
  ctx.lineWidth = 1;
  for (let x = 0; x <= width; x += 40) {
    ctx.beginPath();
    ctx.moveTo(x + 0.5, 0);
    ctx.lineTo(x + 0.5, height);
    ctx.stroke();
  }
  for (let y = 0; y <= height; y += 40) {
    ctx.beginPath();
    ctx.moveTo(0, y + 0.5);
    ctx.lineTo(width, y + 0.5);
    ctx.stroke();
  }
  for (const p of state.players.values()) {
    ctx.beginPath();
    ctx.fillStyle = p.color;
    ctx.shadowColor = p.color;
    ctx.shadowBlur = p.id === state.you ? 22 : 10;
    ctx.arc(p.x, p.y, p.id === state.you ? 14 : 12, 0, Math.PI * 2);
    ctx.fill();
    ctx.shadowBlur = 0;
    ctx.fillStyle = "#f3eefc";
    ctx.font = "600 15px system-ui, sans-serif";
    ctx.textAlign = "center";
    ctx.fillText(p.label ?? p.name, p.x, p.y - 22);
  }
  requestAnimationFrame(draw);
}

const KEYS = { ArrowUp: [0, -1], ArrowDown: [0, 1], ArrowLeft: [-1, 0], ArrowRight: [1, 0], w: [0, -1], s: [0, 1], a: [-1, 0], d: [1, 0] };
let lastMove = 0;
function onKey(event) {
  if (event.target instanceof HTMLInputElement) return;
  const step = KEYS[event.key] ?? KEYS[event.key.toLowerCase?.()];
  if (!step) return;
  event.preventDefault();
  move(step);
}

function move(step) {
  // Stay well under the relay's 50 messages/s.
  const now = performance.now();
  if (now - lastMove < 40) return;
  lastMove = now;
  state.game?.send(JSON.stringify({ type: "move", dx: step[0], dy: step[1] }));
}

// On-screen arrows for phones: a press moves once, holding repeats until the finger lifts.
const DIRECTIONS = { up: [0, -1], down: [0, 1], left: [-1, 0], right: [1, 0] };
let holding = null;
function stopMoving() {
  clearInterval(holding);
  holding = null;
}
for (const button of $("touch").querySelectorAll("button[data-dir]")) {
  const step = DIRECTIONS[button.dataset.dir];
  button.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    button.setPointerCapture?.(event.pointerId);
    stopMoving();
    move(step);
    holding = setInterval(() => move(step), 80);
  });
  for (const end of ["pointerup", "pointercancel", "lostpointercapture"]) button.addEventListener(end, stopMoving);
  // Enter or Space on a focused arrow (a click without a pointer) moves once too.
  button.addEventListener("click", (event) => {
    if (event.detail === 0) move(step);
  });
  button.addEventListener("contextmenu", (event) => event.preventDefault());
}

async function refreshSessions() {
  const list = await portcullis.sessions();
  // Answered after a logout: the list belongs to the player who left.
  if (state.me === null) return;
  if (list === null) return sessionEnded();
  $("sessions").replaceChildren(
    ...list.map((s) => {
      const item = document.createElement("li");
      const label = document.createElement("span");
      label.className = "ua";
      label.title = s.userAgent;
      label.textContent = `${describeAgent(s.userAgent)} · ${new Date(s.createdAt).toLocaleTimeString()}`;
      item.append(label);
      if (s.current) {
        const mine = document.createElement("span");
        mine.className = "this";
        mine.textContent = "this session";
        item.append(mine);
      } else {
        const revoke = document.createElement("button");
        revoke.className = "ghost small revoke";
        revoke.type = "button";
        revoke.dataset.session = s.id;
        revoke.textContent = "Revoke";
        revoke.addEventListener("click", async () => {
          await portcullis.revokeSession(s.id);
          refreshSessions();
        });
        item.append(revoke);
      }
      return item;
    }),
  );
}

function describeAgent(ua) {
  const browser = /Firefox\//.test(ua) ? "Firefox" : /Edg\//.test(ua) ? "Edge" : /Chrome\//.test(ua) ? "Chrome" : /Safari\//.test(ua) ? "Safari" : "Browser";
  const os = /Windows/.test(ua) ? "Windows" : /Mac OS/.test(ua) ? "macOS" : /Android/.test(ua) ? "Android" : /iPhone|iPad/.test(ua) ? "iOS" : /Linux/.test(ua) ? "Linux" : "";
  return os ? `${browser} on ${os}` : browser;
}

async function start() {
  state.me = await portcullis.me();
  if (state.me === null) {
    setStatus("idle");
    return showLogin(false);
  }
  showGame();
  state.game = portcullis.connect({
    onMessage,
    onState: (name, detail) => {
      if (name === "ended") return sessionEnded();
      setStatus(name, detail?.code ? `code ${detail.code}` : "");
    },
  });
  refreshSessions();
  state.sessionTimer = setInterval(refreshSessions, 15_000);
}

$("logout").addEventListener("click", async () => {
  state.game?.close();
  await portcullis.logout();
  sessionEnded();
  $("ended").hidden = true;
  setStatus("idle");
});
$("logout-provider").addEventListener("click", async () => {
  state.game?.close();
  const url = await portcullis.logoutEverywhere();
  if (url !== null) {
    location.assign(url);
    return;
  }
  sessionEnded();
  $("ended").hidden = true;
  setStatus("idle");
});
$("revoke-others").addEventListener("click", async () => {
  await portcullis.revokeOtherSessions();
  refreshSessions();
});
$("chat-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("chat-input");
  const text = input.value.trim();
  if (text) state.game?.send(JSON.stringify({ type: "chat", text }));
  input.value = "";
});
canvas.tabIndex = 0;
canvas.addEventListener("click", () => canvas.focus());
window.addEventListener("keydown", onKey);
requestAnimationFrame(draw);
start();
