import { io } from "/vendor/socket.io.esm.min.js";
import * as portcullis from "/portcullis.js";

const $ = (id) => document.getElementById(id);
const statusEl = $("status");

const STATUS_TEXT = {
  idle: "not connected",
  connecting: "connecting…",
  connected: "connected",
  reconnecting: "reconnecting…",
  error: "connection problem",
  ended: "session ended",
  refused: "refused by the game",
  closed: "disconnected",
};

function setStatus(name, detail = "") {
  statusEl.dataset.state = name;
  statusEl.textContent = detail ? `${STATUS_TEXT[name]} (${detail})` : STATUS_TEXT[name];
}

async function showLogin(notice) {
  $("lobby-view").hidden = true;
  $("who").hidden = true;
  $("login-view").hidden = false;
  $("notice").hidden = !notice;
  $("notice").textContent = notice ?? "";
  const list = $("providers");
  list.replaceChildren();
  for (const provider of await portcullis.providers()) {
    const link = document.createElement("a");
    link.className = "provider";
    link.href = portcullis.loginURL(provider.name, "/lobby.html");
    link.textContent = `Log in with ${provider.label}`;
    list.append(link);
  }
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
  $("login-view").hidden = true;
  $("lobby-view").hidden = false;
  $("who").hidden = false;
  $("player-name").textContent = me.user.displayName;

  const socket = portcullis.connectSocketIO(io, {
    onState(state, detail) {
      if (state === "connected") $("transport").textContent = detail.transport;
      if (state === "ended") {
        setStatus("ended");
        return showLogin("Your session ended — log in again.");
      }
      if (state === "refused") {
        setStatus("refused");
        return showLogin("The game refused this player. Try again later, or ask the game's support.");
      }
      setStatus(state, state === "reconnecting" && detail.why === "unreachable" ? "server unreachable" : "");
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
