import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { cpus, loadavg } from "node:os";
import { benchArgs } from "./args";
import autocannon from "autocannon";
import { createHoldHandler } from "../programs/holding/proxy";
import { startStandIn } from "../test/helpers/stand-ins";
import { table } from "../cli/plan/view";

/**
 * What the holder adds to a coder request it does not hold: on stacks with a CPU stand-in, every
 * coder request goes through it while the GPU is off (the route asks the holder before the
 * stand-in). Closed-loop clients (autocannon) against the llama.cpp stand-in directly and through
 * the holder (programs/holding/proxy.ts, as the controller runs it), rounds alternating so the
 * shared machine's load hits both; the machine's speed cancels in the ratios.
 *
 *   npm run bench -- holder [--rounds 3] [--seconds 5] [--connections 16]
 */

const { values } = benchArgs(
  "bench holder",
  "usage: npm run bench -- holder [--rounds 3] [--seconds 5] [--connections 16]",
  {
    rounds: { type: "string", default: "3" },
    seconds: { type: "string", default: "5" },
    connections: { type: "string", default: "16" },
  },
);
const ROUNDS = Number(values.rounds);
const SECONDS = Number(values.seconds);
const CONNECTIONS = Number(values.connections);

const BODY = JSON.stringify({ model: "coder", messages: [{ role: "user", content: "hi" }] });

async function main(): Promise<void> {
  const fallback = await startStandIn({ program: "llama.cpp" });
  let finished = 0;
  const holder = createHoldHandler(
    {
      readyReplica: async () => undefined,
      wakeState: () => ({ kind: "not-waking" }),
      offAnswer: () => ({ status: 503, headers: {}, body: {} }),
      arrived: () => undefined,
      finished: () => void finished++,
    },
    {
      limits: { maxSeconds: 600, maxRequests: 64, maxPerKey: 8, maxBodyBytes: 24 << 20 },
      fallbackUrl: `http://127.0.0.1:${fallback.port}`,
      maxBodyBytes: 10 << 20,
    },
  );
  const server = http.createServer(holder.handle);
  server.keepAliveTimeout = 120_000;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const holderPort = (server.address() as AddressInfo).port;

  const run = (port: number) =>
    autocannon({
      url: `http://127.0.0.1:${port}/v1/chat/completions`,
      method: "POST",
      body: BODY,
      headers: { "content-type": "application/json", "x-hub-key-id": "k_bench" },
      connections: CONNECTIONS,
      duration: SECONDS,
    });
  const results: { direct: autocannon.Result; holder: autocannon.Result }[] = [];
  for (let r = 0; r < ROUNDS; r++) results.push({ direct: await run(fallback.port), holder: await run(holderPort) });
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const rows = (["direct", "holder"] as const).map((k) => [
    k,
    median(results.map((x) => x[k].requests.average)).toFixed(0),
    `${median(results.map((x) => x[k].latency.p50)).toFixed(2)} ms`,
    `${median(results.map((x) => x[k].latency.p99)).toFixed(2)} ms`,
    String(results.reduce((n, x) => n + x[k].non2xx + x[k].errors, 0)),
  ]);
  process.stdout.write(
    `holder bench: ${ROUNDS} rounds of ${SECONDS} s, ${CONNECTIONS} connections; ${cpus().length} cores, load ${loadavg()[0].toFixed(1)}\n\n`,
  );
  process.stdout.write(`${table(["target", "req/s", "p50", "p99", "errors"], rows)}\n\n`);
  const ratio = median(results.map((x) => x.holder.requests.average / x.direct.requests.average));
  const added = median(results.map((x) => x.holder.latency.p99 - x.direct.latency.p99));
  process.stdout.write(
    `through the holder: ${(ratio * 100).toFixed(0)} % of the direct req/s; p99 +${added.toFixed(2)} ms (${finished} requests answered through it)\n`,
  );
  server.closeAllConnections();
  server.close();
  await fallback.close();
}

main().catch((err: unknown) => {
  process.stderr.write(`bench holder failed: ${(err as Error).message}\n`);
  process.exit(1);
});
