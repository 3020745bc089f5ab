import { defineConfig } from "drizzle-kit";

// The PostgreSQL schema (DATABASE_URL); drizzle.config.ts is SQLite's. Generate with
// `npx drizzle-kit generate --config drizzle-pg.config.ts`.
export default defineConfig({
  dialect: "postgresql",
  schema: "./src/db/schema-pg.ts",
  out: "./db/migrations-pg",
});
