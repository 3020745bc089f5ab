import { realpathSync } from "node:fs";
import { join, sep } from "node:path";
import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../app-env";
import { notFound } from "./errors";

/**
 * What `serveStatic` does not refuse on its own, for a studio's `STATIC_DIR` as for
 * `public/` (the independent review's F5): a path segment that starts with a dot (`.env`,
 * `.git/config`, in any encoding) and a file whose real path, symbolic links resolved, lies
 * outside the folder. Both answer 404, as a missing file does: nothing tells a prober the
 * file exists.
 */
export function staticGuard(root: string): MiddlewareHandler<AppEnv> {
  const realRoot = realpathSync(root);
  return async function staticGuard(c, next) {
    let path: string;
    try {
      path = decodeURIComponent(new URL(c.req.url).pathname);
    } catch {
      return notFound();
    }
    if (path.split(/[/\\]/).some((segment) => segment.startsWith("."))) return notFound();
    let real: string;
    try {
      real = realpathSync(join(realRoot, path));
    } catch {
      // Nothing there (serveStatic answers 404 itself), or unreadable.
      return next();
    }
    if (real !== realRoot && !real.startsWith(realRoot + sep)) return notFound();
    return next();
  };
}
