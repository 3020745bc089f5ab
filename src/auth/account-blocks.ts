import type { Context } from "hono";
import type { AppEnv } from "../app-env";
import { noticePage } from "../http/notice-page";

/**
 * The answer to a login by a blocked account: a plain page that says so (403, not a 500 and
 * not the generic failure page), with no session set. The player's identity provider
 * still knows them; Portcullis does not let them in.
 */
export function blockedPage(c: Context<AppEnv>): Response {
  const main =
    "<main><h1>Account blocked</h1><p>This account has been blocked by the game's operators, so it cannot sign in.</p>" +
    "<p>If you think this is a mistake, contact the game's support.</p></main>";
  return c.html(noticePage({ title: "Account blocked", main }), 403);
}
