import { randomInt } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../fixtures/harness";

const BASE32 = "abcdefghijklmnopqrstuvwxyz234567";
const TOKEN = /^([a-z2-7]{26})\.([a-z2-7]{40})$/;

function randomSecret(): string {
  return Array.from({ length: 40 }, () => BASE32[randomInt(BASE32.length)]).join("");
}

/** The same secret with one character changed, still in the token's alphabet. */
function oneCharacterOff(secret: string, at: number): string {
  const current = secret[at] ?? "a";
  const replacement = BASE32[(BASE32.indexOf(current) + 1) % BASE32.length] ?? "a";
  return `${secret.slice(0, at)}${replacement}${secret.slice(at + 1)}`;
}

/**
 * SECURITY.md A2: a session id alone is not a credential. These tokens pass every check of
 * form (alphabet, lengths, a real live session id), so only the comparison of the secret's
 * hash with the stored one can refuse them.
 */
describe("the session secret is checked (SECURITY.md A2)", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h.close();
  });

  const get = (path: string, token: string): Promise<Response> =>
    fetch(`${h.origin}${path}`, { headers: { cookie: `__Host-Http-session=${token}` } });

  async function liveSession(name: string): Promise<{ id: string; secret: string; token: string }> {
    const { token } = await h.login(name);
    const match = TOKEN.exec(token);
    if (match?.[1] === undefined || match[2] === undefined) throw new Error(`unexpected token shape ${token}`);
    expect((await get("/auth/me", token)).status).toBe(200);
    return { id: match[1], secret: match[2], token };
  }

  it("refuses a live session's id with a random secret of the right alphabet and length", async () => {
    const { id, token } = await liveSession("secret-random");
    for (let i = 0; i < 3; i += 1) {
      const forged = `${id}.${randomSecret()}`;
      expect(forged).toMatch(TOKEN);
      const me = await get("/auth/me", forged);
      expect(me.status).toBe(401);
      expect(await me.json()).toMatchObject({ error: "no_session" });
      expect((await get("/auth/sessions", forged)).status).toBe(401);
    }
    // The forgeries neither worked nor ended the real session.
    expect((await get("/auth/me", token)).status).toBe(200);
  });

  it("refuses the real secret with one character changed, at its start and at its end", async () => {
    const { id, secret } = await liveSession("secret-near");
    for (const at of [0, 39]) {
      expect((await get("/auth/me", `${id}.${oneCharacterOff(secret, at)}`)).status).toBe(401);
    }
  });

  it("refuses the real token with anything before or after it in the cookie: the whole value is the token", async () => {
    const { token } = await liveSession("secret-framed");
    for (const framed of [`x${token}`, `${"a".repeat(26)}.${token}`, `${token}a`]) {
      expect((await get("/auth/me", framed)).status).toBe(401);
    }
    expect((await get("/auth/me", token)).status).toBe(200);
  });

  it("refuses another live session's secret under this session's id", async () => {
    const a = await liveSession("secret-a");
    const b = await liveSession("secret-b");
    expect((await get("/auth/me", `${a.id}.${b.secret}`)).status).toBe(401);
    expect((await get("/auth/me", `${b.id}.${a.secret}`)).status).toBe(401);
  });
});
