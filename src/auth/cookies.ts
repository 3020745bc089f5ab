/**
 * The two cookies of CONTRACT.md. `__Host-` pins them to this exact host, path `/`, Secure
 * and no Domain (RFC 6265bis 4.1.3.2); `Http` in the prefix marks them HttpOnly for
 * browsers that know the `__Host-Http-` prefix.
 */
export const SESSION_COOKIE = "__Host-Http-session";
export const LOGIN_COOKIE = "__Host-Http-login";

export function sessionCookie(token: string, maxAgeSeconds: number): string {
  return `${SESSION_COOKIE}=${token}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=${Math.max(0, Math.floor(maxAgeSeconds))}`;
}

export function expiredSessionCookie(): string {
  return `${SESSION_COOKIE}=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0`;
}

/** Lax: the callback arrives as a cross-site top-level navigation from the provider. */
export function loginCookie(handle: string, maxAgeSeconds: number): string {
  return `${LOGIN_COOKIE}=${handle}; HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age=${maxAgeSeconds}`;
}

export function expiredLoginCookie(): string {
  return `${LOGIN_COOKIE}=; HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age=0`;
}

const MAX_COOKIE_HEADER = 8192;

/**
 * The value of cookie `name` in a `Cookie` header, or null. A header naming the cookie
 * twice is treated as naming it not at all: a second copy can only come from a cookie
 * tossed in by a sibling host, and guessing which one is real is how fixation starts.
 */
export function readCookie(header: string | null | undefined, name: string): string | null {
  if (header === null || header === undefined || header.length > MAX_COOKIE_HEADER) {
    return null;
  }
  let found: string | null = null;
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq === -1 || part.slice(0, eq).trim() !== name) {
      continue;
    }
    if (found !== null) {
      return null;
    }
    found = part.slice(eq + 1).trim();
  }
  return found === "" ? null : found;
}
