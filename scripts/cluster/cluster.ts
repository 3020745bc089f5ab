import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, connect, type AddressInfo } from "node:net";
import { tmpdir, userInfo } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import type { DemoGame } from "../../src/demo/game";
import { startDemoIdP, type DemoIdP } from "../../src/demo/idp";
import { demoClient, DEMO_CLIENT_ID, startDemoGameFor } from "../../src/demo/services";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const NGINX_CONF = join(ROOT, "docs/cluster-nginx.conf");
const NGINX = process.env.NGINX ?? "/usr/sbin/nginx";

export interface ClusterOptions {
  /**
   * The PostgreSQL database every node shares; null for one node on a SQLite file in the
   * cluster's temporary folder (the benchmark compares the engines behind the same nginx).
   */
  databaseURL: string | null;
  /** nginx's port; 0 (the default) picks a free one. */
  port?: number;
  nodes?: number;
  /** Extra environment for every node (rate limits, timers). */
  env?: Record<string, string>;
  /** Where the nodes' and nginx's messages go (their audit lines are kept, not printed). */
  log?: (line: string) => void;
  /**
   * Tests only: nginx names the node that answered each request in an `X-Cluster-Node`
   * response header (the node's host:port), so a browser test can tell which node served a
   * tab. Not in docs/cluster-nginx.conf: a production balancer has no reason to tell.
   */
  nodeHeader?: boolean;
}

export interface ClusterNode {
  readonly index: number;
  /** The node's own address, bypassing nginx. */
  readonly url: string;
  readonly process: ChildProcess;
  /** The node's audit lines so far, parsed. */
  readonly audit: Record<string, unknown>[];
}

export interface Cluster {
  /** PUBLIC_ORIGIN: nginx, round robin over the nodes. */
  readonly origin: string;
  readonly nodes: ClusterNode[];
  readonly idp: DemoIdP;
  readonly game: DemoGame;
  readonly databaseURL: string | null;
  /** `kill -9` of one node: no shutdown, no goodbye to its sockets. */
  kill(index: number): Promise<void>;
  close(): Promise<void>;
}

/**
 * Three (or `nodes`) Portcullis processes on one PostgreSQL database behind nginx as the
 * load balancer, with the demo identity provider and game backend in this process. Every
 * node gets the same keys (they must share them: a session sealed by one is opened by
 * another, an assertion signed by one is checked against the JWKS served by any), the
 * same PUBLIC_ORIGIN (nginx's) and TRUST_PROXY=1.
 */
export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  // SQLite is one process's database: a second node would not hear the first's events.
  if (options.databaseURL === null && (options.nodes ?? 3) !== 1) throw new Error("a SQLite cluster has exactly one node");
  const dir = mkdtempSync(join(tmpdir(), "portcullis-cluster-"));
  const port = options.port && options.port > 0 ? options.port : await freePort();
  const origin = `http://localhost:${port}`;
  const clientSecret = randomBytes(24).toString("base64url");
  const idp = await startDemoIdP({ port: 0, clients: [demoClient(origin, clientSecret)], askNameEveryLogin: false });
  const game = await startDemoGameFor({ publicOrigin: origin, port: 0, audience: null });
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "",
    HOME: process.env.HOME ?? tmpdir(),
    NODE_ENV: "development",
    HOST: "127.0.0.1",
    PORT: "0",
    PUBLIC_ORIGIN: origin,
    ...(options.databaseURL === null ? { DATABASE_PATH: join(dir, "portcullis.sqlite") } : { DATABASE_URL: options.databaseURL }),
    TOKEN_ENCRYPTION_KEYS: `k1:${randomBytes(32).toString("base64")}`,
    ASSERTION_SIGNING_KEYS: `a1:${randomBytes(32).toString("base64")}`,
    GAME_BACKEND_URL: game.url,
    TRUST_PROXY: "1",
    OIDC_PROVIDERS: "demo",
    OIDC_DEMO_ISSUER: idp.issuer,
    OIDC_DEMO_CLIENT_ID: DEMO_CLIENT_ID,
    OIDC_DEMO_CLIENT_SECRET: clientSecret,
    OIDC_DEMO_LABEL: "Demo",
    ...options.env,
  };
  const nodes: ClusterNode[] = [];
  let nginx: ChildProcess | null = null;
  const close = async (): Promise<void> => {
    const exits = [...nodes.map((node) => node.process), ...(nginx === null ? [] : [nginx])].map((child) => stop(child, "SIGTERM"));
    await Promise.all(exits);
    await game.close();
    await idp.close();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    // Started one after the other: the first migrates, the others find it done (they would
    // wait on the advisory lock anyway).
    for (let index = 0; index < (options.nodes ?? 3); index += 1) nodes.push(await startNode(index, env, log));
    nginx = await startNginx(dir, port, nodes, log, options.nodeHeader ?? false);
    await Promise.all(nodes.map((node) => ready(node.url)));
  } catch (error) {
    await close();
    throw error;
  }
  return {
    origin,
    nodes,
    idp,
    game,
    databaseURL: options.databaseURL,
    async kill(index: number): Promise<void> {
      const node = nodes[index];
      if (node !== undefined) await stop(node.process, "SIGKILL");
    },
    close,
  };
}

/** The response header {@link ClusterOptions.nodeHeader} adds. */
export const NODE_HEADER = "x-cluster-node";

/** The nginx configuration of docs/cluster-nginx.conf for these nodes, as the script runs it. */
export function renderNginxConf(dir: string, port: number, nodeURLs: string[], options: { nodeHeader?: boolean } = {}): string {
  const servers = nodeURLs.map((url) => `    server ${new URL(url).host} max_fails=1 fail_timeout=5s;`).join("\n");
  // Started by root, nginx's workers would run as "nobody", who cannot write in `dir`.
  const user = process.getuid?.() === 0 ? `user ${userInfo().username} ${spawnSync("id", ["-gn"], { encoding: "utf8" }).stdout.trim()};\n` : "";
  let conf = readFileSync(NGINX_CONF, "utf8").replaceAll("{{DIR}}", dir).replaceAll("{{LISTEN}}", `127.0.0.1:${port}`).replaceAll("{{SERVERS}}", servers);
  if (options.nodeHeader === true) {
    const anchor = "      proxy_buffering off;\n";
    if (!conf.includes(anchor)) throw new Error("docs/cluster-nginx.conf: no `proxy_buffering off;` line to add the node header after");
    // $upstream_addr: the node that answered (the last one tried, after a retry).
    conf = conf.replace(anchor, `${anchor}      add_header ${NODE_HEADER} $upstream_addr always;\n`);
  }
  return user + conf;
}

async function startNode(index: number, env: Record<string, string>, log: (line: string) => void): Promise<ClusterNode> {
  const child = spawn(process.execPath, ["--import", "tsx", join(ROOT, "src/main.ts")], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  const audit: Record<string, unknown>[] = [];
  const url = await new Promise<string>((resolveURL, reject) => {
    const lines = createInterface({ input: child.stdout });
    lines.on("line", (line) => {
      const bound = /bound to (http:\/\/[^)]+)\)/.exec(line);
      if (bound?.[1] !== undefined) resolveURL(bound[1]);
      if (line.startsWith("{")) {
        try {
          audit.push(JSON.parse(line) as Record<string, unknown>);
        } catch {
          // not an audit line
        }
      }
    });
    createInterface({ input: child.stderr }).on("line", (line) => log(`node ${index}: ${line}`));
    child.once("exit", (code) => reject(new Error(`node ${index} exited (${code}) before listening`)));
  });
  return { index, url, process: child, audit };
}

async function startNginx(dir: string, port: number, nodes: ClusterNode[], log: (line: string) => void, nodeHeader: boolean): Promise<ChildProcess> {
  for (const sub of ["client_body", "proxy"]) mkdirSync(join(dir, sub), { recursive: true });
  const conf = join(dir, "nginx.conf");
  writeFileSync(conf, renderNginxConf(dir, port, nodes.map((node) => node.url), { nodeHeader }));
  const check = spawnSync(NGINX, ["-t", "-q", "-p", dir, "-c", conf], { encoding: "utf8" });
  if (check.status !== 0) throw new Error(`nginx -t refused docs/cluster-nginx.conf: ${check.stderr}`);
  const child = spawn(NGINX, ["-p", dir, "-c", conf], { stdio: ["ignore", "ignore", "pipe"] });
  createInterface({ input: child.stderr! }).on("line", (line) => log(`nginx: ${line}`));
  await listening(port);
  return child;
}

/** Resolves once the node's /readyz answers 200 (database, listener, backend, provider). */
async function ready(url: string): Promise<void> {
  for (let attempt = 0; attempt < 300; attempt += 1) {
    const status = await fetch(`${url}/readyz`).then(
      (response) => response.status,
      () => 0,
    );
    if (status === 200) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} never became ready`);
}

async function listening(port: number): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt += 1) {
    const open = await new Promise<boolean>((resolveOpen) => {
      const socket = connect(port, "127.0.0.1", () => {
        socket.destroy();
        resolveOpen(true);
      });
      socket.on("error", () => resolveOpen(false));
    });
    if (open) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on ${port}`);
}

/** nginx cannot listen on port 0 and say where: a port the system just gave out and took back. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const { port } = server.address() as AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

function stop(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolveExit) => {
    const force = setTimeout(() => child.kill("SIGKILL"), 10_000);
    child.once("exit", () => {
      clearTimeout(force);
      resolveExit();
    });
    child.kill(signal);
  });
}
