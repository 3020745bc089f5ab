import { describe, expect, it } from "vitest";
import { SESSION_COOKIE, readCookie, sessionCookie } from "../../src/auth/cookies";

/**
 * SECURITY.md A1, A3: the one parser that decides which session token a request carries.
 * Table-driven over the shapes a hostile or confused client sends.
 */
describe("#readCookie", () => {
  it.each([
    ["the cookie alone", `${SESSION_COOKIE}=abc`, "abc"],
    ["among others, with spaces around", `theme=dark;  ${SESSION_COOKIE} = abc ; lang=en`, "abc"],
    ["after a part without =", `garbage; ${SESSION_COOKIE}=abc`, "abc"],
    ["a value holding =", `${SESSION_COOKIE}=a=b`, "a=b"],
    ["named twice (a tossed cookie: neither is trusted)", `${SESSION_COOKIE}=abc; ${SESSION_COOKIE}=def`, null],
    ["named twice, once empty", `${SESSION_COOKIE}=; ${SESSION_COOKIE}=def`, null],
    ["an empty value", `${SESSION_COOKIE}=`, null],
    ["the name without =", `${SESSION_COOKIE}`, null],
    ["a longer name", `${SESSION_COOKIE}2=abc`, null],
    ["a name with a prefix", `x${SESSION_COOKIE}=abc`, null],
    ["no header", undefined, null],
    ["a null header", null, null],
  ])("%s", (_name, header, expected) => {
    expect(readCookie(header, SESSION_COOKIE)).toBe(expected);
  });

  it("skips a part without '=' rather than reading it as a second copy of the cookie", () => {
    expect(readCookie(`${SESSION_COOKIE}x; ${SESSION_COOKIE}=abc`, SESSION_COOKIE)).toBe("abc");
  });

  it("reads a header of 8,192 characters and ignores a longer one entirely", () => {
    const cookie = `${SESSION_COOKIE}=abc`;
    const filler = (length: number): string => `pad=${"x".repeat(length - cookie.length - "pad=; ".length)}; `;
    const atLimit = `${filler(8192)}${cookie}`;
    expect(atLimit).toHaveLength(8192);
    expect(readCookie(atLimit, SESSION_COOKIE)).toBe("abc");
    expect(readCookie(`${filler(8193)}${cookie}`, SESSION_COOKIE)).toBeNull();
  });
});

describe("#sessionCookie", () => {
  it("writes whole seconds and never a negative Max-Age", () => {
    expect(sessionCookie("t", 59.9)).toMatch(/; Max-Age=59$/);
    expect(sessionCookie("t", -5)).toMatch(/; Max-Age=0$/);
  });
});
