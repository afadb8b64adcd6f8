import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Pulumi's mock engine is process-global: every test file gets its own process.
    pool: "forks",
    testTimeout: 60_000,
    hookTimeout: 60_000,
    setupFiles: ["test/helpers/event-loop-watch.ts"],
  },
});
