import { resolve } from "node:path";
import { ConfigError, readEnvironment, type Config } from "./config";
import { startDemoIdP, type DemoIdP } from "./demo/idp";
import { withLobbyRoute } from "./demo/lobby";
import { loadOrCreateDemoSecrets } from "./demo/secrets";
import { demoClient, demoProvider, startDemoGameFor } from "./demo/services";
import { checkConfiguration, startPortcullis } from "./portcullis";

/** Start-up: every configuration problem at once → (demo parts) → startPortcullis → signals. */
async function main(): Promise<void> {
  let config: Config;
  try {
    config = checkConfiguration(readEnvironment());
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(1);
    }
    throw error;
  }

  const stops: (() => Promise<void>)[] = [];
  let keys;
  if (config.demo !== null) {
    const secrets = loadOrCreateDemoSecrets(resolve(config.databasePath, "../demo-secrets.json"));
    keys = secrets;
    const idp: DemoIdP = await startDemoIdP({
      port: config.demo.idpPort,
      clients: [demoClient(config.publicOrigin, secrets.demoClientSecret)],
      cookieKeys: secrets.idpCookieKeys,
      askNameEveryLogin: true,
    });
    stops.push(() => idp.close());
    config = {
      ...config,
      providers: [demoProvider(idp.issuer, secrets.demoClientSecret)],
    };
    const game = await startDemoGameIfPresent(config);
    if (game !== null) {
      stops.push(game.close);
      const gameBackendURL = config.gameBackendURL ?? game.url;
      config = { ...config, gameBackendURL, gameBackendAudience: config.gameBackendAudience ?? new URL(gameBackendURL).origin, wsRoutes: withLobbyRoute(config.wsRoutes) };
    }
    process.stdout.write(
      [
        "",
        "  ┌──────────────────────────────────────────────────────────────┐",
        "  │  PORTCULLIS DEMO MODE — for development only, not production │",
        "  └──────────────────────────────────────────────────────────────┘",
        `  demo identity provider (any name, no password): ${idp.issuer}`,
        `  demo game backend:                              ${config.gameBackendURL ?? "(none)"}`,
        `  keys generated and kept in ${resolve(config.databasePath, "../demo-secrets.json")} (0600)`,
        "",
      ].join("\n") + "\n",
    );
  }

  const portcullis = await startPortcullis(config, keys ? { keys } : {});
  process.stdout.write(`  Portcullis is serving ${config.publicOrigin} (bound to ${portcullis.url})\n  Open ${config.publicOrigin}/ and log in.\n\n`);
  if (portcullis.metricsURL !== null) process.stdout.write(`  Prometheus metrics: ${portcullis.metricsURL}/metrics\n\n`);

  let stopping = false;
  const shutdown = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    process.stdout.write(`  ${signal}: shutting down…\n`);
    await portcullis.close();
    await Promise.allSettled(stops.map((stop) => stop()));
    process.exit(0);
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));
  // logrotate's `postrotate kill -HUP`: the audit file was moved away; start a new one.
  process.on("SIGHUP", () => portcullis.audit.reopen());
}

/** The demo game backend on 127.0.0.1, unless GAME_BACKEND_URL names a real one. */
async function startDemoGameIfPresent(config: Config): Promise<{ url: string; close: () => Promise<void> } | null> {
  if (config.demo === null || config.gameBackendURL !== null) return null;
  return startDemoGameFor({ publicOrigin: config.publicOrigin, port: config.demo.gamePort, audience: config.gameBackendAudience });
}

main().catch((error: unknown) => {
  process.stderr.write(`Portcullis failed to start: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
