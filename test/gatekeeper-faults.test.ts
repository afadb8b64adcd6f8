import { spawnSync } from "node:child_process";
import {
  closeSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
  fsyncSync,
} from "node:fs";
import * as path from "node:path";
import { Client } from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Gatekeeper } from "../programs/gatekeeper/server";
import { REDACTED_SEGMENT, startGatekeeper } from "../programs/gatekeeper/server";
import { CHECKPOINT_FILE, checkpointProblem, segmentFileName } from "../programs/gatekeeper/spool";
import {
  ALL_KEYS,
  alice,
  auth,
  BACKEND_KEY,
  bearer,
  capturingLogger,
  childEnv,
  childFixture,
  expectExactlyOnce,
  expectOpenAiError,
  get,
  makeKey,
  olga,
  removeBundle,
  requestStream,
  scratch,
  sleep,
  spawnGatekeeper,
  spoolRecords,
  spoolText,
  startInProcess,
  testConfig,
  waitFor,
  waitHealthy,
  writeKeys,
} from "./helpers/gatekeeper";
import { findPostgres, freeLoopbackPort, POSTGRES_MISSING_REASON, PostgresCluster } from "./helpers/postgres";

/**
 * The gatekeeper's faults that need a real database: the spool's disk filling up (on a real,
 * size-limited file system), a corrupt shipping checkpoint, and request ids that carry a key.
 * The audit log must lose nothing and duplicate nothing through each.
 */

afterAll(removeBundle);

const postgres = findPostgres();
if (!postgres) console.warn(`gatekeeper fault tests skipped: ${POSTGRES_MISSING_REASON}`);
it.runIf(!postgres && Boolean(process.env.CI))("PostgreSQL server binaries are installed (required in CI)", () => {
  expect.fail(POSTGRES_MISSING_REASON);
});

let cluster: PostgresCluster;
const clients: Client[] = [];
async function connect(url: string): Promise<Client> {
  const client = new Client({ connectionString: url });
  client.on("error", () => undefined);
  await client.connect();
  clients.push(client);
  return client;
}
beforeAll(async () => {
  if (postgres) cluster = await PostgresCluster.create();
});
afterAll(async () => {
  await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  await cluster?.destroy();
});

const requestIds = async (client: Client, like: string): Promise<string[]> =>
  (
    await client.query<{ request_id: string }>(
      "SELECT request_id FROM gatekeeper.decisions WHERE request_id LIKE $1 ORDER BY request_id",
      [like],
    )
  ).rows.map((r) => r.request_id);

interface Health {
  status: string;
  spool: { writable: boolean; unshippedBytes: number | null };
  database: { connected: boolean | null };
}
const health = async (port: number): Promise<{ status: number; body: Health; ms: number }> => {
  const started = Date.now();
  const reply = await get(port, "/healthz");
  return { status: reply.status, body: JSON.parse(reply.body) as Health, ms: Date.now() - started };
};
const shipped = async (port: number): Promise<boolean> => (await health(port)).body.spool.unshippedBytes === 0;

// ---- disk full, on a real small file system ---------------------------------------------------------

/** A real, size-limited file system mounted for one test: tmpfs, or ext4 in a loop-mounted image. */
interface SmallFilesystem {
  readonly kind: string;
  readonly dir: string;
  unmount(): void;
}

const run = (command: string, args: readonly string[]) => spawnSync(command, args, { encoding: "utf8" });
const uid = process.getuid?.() ?? 0;
const gid = process.getgid?.() ?? 0;
/** mount(2) needs root: as root directly, else through passwordless sudo (as on CI runners), else not at all. */
const privileged = (command: string, args: readonly string[]) =>
  uid === 0 ? run(command, args) : run("sudo", ["-n", command, ...args]);

function mountSmallFilesystem(kind: "tmpfs" | "ext4", megabytes: number): SmallFilesystem {
  const base = scratch(`fs-${kind}`);
  const dir = path.join(base, "mnt");
  mkdirSync(dir);
  const image = path.join(base, "disk.img");
  const mounted =
    kind === "tmpfs"
      ? privileged("mount", ["-t", "tmpfs", "-o", `size=${megabytes}m,mode=0700,uid=${uid},gid=${gid}`, "tmpfs", dir])
      : (() => {
          const made = run("mkfs.ext4", ["-q", "-F", "-m", "0", image, `${megabytes}M`]);
          if (made.status !== 0) return made;
          const loop = privileged("mount", ["-o", "loop", image, dir]);
          return loop.status === 0 && uid !== 0 ? privileged("chown", [`${uid}:${gid}`, dir]) : loop;
        })();
  if (mounted.status !== 0) {
    privileged("umount", ["-l", dir]);
    rmSync(base, { recursive: true, force: true });
    throw new Error(`cannot mount a ${kind} file system: ${(mounted.stderr || mounted.error?.message || "").trim()}`);
  }
  return {
    kind,
    dir,
    unmount: () => {
      // Lazy: a file the gatekeeper still holds open must not leave the mount behind.
      privileged("umount", ["-l", dir]);
      rmSync(base, { recursive: true, force: true });
    },
  };
}

/** Which small file systems this machine lets the test mount (root, mount(2) allowed), and why not. */
function mountableFilesystems(): { readonly kinds: ("tmpfs" | "ext4")[]; readonly reason: string } {
  const kinds: ("tmpfs" | "ext4")[] = [];
  const reasons: string[] = [];
  for (const kind of ["tmpfs", "ext4"] as const) {
    try {
      mountSmallFilesystem(kind, 8).unmount();
      kinds.push(kind);
    } catch (error) {
      reasons.push((error as Error).message);
    }
  }
  return { kinds, reason: reasons.join("; ") };
}

/** Fills the file system to the last byte; returns the ballast file (delete it to free the disk). */
function fillUp(dir: string): string {
  const file = path.join(dir, "ballast");
  const fd = openSync(file, "w");
  try {
    for (const chunkBytes of [1 << 20, 64 << 10, 4 << 10, 512, 1]) {
      const chunk = Buffer.alloc(chunkBytes, 0x61);
      try {
        for (;;) writeSync(fd, chunk);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "ENOSPC") throw error;
      }
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return file;
}

const mountable = postgres ? mountableFilesystems() : { kinds: [], reason: POSTGRES_MISSING_REASON };
if (postgres && mountable.kinds.length < 2)
  console.warn(`gatekeeper disk-full tests skipped for some file systems: ${mountable.reason}`);

describe.skipIf(!postgres)("FAULT: the spool's disk fills up", () => {
  // A key allowed 1 request a minute after a burst of 3: a refused request must not spend its budget.
  const slow = makeKey("slow: 3, then 1 a minute", ["llm"], { ratePerMinute: 1, burst: 3 });

  it.each(["tmpfs", "ext4"] as const)(
    "on %s: refuses with 503 at once, leaves no pile of files, recovers within a second or two of the disk freeing, and ships every answered decision exactly once",
    async (kind) => {
      if (!mountable.kinds.includes(kind)) {
        console.warn(`skipped on ${kind}: ${mountable.reason}`);
        return;
      }
      const fs = mountSmallFilesystem(kind, 16);
      const url = await cluster.createDatabase(`disk_full_${kind}`);
      const { log, lines } = capturingLogger();
      const dir = scratch("disk-full");
      // Small segments, so rotation happens while the disk is full too.
      const config = testConfig(dir, {
        databaseUrl: url,
        spoolDir: path.join(fs.dir, "spool"),
        spoolSegmentBytes: 64 * 1024,
      });
      mkdirSync(path.dirname(config.keysFile), { recursive: true });
      writeKeys(config, [...ALL_KEYS, slow]);
      const gatekeeper = await startGatekeeper({ config, log, keysPollMs: 100 });
      const port = await gatekeeper.listen();
      let done = false;
      try {
        await waitFor("migrations", () => gatekeeper.shipper?.status().migrated === true);
        const stream = requestStream({
          port: () => port,
          key: alice.key,
          prefix: `full-${kind}`,
          concurrency: 8,
          until: () => done,
        });
        await sleep(400);

        const ballast = fillUp(fs.dir);
        await waitFor("the spool to notice the full disk", () => !gatekeeper.spool.writable, 5000);
        // While full: /healthz answers at once and says why; a limited key's refused requests cost it nothing.
        const during = await health(port);
        expect(during.status).toBe(503);
        expect(during.body.spool.writable).toBe(false);
        expect(during.ms).toBeLessThan(1000);
        for (let i = 0; i < 10; i++) expectOpenAiError(await auth(port, bearer(slow.key)), 503, "audit_unavailable");
        await sleep(1500);
        const segmentsWhileFull = readdirSync(config.spoolDir)
          .filter((f) => f.startsWith("decisions-"))
          .sort()
          .map((f) => ({ file: f, bytes: statSync(path.join(config.spoolDir, f)).size }));

        rmSync(ballast);
        const freedAt = Date.now();
        await waitFor("the spool to write again", () => gatekeeper.spool.writable, 5000);
        const recoveredMs = Date.now() - freedAt;
        expect((await auth(port, bearer(alice.key))).status).toBe(200);
        expect((await health(port)).status).toBe(200);
        await sleep(500);
        done = true;
        const result = await stream;

        // The fault was real: requests were refused with 503 while the disk was full, and only then.
        const statuses = [...result.answered.values()];
        expect(statuses.filter((s) => s === 503).length).toBeGreaterThan(0);
        expect(statuses.every((s) => s === 200 || s === 503)).toBe(true);
        expect(result.connectionFailures).toEqual([]);
        expect(recoveredMs).toBeLessThan(2500);

        // The three requests the slow key may make were not spent by the ten refused during the outage.
        expect(
          [
            await auth(port, bearer(slow.key)),
            await auth(port, bearer(slow.key)),
            await auth(port, bearer(slow.key)),
          ].map((r) => r.status),
        ).toEqual([200, 200, 200]);
        expectOpenAiError(await auth(port, bearer(slow.key)), 429, "rate_limit_exceeded");

        // No pile of files: as many segments as the decisions fill, each but the newest holding some.
        const bytesWhileFull = segmentsWhileFull.reduce((sum, s) => sum + s.bytes, 0);
        expect(segmentsWhileFull.length).toBeLessThanOrEqual(Math.ceil(bytesWhileFull / config.spoolSegmentBytes) + 1);
        const segments = readdirSync(config.spoolDir)
          .filter((f) => f.startsWith("decisions-"))
          .sort();
        for (const { file, bytes } of [
          ...segmentsWhileFull.slice(0, -1),
          ...segments.slice(0, -1).map((f) => ({ file: f, bytes: statSync(path.join(config.spoolDir, f)).size })),
        ])
          expect(bytes, file).toBeGreaterThan(0);

        // One line when the outage began and one when it ended, not one per refused request.
        const outageLines = lines.filter((l) => l.message.includes("audit spool cannot write"));
        expect(outageLines).toHaveLength(1);
        expect(lines.filter((l) => l.message.includes("writable again"))).toHaveLength(1);
        expect(lines.filter((l) => l.level !== "info").length).toBeLessThanOrEqual(4);

        // Every answered decision is in the table exactly once; no refused one is.
        await waitFor("the spool to be shipped", () => shipped(port), 10_000);
        const answered200 = new Map([...result.answered].filter(([, status]) => status === 200));
        const client = await connect(url);
        await expectExactlyOnce(client, `full-${kind}`, answered200, result.sent);
        const inTable = new Set(await requestIds(client, `full-${kind}-%`));
        const refusedButRecorded = [...result.answered].filter(([id, status]) => status === 503 && inTable.has(id));
        expect(refusedButRecorded).toEqual([]);
      } finally {
        done = true;
        await gatekeeper.close();
        fs.unmount();
        rmSync(dir, { recursive: true, force: true });
      }
    },
    60_000,
  );

  it.runIf(mountable.kinds.includes("tmpfs"))(
    "starts on a disk that is already full, refuses with 503 and reports unhealthy, then recovers without a restart",
    async () => {
      const fs = mountSmallFilesystem("tmpfs", 8);
      const dir = scratch("full-at-start");
      const config = testConfig(dir, { spoolDir: path.join(fs.dir, "spool") });
      mkdirSync(path.dirname(config.keysFile), { recursive: true });
      mkdirSync(config.spoolDir);
      writeKeys(config, ALL_KEYS);
      const ballast = fillUp(fs.dir);
      const { log } = capturingLogger();
      const gatekeeper = await startGatekeeper({ config, log, keysPollMs: 100 });
      const port = await gatekeeper.listen();
      try {
        expectOpenAiError(await auth(port, bearer(alice.key)), 503, "audit_unavailable");
        expect((await health(port)).status).toBe(503);
        rmSync(ballast);
        await waitFor("the spool to write again", () => gatekeeper.spool.writable, 5000);
        expect((await auth(port, bearer(alice.key), "llm")).status).toBe(200);
        expect((await health(port)).status).toBe(200);
        expect(spoolRecords(config.spoolDir).map((r) => r.reason)).toEqual(["allowed"]);
      } finally {
        await gatekeeper.close();
        fs.unmount();
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );
});

// ---- a corrupt checkpoint -----------------------------------------------------------------------------

describe.skipIf(!postgres)("FAULT: shipped.json is corrupt at start", () => {
  /** The spool's first decision line, to aim a checkpoint into the middle of it. */
  const firstLineLength = (spoolDir: string): number =>
    readFileSync(path.join(spoolDir, segmentFileName(1)), "utf8").indexOf("\n") + 1;

  const variants: readonly { readonly name: string; readonly content: (spoolDir: string) => string | Buffer }[] = [
    { name: "empty", content: () => "" },
    { name: "torn mid-write", content: () => '{"segment":1,"offs' },
    { name: "garbage bytes", content: () => Buffer.from([0x00, 0xff, 0x13, 0x37, 0x7b, 0x0a, 0xc3, 0x28]) },
    { name: "the wrong shape", content: () => JSON.stringify({ segment: "1", offset: -5 }) },
    {
      name: "an offset inside a line",
      content: (spoolDir) => JSON.stringify({ segment: 1, offset: firstLineLength(spoolDir) + 10 }),
    },
    {
      name: "an offset past the end of its segment",
      content: () => JSON.stringify({ segment: 1, offset: 10_000_000 }),
    },
    { name: "a segment after the newest", content: () => JSON.stringify({ segment: 99, offset: 0 }) },
  ];

  it.each(variants)(
    "$name: starts, logs it, replays from the oldest segment; every decision ends up in the table exactly once",
    async ({ name, content }) => {
      const url = await cluster.createDatabase(`checkpoint_${variants.findIndex((v) => v.name === name)}`);
      const client = await connect(url);
      const prefix = `cp${variants.findIndex((v) => v.name === name)}`;
      // First run: 30 decisions, shipped, checkpoint saved on a clean stop.
      const first = await startInProcess("checkpoint", { databaseUrl: url });
      const { config } = first;
      for (let i = 0; i < 30; i++)
        expect(
          (await auth(first.port, { ...bearer(alice.key), "X-Request-Id": `${prefix}-a${String(i).padStart(2, "0")}` }))
            .status,
        ).toBe(200);
      await waitFor("the first run to be shipped", () => shipped(first.port));
      await first.gatekeeper.close();
      const checkpointFile = path.join(config.spoolDir, CHECKPOINT_FILE);
      expect(checkpointProblem(readFileSync(checkpointFile, "utf8"))).toBeUndefined();

      // The database lost half of those rows (restored from a backup): only a replay brings them back.
      await client.query(
        "DELETE FROM gatekeeper.decisions WHERE request_id LIKE $1 AND right(request_id, 1) IN ('0','2','4','6','8')",
        [`${prefix}-a%`],
      );
      writeFileSync(checkpointFile, content(config.spoolDir));

      const { log, lines } = capturingLogger();
      let second: Gatekeeper | undefined;
      try {
        second = await startGatekeeper({ config, log, keysPollMs: 100 });
        const port = await second.listen();
        expect((await health(port)).status).toBe(200);
        for (let i = 0; i < 20; i++)
          expect(
            (await auth(port, { ...bearer(alice.key), "X-Request-Id": `${prefix}-b${String(i).padStart(2, "0")}` }))
              .status,
          ).toBe(200);
        await waitFor("the replay and the new decisions to be shipped", () => shipped(port));
        const complaint = lines.find(
          (l) => l.level === "error" && l.message.includes(`checkpoint ${CHECKPOINT_FILE} is unusable`),
        );
        expect(complaint?.message).toContain("replays from the oldest segment");

        const ids = await requestIds(client, `${prefix}-%`);
        expect(ids).toHaveLength(50);
        expect(new Set(ids).size).toBe(50);
        expect(ids).toEqual([
          ...Array.from({ length: 30 }, (_, i) => `${prefix}-a${String(i).padStart(2, "0")}`),
          ...Array.from({ length: 20 }, (_, i) => `${prefix}-b${String(i).padStart(2, "0")}`),
        ]);
        // The shipper sent the whole spool again; the primary key absorbed the rows already there.
        expect(second.shipper?.status().shippedRows).toBeGreaterThanOrEqual(50);
        await second.close();
        // The next save replaced the bad file with a good one.
        expect(checkpointProblem(readFileSync(checkpointFile, "utf8"))).toBeUndefined();
      } finally {
        await second?.close();
        rmSync(first.dir, { recursive: true, force: true });
      }
    },
  );

  it("the bundled program starts on a garbage checkpoint (it used to exit at start and refuse every request)", async () => {
    const url = await cluster.createDatabase("checkpoint_bundle");
    const { config, dir } = childFixture("checkpoint-bundle");
    mkdirSync(config.spoolDir, { recursive: true });
    writeFileSync(path.join(config.spoolDir, CHECKPOINT_FILE), "\u0000garbage{");
    const port = await freeLoopbackPort();
    const child = spawnGatekeeper(childEnv(config, port, url));
    try {
      await waitHealthy(port, child);
      expect((await auth(port, { ...bearer(alice.key), "X-Request-Id": "cp-bundle-1" })).status).toBe(200);
      expect(child.output()).toContain(`checkpoint ${CHECKPOINT_FILE} is unusable`);
      const client = await connect(url);
      await waitFor(
        "the decision in the table",
        async () => (await requestIds(client, "cp-bundle-%").catch(() => [])).length === 1,
      );
    } finally {
      child.child.kill("SIGTERM");
      await child.exited;
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// ---- request ids (and paths) that carry a key ---------------------------------------------------------

describe.skipIf(!postgres)("FAULT: a client sends a key as its X-Request-Id", () => {
  it("the key is neither echoed nor forwarded nor written to the spool or the database; ordinary ids are kept", async () => {
    const url = await cluster.createDatabase("request_id_key");
    const gk = await startInProcess("request-id-key", { databaseUrl: url });
    try {
      const bodyOf = (key: string) => key.slice("ihk_".length);
      const secretIds: Record<string, string> = {
        "the request's own key": alice.key,
        "the request's own key, without its prefix": bodyOf(alice.key),
        "another client's key": olga.key,
        "another client's key, without its prefix, inside a longer id": `req-${bodyOf(olga.key)}-1`,
        "the key in upper case": alice.key.toUpperCase(),
        "the backends' key": BACKEND_KEY,
        "an OpenAI project key": "sk-proj-Xq3vN9dLr2TgW8yBk5HmZc1FsJ7aPoE4uQiYtR6nVbCxMl0w",
        "a JWT": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSJ9.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk",
        "64 hex digits": "3f9a2c1be0d45a6f7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c",
      };
      const keptIds = [
        "req-123",
        "c8f8e524-bbb6-4d71-aa52-6602cf626d53",
        "01ARZ3NDEKTSV4RRFFQ69G5FAV",
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "ci-run-42-step-3",
        `${alice.entry.id}-job-20261201`,
      ];
      for (const [what, id] of Object.entries(secretIds)) {
        const reply = await auth(gk.port, { ...bearer(alice.key), "X-Request-Id": id });
        expect(reply.status, what).toBe(200);
        expect(reply.headers["x-request-id"], what).toMatch(
          /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/,
        );
        // Refused requests echo it too: the same rule holds on a 401.
        const refused = await auth(gk.port, { "X-Request-Id": id });
        expect(refused.status, what).toBe(401);
        expect(refused.headers["x-request-id"], what).not.toBe(id);
      }
      for (const id of keptIds)
        expect((await auth(gk.port, { ...bearer(alice.key), "X-Request-Id": id })).headers["x-request-id"]).toBe(id);
      // A key pasted into the URL path is not recorded either.
      expect(
        (
          await auth(gk.port, {
            ...bearer(alice.key),
            "X-Request-Id": "path-leak-1",
            "X-Forwarded-Uri": `/v1/ocr/convert/${olga.key}/file`,
          })
        ).status,
      ).toBe(200);

      await waitFor("everything shipped", () => shipped(gk.port));
      const client = await connect(url);
      const { rows } = await client.query<{ request_id: string; path: string | null }>(
        "SELECT request_id, path FROM gatekeeper.decisions",
      );
      const stored = JSON.stringify(rows) + spoolText(gk.config.spoolDir);
      for (const [what, id] of Object.entries(secretIds)) {
        expect(stored.includes(id), what).toBe(false);
        expect(stored.toLowerCase().includes(id.toLowerCase()), what).toBe(false);
      }
      expect(stored).not.toContain(bodyOf(olga.key));
      expect(rows.map((r) => r.request_id)).toEqual(expect.arrayContaining(keptIds));
      expect(rows.find((r) => r.request_id === "path-leak-1")?.path).toBe(`/v1/ocr/convert/${REDACTED_SEGMENT}/file`);
    } finally {
      await gk.gatekeeper.close();
      rmSync(gk.dir, { recursive: true, force: true });
    }
  });
});
