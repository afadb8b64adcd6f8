import { randomBytes } from "node:crypto";
import { existsSync, rmSync, writeFileSync } from "node:fs";
import * as net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RUNSC_VERSION } from "../programs/sandbox/runsc-version";
import { ROOTFS_RECIPE } from "../programs/sandbox/rootfs";
import { builtRunscVersion } from "../tools/runsc";
import { readRootfsManifest } from "../tools/sandbox-rootfs";
import { leftovers, sandboxMissing, startTestSandbox, type TestSandbox } from "./helpers/sandbox";

/**
 * The sandbox API with the real runsc (systrap) on this machine: ordinary programs in each
 * language, and hostile ones, each stopped by the limit meant for it and reported as such. The
 * last test proves the machine is left as it was: no runsc process, mount or cgroup of this file.
 */

const missing = sandboxMissing();
if (missing) console.warn(`sandbox tests skipped: ${missing}`);

// Required wherever CI runs the suite as root (.ci/run, the workflows' sudo step); a non-root run skips with the notice.
it.runIf(Boolean(missing) && process.env.CI === "true" && process.getuid?.() === 0)(
  "runsc and the languages' tree are built, and the tests run as root (required in CI)",
  () => {
    expect.fail(missing);
  },
);

it.runIf(builtRunscVersion() !== undefined)("the runsc binary reports the pinned pseudo-version", () => {
  expect(builtRunscVersion()).toBe(RUNSC_VERSION);
});

it.runIf(readRootfsManifest() !== undefined)(
  "the languages' tree holds the recipe's packages (a drift from deb.debian.org is only reported)",
  () => {
    const manifest = readRootfsManifest()!;
    expect(manifest.suite).toBe(ROOTFS_RECIPE.suite);
    expect(Object.keys(manifest.packages).sort()).toEqual(Object.keys(ROOTFS_RECIPE.packages).sort());
    for (const [name, version] of Object.entries(ROOTFS_RECIPE.packages)) {
      if (manifest.packages[name] !== version)
        console.warn(
          `sandbox rootfs: ${name} is ${manifest.packages[name]} from ${manifest.mirror}; the node's snapshot pins ${version}`,
        );
      else expect(manifest.drift).not.toContainEqual(expect.stringContaining(name));
    }
  },
);

describe.skipIf(Boolean(missing))("sandbox executions on the real runsc", () => {
  let sandbox: TestSandbox;
  const run = (body: Record<string, unknown>, keyId?: string) =>
    sandbox.call("POST", "/v1/sandbox/executions", body, keyId);
  const python = (code: string, extra: Record<string, unknown> = {}) =>
    run({ language: "python", files: [{ content: code }], ...extra });

  beforeAll(async () => {
    sandbox = await startTestSandbox("exec");
  }, 60_000);

  afterAll(async () => {
    await sandbox?.close();
    if (sandbox) rmSync(sandbox.stateDir, { recursive: true, force: true });
  }, 60_000);

  describe("ordinary programs", () => {
    it("lists the languages the tree holds, with the installed versions", async () => {
      const { status, json } = await sandbox.call("GET", "/v1/sandbox/languages");
      expect(status).toBe(200);
      const byName = Object.fromEntries(json.languages.map((l: { language: string }) => [l.language, l]));
      expect(Object.keys(byName).sort()).toEqual(["bash", "javascript", "python"]);
      const manifest = readRootfsManifest()!;
      expect(byName.python.package_version).toBe(manifest.packages.python3);
      expect(manifest.packages.python3.startsWith(byName.python.version)).toBe(true);
    });

    it("runs Python, JavaScript and bash with files, stdin and arguments", async () => {
      const py = await python("import sys, helper\nprint(helper.twice(sys.stdin.read().strip()), sys.argv[1:])", {
        files: [
          { content: "import sys, helper\nprint(helper.twice(sys.stdin.read().strip()), sys.argv[1:])" },
          { name: "helper.py", content: "def twice(s): return s * 2" },
        ],
        stdin: "ab",
        args: ["x", "y z"],
      });
      expect(py.status).toBe(200);
      expect(py.json.stdout).toBe("abab ['x', 'y z']\n");
      expect(py.json).toMatchObject({ exit_code: 0, signal: null, timed_out: false, truncated: false, limits_hit: [] });
      const js = await run({
        language: "node",
        files: [
          { content: "const lib = require('./lib/x.js'); console.log(lib.v, process.argv.slice(2).join(','))" },
          { name: "lib/x.js", content: "exports.v = 6 * 7" },
        ],
        args: ["a", "b"],
      });
      expect(js.json.stdout).toBe("42 a,b\n");
      expect(js.json.language).toBe("javascript");
      const sh = await run({
        language: "bash",
        files: [{ content: 'read x; echo "got $x"; echo oops >&2; exit 7' }],
        stdin: "hello\n",
      });
      expect(sh.json).toMatchObject({ stdout: "got hello\n", stderr: "oops\n", exit_code: 7, signal: null });
    }, 60_000);

    it("a key's own ceiling (from the gatekeeper) lowers the node's, and the defaults with it", async () => {
      const tight = { "x-hub-sandbox-limits": JSON.stringify({ wall_ms: 800, memory_bytes: 96 * 1024 * 1024 }) };
      const asked = await sandbox.call(
        "POST",
        "/v1/sandbox/executions",
        { language: "bash", files: [{ content: "true" }], limits: { wall_ms: 5000 } },
        "k_tight",
        tight,
      );
      expect(asked.status).toBe(400);
      expect(asked.json.error.message).toMatch(/limits\.wall_ms 5000 .* to 800 ms/);
      const defaulted = await sandbox.call(
        "POST",
        "/v1/sandbox/executions",
        { language: "bash", files: [{ content: "sleep 5" }] },
        "k_tight",
        tight,
      );
      expect(defaulted.json.limits).toMatchObject({ wall_ms: 800, memory_bytes: 96 * 1024 * 1024 });
      expect(defaulted.json.limits_hit).toEqual(["wall"]);
      const garbled = await sandbox.call(
        "POST",
        "/v1/sandbox/executions",
        { language: "bash", files: [{ content: "true" }] },
        "k_tight",
        { "x-hub-sandbox-limits": '{"wall_ms": -1}' },
      );
      expect(garbled.status).toBe(500);
    }, 30_000);

    it("reports a program that dies of a signal by the signal", async () => {
      const { json } = await run({ language: "bash", files: [{ content: "kill -SEGV $$" }] });
      expect(json).toMatchObject({ exit_code: null, signal: "SIGSEGV", limits_hit: [] });
    }, 30_000);

    it("refuses what it cannot run, naming the field and what would work", async () => {
      const unknown = await run({ language: "cobol", files: [{ content: "x" }] });
      expect(unknown.status).toBe(400);
      expect(unknown.json.error.code).toBe("unknown_language");
      expect(unknown.json.error.message).toContain("python");
      const limits = await python("1", { limits: { wall_ms: 10 ** 9, memory_bytes: 1 } });
      expect(limits.status).toBe(400);
      expect(limits.json.error.message).toMatch(/limits\.wall_ms 1000000000 .* to 120000 ms/);
      expect(limits.json.error.message).toMatch(/limits\.memory_bytes 1 .* from 67108864 bytes/);
      const traversal = await run({ language: "python", files: [{ content: "1" }, { name: "../x.py", content: "2" }] });
      expect(traversal.status).toBe(400);
      expect(traversal.json.error.message).toContain("files.1.name");
      const token = await fetch(`${sandbox.url}/v1/sandbox/languages`, {
        headers: { authorization: "Bearer not-the-token", "x-hub-key-id": "k_test" },
      });
      expect(token.status).toBe(401);
    }, 30_000);
  });

  describe("hostile programs, each stopped by its limit", () => {
    it("an infinite loop: the CPU-time limit", async () => {
      const { json } = await python("while True: pass", { limits: { cpu_ms: 800, wall_ms: 20_000 } });
      expect(json.limits_hit).toEqual(["cpu"]);
      expect(json).toMatchObject({ signal: "SIGKILL", exit_code: null, timed_out: false });
      // Stopped within a few polls of the limit, well before the wall clock.
      expect(json.cpu_ms).toBeGreaterThanOrEqual(800);
      expect(json.cpu_ms).toBeLessThan(2_500);
    }, 30_000);

    it("a busy loop on 16 threads: held to one CPU, then the CPU-time limit", async () => {
      const code =
        "import threading\ndef spin():\n    while True: pass\nfor _ in range(16): threading.Thread(target=spin).start()";
      const { json } = await python(code, { limits: { cpu_ms: 1500, wall_ms: 20_000 } });
      expect(json.limits_hit).toContain("cpu");
      // One CPU's quota: CPU time cannot outrun the clock (a little slack for the sandbox's own start).
      expect(json.cpu_ms).toBeLessThan(json.wall_ms + 400);
    }, 30_000);

    it("a sleep past the wall-clock limit", async () => {
      const { json } = await run({
        language: "bash",
        files: [{ content: "echo started; sleep 30; echo never" }],
        limits: { wall_ms: 1000 },
      });
      expect(json).toMatchObject({ limits_hit: ["wall"], timed_out: true, signal: "SIGKILL", stdout: "started\n" });
      expect(json.wall_ms).toBeGreaterThanOrEqual(1000);
      expect(json.wall_ms).toBeLessThan(5000);
    }, 30_000);

    it("a memory hog: the memory limit (the host cgroup ends the sandbox)", async () => {
      const { json } = await python("chunks = []\nwhile True: chunks.append(bytearray(16 * 1024 * 1024))", {
        limits: { memory_bytes: 128 * 1024 * 1024 },
      });
      expect(json.limits_hit).toContain("memory");
      expect(json.signal).toBe("SIGKILL");
      // The cgroup's own ceiling: the limit plus gVisor's overhead, never more.
      expect(json.memory_bytes).toBeLessThanOrEqual(128 * 1024 * 1024 + 64 * 1024 * 1024);
    }, 30_000);

    it("a fork bomb: RLIMIT_NPROC holds it at the process limit until the clock stops it; the sandbox survives to report", async () => {
      const { json } = await run({
        language: "bash",
        files: [{ content: "while :; do sleep 60 & done" }],
        limits: { processes: 32, wall_ms: 2000 },
      });
      expect(json.limits_hit).toEqual(expect.arrayContaining(["wall", "processes"]));
      expect(json.limits_hit).not.toContain("memory");
    }, 30_000);

    it("1 GB on stdout: cut at the output limit and stopped", async () => {
      const { json } = await python("import sys\nblock = 'x' * 65536\nfor _ in range(16384): sys.stdout.write(block)", {
        limits: { output_bytes: 256 * 1024 },
      });
      expect(json).toMatchObject({
        limits_hit: ["output"],
        truncated: true,
        stdout_truncated: true,
        stderr_truncated: false,
      });
      expect(json.stdout.length).toBe(256 * 1024);
    }, 30_000);

    it("writing outside the scratch directory fails; /work and /tmp take writes, up to their size", async () => {
      const code = [
        "import os",
        "for p in ['/etc/evil', '/usr/evil', '/evil', '/root/evil', '/proc/sys/kernel/hostname']:",
        "    try:",
        "        open(p, 'w').write('x'); print(p, 'WRITTEN')",
        "    except OSError as e: print(p, e.errno)",
        "open('/work/ok', 'w').write('fine'); print('work', open('/work/ok').read())",
        "open('/tmp/ok', 'w').write('fine'); print('tmp', open('/tmp/ok').read())",
        "try:",
        "    open('/work/big', 'wb').write(b'0' * (3 * 1024 * 1024)); print('big WRITTEN')",
        "except OSError as e: print('big', e.errno)",
      ].join("\n");
      const { json } = await python(code, { limits: { scratch_bytes: 2 * 1024 * 1024 } });
      expect(json.stdout).not.toContain("WRITTEN");
      expect(json.stdout).toContain("work fine");
      expect(json.stdout).toContain("tmp fine");
      // EFBIG (RLIMIT_FSIZE at the scratch size) or ENOSPC (the tmpfs is full): either way, no 3 MB file.
      expect(json.stdout).toMatch(/big (27|28)\n/);
      expect(existsSync("/etc/evil")).toBe(false);
    }, 30_000);

    it("/proc shows only the sandbox; a host file is not there; the user is nobody without capabilities", async () => {
      const marker = `/tmp/ih-host-only-${randomBytes(6).toString("hex")}`;
      writeFileSync(marker, "host secret");
      try {
        const code = [
          "import os",
          "names = sorted({open(f'/proc/{p}/comm').read().strip() for p in os.listdir('/proc') if p.isdigit()})",
          "print('procs', names)",
          `print('marker', os.path.exists(${JSON.stringify(marker)}))`,
          "print('uid', os.getuid(), os.getgid())",
          "print([l for l in open('/proc/self/status') if l.startswith('CapEff')][0].strip())",
          "print('kernel', open('/proc/version').read().split()[0:3])",
        ].join("\n");
        const { json } = await python(code);
        const procs = /procs \[(.*)\]/.exec(json.stdout)?.[1] ?? "";
        expect(
          procs
            .split(", ")
            .map((n) => n.replace(/'/g, ""))
            .sort(),
        ).toEqual(["python3", "sleep"]);
        expect(json.stdout).toContain("marker False");
        expect(json.stdout).toContain("uid 65534 65534");
        expect(json.stdout).toContain("CapEff:\t0000000000000000");
      } finally {
        rmSync(marker, { force: true });
      }
    }, 30_000);

    it("sockets: 127.0.0.1 is the sandbox's own loopback, the VPC range and the internet are unreachable", async () => {
      let hostConnections = 0;
      const listener = net.createServer((socket) => {
        hostConnections += 1;
        socket.destroy();
      });
      await new Promise<void>((resolve) => listener.listen(0, "127.0.0.1", resolve));
      const port = (listener.address() as net.AddressInfo).port;
      try {
        const code = [
          "import socket",
          `for host, port in [('127.0.0.1', ${port}), ('10.110.0.2', 8082), ('10.0.0.1', 80), ('1.1.1.1', 443)]:`,
          "    try:",
          "        socket.create_connection((host, port), timeout=2); print(host, 'CONNECTED')",
          "    except OSError as e: print(host, e.errno)",
          "try:",
          "    socket.getaddrinfo('deb.debian.org', 80); print('dns RESOLVED')",
          "except OSError as e: print('dns', type(e).__name__)",
        ].join("\n");
        const { json } = await python(code);
        expect(json.stdout).not.toMatch(/CONNECTED|RESOLVED/);
        expect(json.stdout).toContain("127.0.0.1 111");
        expect(json.stdout).toMatch(/10\.110\.0\.2 101/);
        expect(hostConnections).toBe(0);
      } finally {
        listener.close();
      }
    }, 30_000);
  });

  describe("sessions", () => {
    it("keep files between executions for their key only, and end on a limit", async () => {
      const created = await sandbox.call("POST", "/v1/sandbox/sessions", { ttl_seconds: 60 }, "k_alice");
      expect(created.status).toBe(201);
      const id = created.json.id as string;
      const first = await run(
        { language: "bash", session_id: id, files: [{ content: "echo kept > state.txt; ln -s /etc evil; echo done" }] },
        "k_alice",
      );
      expect(first.json.stdout).toBe("done\n");
      // The next files go in through the sandbox itself: the symlink leads into the sandbox's /etc, never the host's.
      const second = await run(
        {
          language: "bash",
          session_id: id,
          files: [
            { name: "b.sh", content: "cat state.txt; ls evil/ | head -1 >/dev/null; echo ok" },
            { name: "evil/planted", content: "x" },
          ],
        },
        "k_alice",
      );
      expect(second.status).toBe(400);
      expect(existsSync("/etc/planted")).toBe(false);
      const third = await run(
        { language: "bash", session_id: id, files: [{ name: "c.sh", content: "cat state.txt" }] },
        "k_alice",
      );
      expect(third.json.stdout).toBe("kept\n");
      const stranger = await run(
        { language: "bash", session_id: id, files: [{ content: "cat state.txt" }] },
        "k_mallory",
      );
      expect(stranger.status).toBe(404);
      const loop = await run(
        {
          language: "bash",
          session_id: id,
          files: [{ name: "d.sh", content: "while :; do :; done" }],
          limits: { wall_ms: 500 },
        },
        "k_alice",
      );
      expect(loop.json.limits_hit).toContain("wall");
      const gone = await run(
        { language: "bash", session_id: id, files: [{ name: "e.sh", content: "true" }] },
        "k_alice",
      );
      expect(gone.status).toBe(404);
    }, 60_000);
  });

  it("leaves no process, mount, bundle or cgroup behind once closed", async () => {
    await sandbox.close();
    const left = leftovers(sandbox.stateDir, sandbox.cgroupParent);
    expect(left).toEqual({ processes: [], mounts: [], cgroups: [], files: [] });
  }, 60_000);
});
