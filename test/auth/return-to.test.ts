import { describe, expect, it } from "vitest";
import { sanitizeReturnTo } from "../../src/auth/return-to";

describe("#sanitizeReturnTo", () => {
  it.each([
    ["//evil.example", "/"],
    // Protocol-relative is refused by its leading "//" alone, even when the host it names
    // is the probe origin the second check compares with.
    ["//portcullis.invalid/arena", "/"],
    ["/\\evil.example", "/"],
    ["\\\\evil.example", "/"],
    ["https://evil.example/", "/"],
    ["http:/evil.example", "/"],
    ["javascript:alert(1)", "/"],
    ["evil.example", "/"],
    ["/%2F%2Fevil.example", "/%2F%2Fevil.example"],
    ["/\t/evil.example", "/"],
    ["/\n/evil.example", "/"],
    ["", "/"],
    [undefined, "/"],
    ["/" + "a".repeat(600), "/"],
    // The length cap: 512 characters are kept, one more is not.
    ["/" + "a".repeat(511), "/" + "a".repeat(511)],
    ["/" + "a".repeat(512), "/"],
    ["/arena", "/arena"],
    ["/arena?room=1#top", "/arena?room=1#top"],
    ["/a/../b", "/b"],
    ["/a/..//evil.example", "/"],
  ])("%j → %j", (input, expected) => {
    expect(sanitizeReturnTo(input)).toBe(expected);
  });
});
