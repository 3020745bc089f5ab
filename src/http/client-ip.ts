import { isIPv4 } from "node:net";
/**
 * The client's address (SECURITY.md H34). With `trustProxy` = 0 it is the socket's peer and
 * `X-Forwarded-For` is ignored, so a client cannot rotate it to escape a rate limit. With N
 * trusted hops, it is the N-th address from the right of `X-Forwarded-For`: the one our
 * outermost proxy saw; anything further left was written by the client.
 */
export function clientIP(socketAddress: string | undefined, forwardedFor: string | undefined, trustProxy: number): string {
  const peer = socketAddress ?? "unknown";
  if (trustProxy === 0 || forwardedFor === undefined) {
    return peer;
  }
  const hops = forwardedFor
    .split(",")
    .map((hop) => hop.trim())
    .filter((hop) => hop !== "");
  if (hops.length === 0) {
    return peer;
  }
  return hops[Math.max(0, hops.length - trustProxy)] ?? peer;
}

/**
 * The unit one client is counted by: an IPv4 address (also when mapped into IPv6), or the
 * /64 of an IPv6 address, since one host usually has a whole /64 to pick addresses from.
 * Rate limits, the per-address connection cap and the audit log's aggregation all key on
 * it: keyed on the full IPv6 address, every one of a /64's addresses would get a fresh
 * bucket (SECURITY.md H34, I38, I39).
 */
export function addressGroup(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped?.[1] !== undefined) return mapped[1];
  if (isIPv4(address) || !address.includes(":")) return address;
  const bare = address.split("%")[0] ?? address;
  const [head = "", tail] = bare.split("::");
  const words = (part: string): string[] => (part === "" ? [] : part.split(":").flatMap((w) => (w.includes(".") ? ["0", "0"] : [w])));
  const before = words(head);
  const after = tail === undefined ? [] : words(tail);
  const full = [...before, ...Array<string>(Math.max(0, 8 - before.length - after.length)).fill("0"), ...after];
  return `${full
    .slice(0, 4)
    .map((w) => Number.parseInt(w, 16).toString(16))
    .join(":")}::/64`;
}
