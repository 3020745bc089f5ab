// `npm run build`: src/ → dist/main.js, plain JavaScript that `node` runs without tsx.
// The sources import with extensionless paths (`./config`), which Node's ESM loader refuses,
// so tsc's one-file-per-module output cannot run as is; esbuild bundles our own modules
// into one file and leaves every package in node_modules (better-sqlite3 is native).
import { readFileSync } from "node:fs";
import { dirname, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build, type Plugin } from "esbuild";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const outfile = resolve(root, "dist/main.js");

/**
 * Modules find files next to them through `import.meta.url` (public/ from src/app.ts,
 * db/migrations from src/db/database.ts). In one bundle every module would see
 * dist/main.js instead; each module's own URL is rebuilt from the bundle's, so the
 * relative paths keep pointing where they do in the source tree.
 */
const keepModuleURLs: Plugin = {
  name: "keep-module-urls",
  setup(pluginBuild) {
    pluginBuild.onLoad({ filter: /[\\/]src[\\/].*\.ts$/ }, (args) => {
      const source = readFileSync(args.path, "utf8");
      const fromBundle = relative(dirname(outfile), args.path).split("\\").join("/");
      return {
        contents: source.replaceAll("import.meta.url", `new URL(${JSON.stringify(fromBundle)}, import.meta.url).href`),
        loader: "ts",
      };
    });
  },
};

await build({
  entryPoints: [resolve(root, "src/main.ts")],
  outfile,
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  packages: "external",
  sourcemap: true,
  plugins: [keepModuleURLs],
  logLevel: "info",
});
