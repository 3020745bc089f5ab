import type { Context } from "hono";
import type { AppEnv } from "../app-env";

/**
 * The answer to a login by a blocked account: a plain page that says so (403, not a 500 and
 * not the generic failure page), with no session set. The player's identity provider
 * still knows them; Portcullis does not let them in.
 */
export function blockedPage(c: Context<AppEnv>): Response {
  return c.html(
    `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Account blocked</title>
<link rel="icon" href="/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/style.css">
</head>
<body class="notice">
<main><h1>Account blocked</h1><p>This account has been blocked by the game's operators, so it cannot sign in.</p><p>If you think this is a mistake, contact the game's support.</p></main>
</body>
</html>
`,
    403,
  );
}
