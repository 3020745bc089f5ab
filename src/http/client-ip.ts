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
