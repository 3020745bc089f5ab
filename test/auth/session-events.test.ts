import { describe, expect, it } from "vitest";
import { SessionEvents, type SessionEnded } from "../../src/auth/session-events";

describe("SessionEvents (the one way news of a session's end travels)", () => {
  it("delivers each end to every listener until it unsubscribes", () => {
    const events = new SessionEvents();
    const first: SessionEnded[] = [];
    const second: SessionEnded[] = [];
    const stopFirst = events.onEnded((event) => first.push(event));
    events.onEnded((event) => second.push(event));
    const ended: SessionEnded = { sessionId: "s1", accountId: "a1", reason: "logout" };
    events.publishEnded(ended);
    stopFirst();
    events.publishEnded({ sessionId: "s2", accountId: "a1", reason: "revoked" });
    expect(first).toEqual([ended]);
    expect(second.map((e) => e.sessionId)).toEqual(["s1", "s2"]);
  });
});
