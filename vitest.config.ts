import { availableParallelism } from "node:os";
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Pulumi's mock engine is process-global: every test file gets its own process.
    pool: "forks",
    // At least two files at once: many wait on real programs (Docker health checks, the Pulumi CLI,
    // Traefik), so a second fork uses the time even on two cores (vitest's default is cores - 1).
    poolOptions: { forks: { maxForks: Math.max(2, availableParallelism() - 1) } },
    testTimeout: 60_000,
    hookTimeout: 60_000,
    setupFiles: ["test/helpers/event-loop-watch.ts"],
  },
});
