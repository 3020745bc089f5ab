import { describe, expect, it } from "vitest";
import { RecentMap } from "../src/recent-map";

describe("RecentMap: the bounded memo behind the per-session caches (issue 14)", () => {
  it("keeps at most its limit, dropping the entry set longest ago; setting a key again makes it the newest", () => {
    const map = new RecentMap<string, number>(3);
    map.set("a", 1);
    map.set("b", 2);
    map.set("c", 3);
    map.set("a", 10);
    map.set("d", 4);
    expect(map.size).toBe(3);
    expect([map.get("a"), map.get("b"), map.get("c"), map.get("d")]).toEqual([10, undefined, 3, 4]);
  });
});
