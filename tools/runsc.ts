import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import * as path from "node:path";
import { RUNSC_LDFLAGS, RUNSC_MODULE, RUNSC_PACKAGE, RUNSC_VERSION } from "../programs/sandbox/runsc-version";
import { BuildError, buildLock, goBinary, installBuilt, runGo, toolCli, toolsCacheRoot } from "./go-build";

/**
 * Builds gVisor's `runsc` from the Go module proxy at the pinned pseudo-version
 * (programs/sandbox/runsc-version.ts, the same pin the sandbox node installs), so the hostile
 * tests run the isolation the node runs:
 *
 *   npx tsx tools/runsc.ts build    # builds if missing; prints the binary's path
 *   npx tsx tools/runsc.ts path     # prints where it is (or would be)
 *
 * Cached as ~/.cache/inference-hub/tools/runsc-<pseudo-version>/runsc (a cold build is about
 * 6.5 min on 2 cores, 96 MB static). gVisor releases are built with Bazel; the `go` branch is the
 * generated Go-tool-compatible tree of the same commit, published to the proxy as pseudo-versions.
 * Recipe: `go install` (honours the module's own go.mod, which has no `replace`), CGO_ENABLED=0,
 * -trimpath, and `-X gvisor.dev/gvisor/runsc/version.version=<pseudo-version>` so `runsc --version`
 * names what was built (Bazel stamps a release name there; `go install` alone leaves
 * "VERSION_MISSING").
 */

const ENV = { CGO_ENABLED: "0", GOWORK: "off", GOFLAGS: "-buildvcs=false", GOTOOLCHAIN: "local" } as const;

/** INFERENCE_HUB_RUNSC overrides; else ~/.cache/inference-hub/tools/runsc-<version>/runsc. */
export function runscBinaryPath(): string {
  return process.env.INFERENCE_HUB_RUNSC || path.join(toolsCacheRoot(), `runsc-${RUNSC_VERSION}`, "runsc");
}

/** What `runsc --version` prints on its first line ("runsc version <v>"), or undefined. */
export function builtRunscVersion(binary: string = runscBinaryPath()): string | undefined {
  if (!existsSync(binary)) return undefined;
  const out = spawnSync(binary, ["--version"], { encoding: "utf8", timeout: 20_000 });
  return /^runsc version (\S+)/m.exec(out.stdout ?? "")?.[1];
}

/** The cached binary when it reports the pinned version, else undefined. */
export function runscPath(): string | undefined {
  return builtRunscVersion() === RUNSC_VERSION ? runscBinaryPath() : undefined;
}

export const runscMissingReason = (): string =>
  `no runsc ${RUNSC_VERSION} at ${runscBinaryPath()} (build it once: npx tsx tools/runsc.ts build; .ci/run does)`;

export function buildRunsc(log: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): string {
  const binary = runscBinaryPath();
  if (builtRunscVersion(binary) === RUNSC_VERSION) return binary;
  const outDir = path.dirname(binary);
  const unlock = buildLock(outDir, binary);
  let work: string | undefined;
  try {
    if (builtRunscVersion(binary) === RUNSC_VERSION) return binary;
    const go = goBinary(`runsc ${RUNSC_VERSION}`);
    const run = (args: readonly string[], cwd: string, env: Record<string, string> = {}): string =>
      runGo(go, args, cwd, { ...ENV, ...env });
    const goVersion = run(["version"], process.cwd()).trim();
    log(`building runsc (${RUNSC_MODULE}@${RUNSC_VERSION}) with ${goVersion}; a cold build takes about 7 minutes`);
    mkdirSync(outDir, { recursive: true });
    work = mkdtempSync(path.join(outDir, "..", "build-runsc-"));
    const downloaded = JSON.parse(run(["mod", "download", "-json", `${RUNSC_MODULE}@${RUNSC_VERSION}`], work)) as {
      Info: string;
    };
    const commitTime = (JSON.parse(readFileSync(downloaded.Info, "utf8")) as { Time: string }).Time;
    const started = Date.now();
    run(["install", "-trimpath", "-ldflags", RUNSC_LDFLAGS, RUNSC_PACKAGE], work, { GOBIN: work });
    const staged = path.join(work, "runsc");
    const version = builtRunscVersion(staged);
    if (version !== RUNSC_VERSION)
      throw new BuildError(`the built runsc reports version ${version}, the pin says ${RUNSC_VERSION}`);
    return installBuilt(
      staged,
      binary,
      { tool: "runsc", version, module: `${RUNSC_MODULE}@${RUNSC_VERSION}`, commitTime, go: goVersion },
      started,
      log,
    );
  } finally {
    if (work) rmSync(work, { recursive: true, force: true });
    unlock();
  }
}

if (require.main === module) toolCli("runsc.ts", { build: () => [buildRunsc()], path: () => [runscBinaryPath()] });
