import { defineConfig, mergeConfig } from "vitest/config";
import base from "./vitest.config";

// Stryker runs each module's mutants against the tests that prove that module's SECURITY.md
// items (MUTATE_TESTS, set by stryker.config.mjs), not the whole suite: a mutant in code that
// every test's setup runs would otherwise cost a full suite run.
const tests = process.env.MUTATE_TESTS?.split(",").filter((glob) => glob !== "");

export default mergeConfig(
  base,
  defineConfig({
    test: {
      ...(tests === undefined ? {} : { include: tests }),
      reporters: ["default"],
    },
  }),
);
