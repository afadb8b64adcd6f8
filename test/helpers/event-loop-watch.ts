import { afterAll, beforeEach, expect } from "vitest";

// vitest's worker answers its runner over an RPC with a fixed 60 s timeout; a test that keeps
// the event loop busy that long fails the whole run ("Timeout calling onTaskUpdate") without
// naming itself. Name it: report any stall of the loop over STALL_MS with the test that ran.
const STALL_MS = 15_000;
let current = "(between tests)";
let last = Date.now();
const timer = setInterval(() => {
  const now = Date.now();
  if (now - last > STALL_MS)
    process.stderr.write(
      `event-loop-watch: the event loop was blocked ${((now - last) / 1000).toFixed(1)} s during ${current}\n`,
    );
  last = now;
}, 1000);
timer.unref();

beforeEach(() => {
  const state = expect.getState();
  current = `${state.testPath ?? "?"} > ${state.currentTestName ?? "?"}`;
});
afterAll(() => clearInterval(timer));
