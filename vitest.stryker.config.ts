import { defineConfig } from "vitest/config";
import base from "./vitest.config";

// Stryker runs each module's mutants against the tests that prove that module's SECURITY.md
// items (MUTATE_TESTS, set by stryker.config.mjs), not the whole suite: a mutant in code that
// every test's setup runs would otherwise cost a full suite run. (Spread, not mergeConfig:
// mergeConfig concatenates arrays, which would keep the whole suite's include.)
const tests = process.env.MUTATE_TESTS?.split(",").filter((glob) => glob !== "");

export default defineConfig({
  ...base,
  test: {
    ...base.test,
    ...(tests === undefined || tests.length === 0 ? {} : { include: tests }),
    reporters: ["default"],
  },
});
