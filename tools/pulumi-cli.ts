import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { BuildError, buildLock, goBinary, runGo, toolCli, toolsCacheRoot } from "./go-build";

/**
 * Builds the Pulumi CLI from the Go module proxy at exactly the version of the pinned npm
 * `@pulumi/pulumi` (package.json), so the real-engine tests drive the engine the SDK was made for:
 *
 *   npx tsx tools/pulumi-cli.ts build     # builds if missing; prints the binary's path
 *   npx tsx tools/pulumi-cli.ts path      # prints where the binary is (or would be)
 *
 * Cached as ~/.cache/inference-hub/tools/pulumi-v<version>/<recipe>/bin/pulumi (the layout the
 * Automation API's `PulumiCommand.get({ root })` expects; about 4-6 min cold on
 * 2 cores, ~110 MB). `github.com/pulumi/pulumi/pkg/v3`'s go.mod replaces `sdk/v3 => ../sdk`, which
 * only holds inside pulumi's own repository, so the build runs from a small module of our own that
 * requires pkg/v3 and sdk/v3 at the same version and repeats pkg's other `replace` (clipboard).
 * Version stamp as in pulumi's release build: `-X .../sdk/v3/go/common/version.Version=v<version>`.
 *
 * Only the CLI comes from the proxy: the nodejs language host and the provider plugins are refused
 * (403) at every version tried, so the tests run the program inline through the Automation API and
 * use the labelled stand-in providers of test/helpers/stand-in-plugins (docs/pulumi-engine.md).
 */

export const PULUMI_PKG_MODULE = "github.com/pulumi/pulumi/pkg/v3";
export const PULUMI_SDK_MODULE = "github.com/pulumi/pulumi/sdk/v3";
const CLI_PACKAGE = `${PULUMI_PKG_MODULE}/cmd/pulumi`;
const VERSION_VARIABLE = `${PULUMI_SDK_MODULE}/go/common/version.Version`;
/** pkg/v3's go.mod has this replace; a `replace` applies only in the main module, so ours repeats it. */
const CLIPBOARD_REPLACE = {
  old: "github.com/atotto/clipboard",
  new: "github.com/tgummerer/clipboard",
  version: "v0.0.0-20241001131231-d02d263e614e",
} as const;

/** The pinned `@pulumi/pulumi` from package.json: the one version the CLI must have. */
export function pinnedPulumiVersion(root: string = path.join(__dirname, "..")): string {
  const manifest = JSON.parse(readFileSync(path.join(root, "package.json"), "utf8")) as {
    dependencies?: Record<string, string>;
  };
  const version = manifest.dependencies?.["@pulumi/pulumi"];
  if (!version || !/^\d+\.\d+\.\d+$/.test(version))
    throw new BuildError(
      `package.json pins @pulumi/pulumi as ${JSON.stringify(version)}; the CLI build needs an exact version such as 3.248.0`,
    );
  return version;
}

/** Everything that decides the binary: a change to any of it builds again. */
const recipe = (version: string) => ({
  version,
  env: { CGO_ENABLED: "0", GOWORK: "off", GOFLAGS: "-mod=mod -buildvcs=false" },
  flags: ["-trimpath", "-tags", "osusergo,grpcnotrace"],
  ldflags: ["-s", "-w"],
  replace: CLIPBOARD_REPLACE,
});
const recipeKey = (version: string): string =>
  createHash("sha256")
    .update(JSON.stringify(recipe(version)))
    .digest("hex")
    .slice(0, 12);

/** ~/.cache/inference-hub/tools/pulumi-v3.248.0/<recipe>/bin/pulumi (INFERENCE_HUB_PULUMI overrides). */
export function pulumiBinaryPath(version: string = pinnedPulumiVersion()): string {
  return (
    process.env.INFERENCE_HUB_PULUMI ||
    path.join(toolsCacheRoot(), `pulumi-v${version}`, recipeKey(version), "bin", "pulumi")
  );
}

export const pulumiMissingReason = (): string =>
  `no Pulumi CLI v${pinnedPulumiVersion()} at ${pulumiBinaryPath()} (build it once: npx tsx tools/pulumi-cli.ts build; .ci/run does)`;

/** What `pulumi version` prints, without the "v" ("3.248.0"), or undefined. */
export function builtPulumiVersion(binary: string = pulumiBinaryPath()): string | undefined {
  if (!existsSync(binary)) return undefined;
  const out = spawnSync(binary, ["version"], {
    encoding: "utf8",
    timeout: 30_000,
    env: { ...process.env, PULUMI_SKIP_UPDATE_CHECK: "true" },
  });
  return /^v?(\d+\.\d+\.\d+\S*)\s*$/m.exec(out.stdout ?? "")?.[1];
}

/** The cached CLI when it reports the pinned version, else undefined. */
export function pulumiCliPath(): string | undefined {
  const binary = pulumiBinaryPath();
  return builtPulumiVersion(binary) === pinnedPulumiVersion() ? binary : undefined;
}

/** Builds the CLI unless the cache has it at the pinned version; returns its path. */
export function buildPulumiCli(log: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): string {
  const version = pinnedPulumiVersion();
  const binary = pulumiBinaryPath(version);
  if (builtPulumiVersion(binary) === version) return binary;
  const outDir = path.dirname(binary);
  const unlock = buildLock(outDir, binary);
  let work: string | undefined;
  try {
    if (builtPulumiVersion(binary) === version) return binary;
    const r = recipe(version);
    const go = goBinary(`the Pulumi CLI v${version}`);
    const run = (args: readonly string[], cwd: string): string =>
      runGo(go, args, cwd, { GOTOOLCHAIN: "local", ...r.env });
    const goVersion = run(["version"], process.cwd()).trim();
    log(
      `building the Pulumi CLI v${version} with ${goVersion} (recipe ${recipeKey(version)}); a cold build takes several minutes`,
    );
    mkdirSync(outDir, { recursive: true });
    work = mkdtempSync(path.join(outDir, "..", "build-"));
    const tag = `v${version}`;
    writeFileSync(
      path.join(work, "go.mod"),
      `module inference-hub/pulumi-cli\n\ngo 1.25\n\nrequire (\n\t${PULUMI_PKG_MODULE} ${tag}\n\t${PULUMI_SDK_MODULE} ${tag}\n)\n\nreplace ${r.replace.old} => ${r.replace.new} ${r.replace.version}\n`,
    );
    // pkg/v3 still replaces clipboard the way our module does: if upstream drops or changes it, the recipe needs a look.
    const pkg = JSON.parse(run(["mod", "download", "-json", `${PULUMI_PKG_MODULE}@${tag}`], work)) as { GoMod: string };
    const pkgReplaces = readFileSync(pkg.GoMod, "utf8");
    if (!pkgReplaces.includes(`replace ${r.replace.old} => ${r.replace.new} ${r.replace.version}`))
      throw new BuildError(
        `${PULUMI_PKG_MODULE}@${tag}'s go.mod no longer replaces ${r.replace.old} with ${r.replace.new} ${r.replace.version}; update CLIPBOARD_REPLACE in tools/pulumi-cli.ts`,
      );
    run(["get", `${CLI_PACKAGE}@${tag}`], work);
    const required = JSON.parse(run(["list", "-m", "-json", PULUMI_SDK_MODULE], work)) as { Version: string };
    if (required.Version !== tag)
      throw new BuildError(`the build resolved ${PULUMI_SDK_MODULE} at ${required.Version}, not ${tag}`);
    const staged = path.join(work, "pulumi.bin");
    const started = Date.now();
    run(
      [
        "build",
        ...r.flags,
        "-ldflags",
        [...r.ldflags, "-X", `${VERSION_VARIABLE}=${tag}`].join(" "),
        "-o",
        staged,
        CLI_PACKAGE,
      ],
      work,
    );
    const built = builtPulumiVersion(staged);
    if (built !== version)
      throw new BuildError(`the built CLI reports version ${built}, package.json pins @pulumi/pulumi ${version}`);
    const seconds = Math.round((Date.now() - started) / 1000);
    writeFileSync(
      path.join(outDir, "build.json"),
      `${JSON.stringify({ version: built, recipe: recipeKey(version), go: goVersion, builtAt: new Date().toISOString(), seconds }, null, 2)}\n`,
    );
    renameSync(staged, binary);
    log(`built ${binary} in ${seconds} s`);
    return binary;
  } finally {
    if (work) rmSync(work, { recursive: true, force: true });
    unlock();
  }
}

if (require.main === module)
  toolCli("pulumi-cli.ts", { build: () => [buildPulumiCli()], path: () => [pulumiBinaryPath()] });
