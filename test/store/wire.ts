import { connect, createServer, type AddressInfo, type Server, type Socket } from "node:net";

/**
 * A TCP relay in front of PostgreSQL that counts round trips: each time a client speaks
 * after the server has answered (or for the first time) is one. Bytes pass through
 * unchanged; the store under test connects to it as to the server. What the issue asks to
 * keep low is exactly this, the waits a request spends on the network, whatever driver or
 * protocol produces them.
 */
export interface WireCounter {
  /** The database URL with the relay's address in place of the server's. */
  readonly url: string;
  /** Round trips on every connection since the last {@link reset}. */
  readonly roundTrips: number;
  reset(): void;
  close(): Promise<void>;
}

export async function startWireCounter(databaseURL: string): Promise<WireCounter> {
  const target = new URL(databaseURL);
  const sockets = new Set<Socket>();
  let roundTrips = 0;
  const server: Server = createServer((client) => {
    const upstream = connect(Number(target.port || 5432), target.hostname);
    sockets.add(client).add(upstream);
    let answered = true;
    client.on("data", (chunk) => {
      if (answered) roundTrips += 1;
      answered = false;
      upstream.write(chunk);
    });
    upstream.on("data", (chunk) => {
      answered = true;
      client.write(chunk);
    });
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    for (const socket of [client, upstream]) {
      socket.on("close", end);
      socket.on("error", end);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = new URL(databaseURL);
  url.hostname = "127.0.0.1";
  url.port = String((server.address() as AddressInfo).port);
  return {
    url: url.href,
    get roundTrips(): number {
      return roundTrips;
    },
    reset(): void {
      roundTrips = 0;
    },
    async close(): Promise<void> {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
