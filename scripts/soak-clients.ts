/**
 * The soak test's browsers, in their own process so the BFF's memory is measured alone.
 * Told by the parent which sessions to open sockets for; sends a small message per socket
 * per second; reports how each socket ended.
 */
import { WebSocket } from "ws";

interface Open {
  type: "open";
  origin: string;
  token: string;
  sockets: number;
  group: string;
}
type Command = Open | { type: "report" } | { type: "stop" };

interface Tracked {
  ws: WebSocket;
  sessionId: string;
  group: string;
  closeCode: number | null;
  echoes: number;
}

const tracked: Tracked[] = [];
let failedOpens = 0;

async function openFor(command: Open): Promise<void> {
  for (let i = 0; i < command.sockets; i += 1) {
    const response = await fetch(`${command.origin}/auth/ws-ticket`, {
      method: "POST",
      headers: { cookie: `__Host-Http-session=${command.token}`, "x-csrf": "1", origin: command.origin },
    });
    if (response.status !== 200) {
      failedOpens += 1;
      continue;
    }
    const { ticket } = (await response.json()) as { ticket: string };
    await new Promise<void>((resolve) => {
      const ws = new WebSocket(`${command.origin.replace("http", "ws")}/ws`, ["game.v1", `ticket.${ticket}`], {
        headers: { origin: command.origin, cookie: `__Host-Http-session=${command.token}` },
        perMessageDeflate: false,
      });
      const entry: Tracked = { ws, sessionId: command.token.split(".")[0] ?? "", group: command.group, closeCode: null, echoes: 0 };
      ws.once("open", () => {
        tracked.push(entry);
        resolve();
      });
      ws.on("message", () => {
        entry.echoes += 1;
      });
      ws.once("close", (code) => {
        entry.closeCode = code;
      });
      ws.once("error", () => {
        failedOpens += 1;
        resolve();
      });
    });
  }
}

const payload = Buffer.alloc(64, 120);
const traffic = setInterval(() => {
  for (const entry of tracked) if (entry.ws.readyState === 1) entry.ws.send(payload);
}, 1000);

process.on("message", (raw: unknown) => {
  const command = raw as Command;
  if (command.type === "open") {
    void openFor(command).then(() => process.send?.({ type: "opened", group: command.group, token: command.token }));
  } else if (command.type === "report") {
    const groups = new Map<string, { open: number; closed4401: number; closedOther: number[]; echoes: number }>();
    for (const entry of tracked) {
      const group = groups.get(entry.group) ?? { open: 0, closed4401: 0, closedOther: [], echoes: 0 };
      if (entry.closeCode === null) group.open += 1;
      else if (entry.closeCode === 4401) group.closed4401 += 1;
      else group.closedOther.push(entry.closeCode);
      group.echoes += entry.echoes;
      groups.set(entry.group, group);
    }
    process.send?.({ type: "report", failedOpens, groups: Object.fromEntries(groups) });
  } else {
    clearInterval(traffic);
    for (const entry of tracked) entry.ws.terminate();
    setTimeout(() => process.exit(0), 100);
  }
});
