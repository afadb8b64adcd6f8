import { spawn, spawnSync } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  truncateSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { hostname, tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

/**
 * The runner (cli/run.cjs) and the build (tools/build/) in a scratch project: the real files,
 * copied, with one small script of their own, so each build takes a fraction of a second and the
 * tests can edit, delete and damage files without touching the worktree others' tests run from.
 */

const ROOT = path.resolve(__dirname, "..");
let scratch: string;

const file = (rel: string) => path.join(scratch, rel);
const write = (rel: string, text: string) => {
  mkdirSync(path.dirname(file(rel)), { recursive: true });
  writeFileSync(file(rel), text);
};
const probeValue = (value: string) => `export const value = ${JSON.stringify(value)};\n`;

function run(script = "probe") {
  const r = spawnSync(process.execPath, [file("cli/run.cjs"), script], {
    cwd: scratch,
    encoding: "utf8",
    timeout: 60_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, built: /compiling scripts/.test(r.stderr) };
}

function runAsync(): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [file("cli/run.cjs"), "probe"], { cwd: scratch });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    child.on("error", reject);
    child.on("close", (status) => resolve({ status, stdout, stderr }));
  });
}

beforeAll(() => {
  scratch = mkdtempSync(path.join(tmpdir(), "hub-build-"));
  for (const rel of ["cli/run.cjs", "tools/build", "package.json", "package-lock.json", "tsconfig.json"])
    cpSync(path.join(ROOT, rel), file(rel), { recursive: true });
  symlinkSync(path.join(ROOT, "node_modules"), file("node_modules"));
  write("cli/probe.ts", `import { value } from "./lib/probe";\nprocess.stdout.write(\`\${value}\\n\`);\n`);
  write("cli/lib/probe/index.ts", probeValue("first"));
});

afterAll(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

// One scratch project; each step starts from the state the one before left.
describe("cli/run.cjs: a stale build never runs", () => {
  it("builds when there is no build, then runs the build as it is", () => {
    const first = run();
    expect(first, first.stderr).toMatchObject({ status: 0, stdout: "first\n", built: true });
    const second = run();
    expect(second, second.stderr).toMatchObject({ status: 0, stdout: "first\n", built: false });
  });

  it("rebuilds after a source is edited", () => {
    write("cli/lib/probe/index.ts", probeValue("edited"));
    const r = run();
    expect(r, r.stderr).toMatchObject({ status: 0, stdout: "edited\n", built: true });
    expect(r.stderr).toContain("cli/lib/probe/index.ts changed");
  });

  it("rebuilds when the edited source carries an mtime older than the build (cp -p, git stash pop)", () => {
    write("cli/lib/probe/index.ts", probeValue("restored"));
    const old = new Date("2001-01-01T00:00:00Z");
    utimesSync(file("cli/lib/probe/index.ts"), old, old);
    expect(run()).toMatchObject({ status: 0, stdout: "restored\n", built: true });
  });

  it("does not rebuild when only an mtime moved (touch, a checkout of the same content)", () => {
    const now = new Date();
    utimesSync(file("cli/lib/probe/index.ts"), now, now);
    expect(run()).toMatchObject({ status: 0, stdout: "restored\n", built: false });
  });

  it("rebuilds when a new file changes what an import resolves to", () => {
    // ./lib/probe now means lib/probe.ts, not lib/probe/index.ts; no existing file changed.
    write("cli/lib/probe.ts", probeValue("new file"));
    const r = run();
    expect(r, r.stderr).toMatchObject({ status: 0, stdout: "new file\n", built: true });
    expect(r.stderr).toContain("cli/lib/probe.ts is new");
  });

  it("refuses to run the old build when the new one fails, and says why (exit 1, no stack trace)", () => {
    rmSync(file("cli/lib/probe.ts"));
    rmSync(file("cli/lib/probe"), { recursive: true });
    const r = run();
    expect(r.status).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain('cli/probe.ts:1:22: Could not resolve "./lib/probe"');
    expect(r.stderr).toContain("Nothing was run");
    expect(r.stderr).not.toMatch(/\n\s+at /);
    // Still refused on the next run: the failed build did not leave the old one looking fresh.
    expect(run()).toMatchObject({ status: 1, stdout: "" });
    write("cli/lib/probe.ts", probeValue("fixed"));
    expect(run()).toMatchObject({ status: 0, stdout: "fixed\n", built: true });
  });

  it("rebuilds when tsconfig.json or package-lock.json changes", () => {
    for (const rel of ["tsconfig.json", "package-lock.json"]) {
      writeFileSync(file(rel), `${readFileSync(file(rel), "utf8")}\n`);
      const r = run();
      expect(r, r.stderr).toMatchObject({ status: 0, stdout: "fixed\n", built: true });
      expect(r.stderr).toContain(`${rel} changed`);
    }
  });

  it("rebuilds a damaged output instead of running it", () => {
    truncateSync(file(".build/probe.js"), 100);
    const r = run();
    expect(r, r.stderr).toMatchObject({ status: 0, stdout: "fixed\n", built: true });
    expect(r.stderr).toContain(".build/probe.js is missing or damaged");
  });

  it("recovers from a build that crashed: no manifest, a leftover temporary directory, the dead builder's lock", () => {
    rmSync(file(".build/manifest.json"));
    mkdirSync(file(".build.tmp-crashed"));
    const deadPid = spawnSync(process.execPath, ["-e", ""]).pid;
    mkdirSync(file(".build/.lock"));
    writeFileSync(
      file(".build/.lock/owner.json"),
      JSON.stringify({ pid: deadPid, host: hostname(), since: new Date().toISOString() }),
    );
    const r = run();
    expect(r, r.stderr).toMatchObject({ status: 0, stdout: "fixed\n", built: true });
    expect(existsSync(file(".build.tmp-crashed"))).toBe(false);
    expect(existsSync(file(".build/.lock"))).toBe(false);
  });

  it("builds once when two invocations find the build stale at the same time", async () => {
    write("cli/lib/probe.ts", probeValue("parallel"));
    const both = await Promise.all([runAsync(), runAsync()]);
    for (const r of both) expect(r, r.stderr).toMatchObject({ status: 0, stdout: "parallel\n" });
    expect(both.filter((r) => /compiling scripts/.test(r.stderr))).toHaveLength(1);
  });

  it("compiles import() of a package to require(), as tsconfig's module: commonjs does (hub loads @pulumi/pulumi/automation so)", () => {
    // Node's ESM resolver refuses this directory import; require() resolves it.
    write(
      "cli/automation-probe.ts",
      `void import("@pulumi/pulumi/automation").then((m) => process.stdout.write(\`\${typeof m.LocalWorkspace}\\n\`));\n`,
    );
    const r = run("automation-probe");
    expect(r, r.stderr).toMatchObject({ status: 0, stdout: "function\n" });
  });

  it("refuses a build that would bundle a package (a second copy of a module from node_modules)", () => {
    write("cli/lib/probe.ts", `export { parse as value } from "../../node_modules/ipaddr.js/lib/ipaddr.js";\n`);
    const r = run();
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("packages must stay external");
    expect(r.stderr).toContain("node_modules/ipaddr.js/");
  });

  it("refuses a Pulumi package compiled in, even by a path (the mocks would miss that copy)", () => {
    write("cli/lib/probe.ts", `export { RandomId as value } from "../../node_modules/@pulumi/random/index.js";\n`);
    const r = run();
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("node_modules/@pulumi/random/");
  });

  it("compiles zod, yaml and sshpk in (with what they import) and loads every other package from node_modules", () => {
    write("cli/lib/probe.ts", probeValue("probe"));
    write(
      "cli/libs.ts",
      [
        'import * as sshpk from "sshpk";',
        'import { stringify } from "yaml";',
        'import { z } from "zod";',
        'import * as ipaddr from "ipaddr.js";',
        'const names = ["zod", "yaml", "sshpk", "tweetnacl", "asn1", "ipaddr.js"];',
        "const loaded = names.filter((n) => Object.keys(require.cache).some((f) => f.includes(`/node_modules/${n}/`)));",
        'const key = sshpk.parseKey("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGbMDv8c0A1WBYbRUvZMtUKGDzzbLWtqeDiBnwq4vyAo", "ssh");',
        'const works = [z.string().parse(stringify({ a: 1 }).trim()), key.type, ipaddr.parse("10.0.0.1").kind()];',
        'process.stdout.write(`${loaded.join(",")} ${works.join(" ")}\\n`);',
      ].join("\n"),
    );
    const r = run("libs");
    expect(r.status, r.stderr).toBe(0);
    // Only ipaddr.js came from node_modules; the others ran compiled in.
    expect(r.stdout).toBe("ipaddr.js a: 1 ed25519 ipv4\n");
    const compiled = readFileSync(file(".build/libs.js"), "utf8");
    expect(compiled).not.toMatch(/require\("(zod|yaml|sshpk)"\)/);
    expect(compiled).toContain('require("ipaddr.js")');
  });

  it("runs a script with a V8 code cache of its own build, never one of other code of the same length", () => {
    const caches = () => readdirSync(file(".build")).filter((f) => /^probe\.js\..*\.v8cache$/.test(f));
    write("cli/lib/probe.ts", probeValue("same-1"));
    expect(run(), "builds and writes the cache at exit").toMatchObject({ status: 0, stdout: "same-1\n", built: true });
    const first = caches();
    expect(first).toHaveLength(1);
    expect(run(), "runs with it").toMatchObject({ status: 0, stdout: "same-1\n", built: false });
    // V8 checks a cache against the source's length only: same length, other text.
    write("cli/lib/probe.ts", probeValue("same-2"));
    expect(run()).toMatchObject({ status: 0, stdout: "same-2\n", built: true });
    expect(caches()).toHaveLength(1);
    expect(caches()).not.toEqual(first);
  });
});

describe("package.json", () => {
  it("runs every user-facing script through the runner, so users and tests take the same path", () => {
    const scripts = (
      JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")) as { scripts: Record<string, string> }
    ).scripts;
    for (const name of ["plan", "plan-diff", "hub", "smoke", "docs", "bench"]) {
      expect(existsSync(path.join(ROOT, name.startsWith("bench") ? `bench/${name}.ts` : `cli/${name}.ts`)), name).toBe(
        true,
      );
      expect(scripts[name]).toBe(`node cli/run.cjs ${name}`);
    }
    expect(scripts.prepare).toBe("node tools/build/compile.cjs --prepare");
  });
});
