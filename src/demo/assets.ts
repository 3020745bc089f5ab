import { readFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Hono } from "hono";
import type { AppEnv } from "../app-env";
import { notFound } from "../http/errors";

/** Where the demo lobby page loads socket.io-client from: our own origin, so `script-src 'self'` holds. */
export const SOCKET_IO_CLIENT_PATH = "/vendor/socket.io.esm.min.js";
const BUNDLE = resolve(dirname(fileURLToPath(import.meta.url)), "../../node_modules/socket.io-client/dist/socket.io.esm.min.js");

/**
 * socket.io-client's browser bundle for the demo lobby (public/lobby.html), served outside
 * production only. socket.io-client is a development dependency: a production install has
 * no such file, and a production configuration never mounts this. A game serves its own
 * copy of the client however it ships its other scripts.
 */
export function demoAssetRoutes(): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.get(SOCKET_IO_CLIENT_PATH, async (c) => {
    let body: Buffer;
    try {
      body = await readFile(BUNDLE);
    } catch {
      return notFound();
    }
    return c.body(new Uint8Array(body), 200, { "content-type": "text/javascript; charset=utf-8", "cache-control": "no-cache" });
  });
  return app;
}
