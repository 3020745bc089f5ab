import postgres from "postgres";
import { startCluster } from "./cluster/cluster";

/**
 * `npm run cluster`: three Portcullis nodes on one PostgreSQL database behind nginx (round
 * robin, no sticky sessions), with the demo identity provider and game backend. DATABASE_URL
 * names the database (created when missing); CLUSTER_PORT is nginx's port (8080).
 */
async function main(): Promise<void> {
  const databaseURL = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/portcullis_cluster";
  await createDatabaseIfMissing(databaseURL);
  const cluster = await startCluster({ databaseURL, port: Number(process.env.CLUSTER_PORT ?? 8080) });
  process.stdout.write(
    [
      "",
      "  Portcullis cluster (development only): three nodes behind nginx, one PostgreSQL database",
      `  open ${cluster.origin}/ and log in (demo identity provider: any name, no password)`,
      ...cluster.nodes.map((node) => `  node ${node.index}: ${node.url}`),
      `  identity provider: ${cluster.idp.issuer}   game backend: ${cluster.game.url}`,
      "",
    ].join("\n") + "\n",
  );
  const shutdown = (): void => {
    void cluster.close().then(() => process.exit(0));
  };
  process.on("SIGINT", shutdown);
  process.on("SIGTERM", shutdown);
}

async function createDatabaseIfMissing(url: string): Promise<void> {
  const target = new URL(url);
  const name = target.pathname.slice(1);
  const admin = new URL(url);
  admin.pathname = "/postgres";
  const sql = postgres(admin.href, { max: 1, onnotice: () => {} });
  try {
    const found = await sql`SELECT 1 FROM pg_database WHERE datname = ${name}`;
    if (found.length === 0) await sql.unsafe(`CREATE DATABASE "${name.replaceAll('"', '""')}"`);
  } finally {
    await sql.end({ timeout: 1 });
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`the cluster failed to start: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
