import { io } from "/vendor/socket.io.esm.min.js";
import * as portcullis from "/portcullis.js";

const $ = (id) => document.getElementById(id);
const statusEl = $("status");

// What the status pill says for each state of connectSocketIO().
const LABELS = new Map([
  ["idle", "not connected"],
  ["connecting", "joining the lobby…"],
  ["connected", "in the lobby"],
  ["reconnecting", "rejoining…"],
  ["error", "connection problem"],
  ["ended", "session ended"],
  ["refused", "refused by the game"],
  ["closed", "left the lobby"],
]);

function showState(state, note) {
  statusEl.dataset.state = state;
  statusEl.textContent = note === undefined ? LABELS.get(state) : `${LABELS.get(state)} — ${note}`;
}

function toggleViews(loggedIn) {
  for (const [id, visible] of [["login-view", !loggedIn], ["lobby-view", loggedIn], ["who", loggedIn]]) $(id).hidden = !visible;
}

async function showLogin(notice) {
  toggleViews(false);
  Object.assign($("notice"), { hidden: notice === undefined, textContent: notice ?? "" });
  const links = (await portcullis.providers()).map(({ name, label }) =>
    Object.assign(document.createElement("a"), { className: "provider", href: portcullis.loginURL(name, "/lobby.html"), textContent: `Log in with ${label}` }),
  );
  $("providers").replaceChildren(...links);
}

function addMessage({ name, text, at }) {
  const item = document.createElement("li");
  const from = document.createElement("span");
  from.className = "from";
  from.textContent = name;
  item.append(from, document.createTextNode(text));
  item.title = at;
  $("chat-log").append(item);
  item.scrollIntoView({ block: "end" });
}

function showRoster(online) {
  $("roster").replaceChildren(
    ...online.map((name) => {
      const item = document.createElement("li");
      item.dataset.name = name;
      item.textContent = name;
      return item;
    }),
  );
}

async function start() {
  const me = await portcullis.me();
  if (me === null) return showLogin();
  toggleViews(true);
  $("player-name").textContent = me.user.displayName;

  const socket = portcullis.connectSocketIO(io, {
    onState(state, detail) {
      if (state === "connected") $("transport").textContent = detail.transport;
      showState(state, state === "reconnecting" && detail.why === "unreachable" ? "server unreachable" : undefined);
      if (state === "ended") showLogin("Your session ended — log in again.");
      if (state === "refused") showLogin("The game refused this player. Try again later, or ask the game's support.");
    },
  });
  socket.on("welcome", ({ online, history }) => {
    $("chat-log").replaceChildren();
    for (const message of history) addMessage(message);
    showRoster(online);
  });
  socket.on("presence", ({ online }) => showRoster(online));
  socket.on("chat", addMessage);
  $("chat-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("chat-input");
    const text = input.value.trim();
    if (text === "") return;
    socket.emit("chat", text, ({ ok }) => {
      if (ok) input.value = "";
    });
  });
}

start();
