/**
 * The few HTML pages the BFF writes itself (signed in, login failed, account blocked): one
 * shell with the site's stylesheet and no script, so the CSP (`script-src 'self'`, no
 * inline) holds. `title` is escaped here; `main` is trusted markup the caller built with
 * {@link escapeHTML} around anything that came from outside.
 */
export function noticePage(options: { title: string; main: string; head?: string }): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
${options.head ?? ""}<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHTML(options.title)}</title>
<link rel="icon" href="/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/style.css">
</head>
<body class="notice">
${options.main}
</body>
</html>
`;
}

/** Text for HTML content and double-quoted attributes. */
export function escapeHTML(value: string): string {
  return value.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}
