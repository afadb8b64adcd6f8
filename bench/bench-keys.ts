import { loadavg } from "node:os";
import { benchArgs } from "./args";
import { AdminClient } from "../cli/hub/admin-client";
import { table } from "../cli/plan/view";
import { GatewayRig, rigMissing, rigRequest } from "../test/helpers/gateway-rig";

/**
 * How soon a key change takes effect, through the real Traefik and gatekeeper (the test rig):
 * from the moment `hub keys create` asks the admin API to the first request the gateway accepts
 * with the new key, and from `hub keys revoke` to the first refusal. On the gatekeeper that took
 * the change, on a second gatekeeper sharing the PostgreSQL (NOTIFY, else the 500 ms poll), and
 * without a database (the state directory, watched and polled every 250 ms). Target: under 1 s each.
 *
 *   npm run bench -- keys [--runs 20]
 */

const { values } = benchArgs("bench keys", "usage: npm run bench -- keys [--runs 20]", {
  runs: { type: "string", default: "20" },
});
const RUNS = Math.max(1, Number(values.runs) || 20);
const TARGET_MS = 1000;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const p95 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil(xs.length * 0.95) - 1)];

/** ms from `started` until `probe` says yes, polling as fast as the loop allows. */
async function until(started: number, probe: () => Promise<boolean>): Promise<number> {
  for (;;) {
    if (await probe()) return performance.now() - started;
    if (performance.now() - started > 10_000) throw new Error("no effect within 10 s");
  }
}

async function measure(
  label: string,
  rig: GatewayRig,
  checkPort: (() => number) | undefined,
  revokeVia?: AdminClient,
): Promise<string[][]> {
  const admin = new AdminClient(`${rig.baseUrl}/v1`, rig.keys.admin.key);
  const status = async (key: string) =>
    checkPort
      ? (await rigRequest(checkPort(), { path: "/auth?scope=llm", headers: { authorization: `Bearer ${key}` } })).status
      : (await rig.request({ path: "/v1/models", headers: { authorization: `Bearer ${key}` } })).status;
  const creates: number[] = [];
  const revokes: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const started = performance.now();
    const created = await admin.createKey({ name: `bench-${i}`, scopes: ["llm"] });
    creates.push(await until(started, async () => (await status(created.key)) === 200));
    const revokeStarted = performance.now();
    await (revokeVia ?? admin).revokeKey(created.id);
    revokes.push(await until(revokeStarted, async () => (await status(created.key)) === 401));
  }
  const row = (what: string, xs: number[]) => [
    label,
    what,
    median(xs).toFixed(0),
    p95(xs).toFixed(0),
    Math.max(...xs).toFixed(0),
    Math.max(...xs) < TARGET_MS ? "yes" : "NO",
  ];
  return [row("create → first accepted", creates), row("revoke → first refused", revokes)];
}

async function main(): Promise<void> {
  const missing = rigMissing();
  if (missing) throw new Error(`the rig cannot run here: ${missing}`);
  const loadBefore = loadavg();
  const rows: string[][] = [];
  const pg = await GatewayRig.start({
    keys: { admin: { scopes: ["admin"], ratePerMinute: 60_000, burst: 1000 } },
    logToFile: true,
  });
  try {
    rows.push(...(await measure("PostgreSQL, same gatekeeper", pg, undefined)));
    const replica = await pg.startReplica();
    // Created through Traefik (gatekeeper 1), checked on gatekeeper 2; revoked on 2, checked through Traefik.
    rows.push(
      ...(await measure(
        "PostgreSQL, other gatekeeper",
        pg,
        () => replica.port,
        new AdminClient(`http://127.0.0.1:${replica.port}`, pg.keys.admin.key),
      )),
    );
  } finally {
    await pg.stop();
  }
  const file = await GatewayRig.start({
    keys: { admin: { scopes: ["admin"], ratePerMinute: 60_000, burst: 1000 } },
    logToFile: true,
    database: false,
  });
  try {
    rows.push(...(await measure("state directory (no database)", file, undefined)));
  } finally {
    await file.stop();
  }
  const out = process.stdout;
  out.write(
    `Key changes through the real Traefik and gatekeeper, ${RUNS} keys each: ms from the admin API call to the first request that shows it.\n\n`,
  );
  out.write(`${table(["store", "change", "median ms", "p95 ms", "max ms", `< ${TARGET_MS} ms`], rows)}\n\n`);
  out.write(
    `load average (1/5/15 min): ${loadBefore.map((l) => l.toFixed(2)).join(" / ")} before, ${loadavg()
      .map((l) => l.toFixed(2))
      .join(" / ")} after\n`,
  );
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench keys: ${(err as Error).message}\n`);
    process.exit(1);
  },
);
