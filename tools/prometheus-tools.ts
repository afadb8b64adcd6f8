import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { ALERTMANAGER_IMAGE, PROMETHEUS_IMAGE } from "../services/images";
import { BuildError, buildLock, goBinary, installBuilt, runGo, toolCli, toolsCacheRoot } from "./go-build";

/**
 * Builds `promtool` and `amtool` from the Go module proxy at exactly the versions of the pinned
 * Prometheus and Alertmanager images (services/images.ts), so the tests check every rendered
 * prometheus.yml, rule file and alertmanager.yml with the programs that will read them:
 *
 *   npx tsx tools/prometheus-tools.ts build    # builds what is missing; prints both paths
 *   npx tsx tools/prometheus-tools.ts path     # prints where they are (or would be)
 *
 * Cached as ~/.cache/inference-hub/tools/<tool>-<version>/<tool>, so a machine builds each once
 * (a cold promtool build is ~10 min on 2 busy cores; amtool ~3 min).
 *
 * Recipe, from each module's .promu.yml (the release build): CGO_ENABLED=0, `-tags netgo`, and
 * `-X github.com/prometheus/common/version.{Version,Revision,Branch,BuildUser,BuildDate}`.
 * Deviations: Prometheus' `builtinassets` tag is left out (it embeds the compiled web UI, which the
 * module zip lacks; promtool does not serve it); Revision is the module version (the proxy does not
 * name the commit); BuildDate is the tag's time from the proxy. `go build` runs inside the
 * module's own directory, so its go.mod (with its `replace` lines, which `go install pkg@version`
 * refuses) and go.sum decide every dependency, as in the release.
 */

const COMMON_VERSION_PACKAGE = "github.com/prometheus/common/version";

export interface PrometheusTool {
  /** The binary's name: what `<name> --version` starts with (promtool, amtool, prometheus, ...). */
  readonly name: string;
  readonly module: string;
  readonly packagePath: string;
  /** The image tag without its "v": what `<tool> --version` prints. */
  readonly version: string;
  /** The module's tag on the proxy. */
  readonly moduleVersion: string;
  /**
   * Files the module zip lacks but a `go:embed` needs (a web UI built by npm in the release),
   * written into a copy of the module before the build. Their text says what is missing.
   * @default - none: the module is built where the proxy put it
   */
  readonly placeholders?: Readonly<Record<string, string>>;
}

/** Prometheus 3.x's Go module is tagged v0.3MM.P for 3.MM.P (the 0.x module path predates 3.0). */
export function prometheusModuleVersion(imageTag: string): string {
  const m = /^v3\.(\d+)\.(\d+)$/.exec(imageTag);
  if (!m)
    throw new Error(
      `PROMETHEUS_IMAGE tag ${imageTag} is not v3.<minor>.<patch>; tools/prometheus-tools.ts maps only Prometheus 3.x to its Go module tag`,
    );
  return `v0.3${m[1].padStart(2, "0")}.${m[2]}`;
}

export const PROMTOOL: PrometheusTool = {
  name: "promtool",
  module: "github.com/prometheus/prometheus",
  packagePath: "./cmd/promtool",
  version: PROMETHEUS_IMAGE.tag.replace(/^v/, ""),
  moduleVersion: prometheusModuleVersion(PROMETHEUS_IMAGE.tag),
};

export const AMTOOL: PrometheusTool = {
  name: "amtool",
  module: "github.com/prometheus/alertmanager",
  packagePath: "./cmd/amtool",
  version: ALERTMANAGER_IMAGE.tag.replace(/^v/, ""),
  moduleVersion: ALERTMANAGER_IMAGE.tag,
};

const ENV = {
  CGO_ENABLED: "0",
  GOWORK: "off",
  GOFLAGS: "-mod=readonly -buildvcs=false",
  GOTOOLCHAIN: "local",
} as const;
const TAGS = "netgo";

/** ~/.cache/inference-hub/tools/<tool>-<version>/<tool>; INFERENCE_HUB_PROMTOOL / INFERENCE_HUB_AMTOOL override. */
export function toolBinaryPath(tool: PrometheusTool): string {
  const override = process.env[`INFERENCE_HUB_${tool.name.toUpperCase()}`];
  return override || path.join(toolsCacheRoot(), `${tool.name}-${tool.version}`, tool.name);
}

/** The version `<tool> --version` prints ("promtool, version 3.15.0 (branch: ...)"), or undefined. */
export function builtToolVersion(tool: PrometheusTool, binary: string = toolBinaryPath(tool)): string | undefined {
  if (!existsSync(binary)) return undefined;
  const out = spawnSync(binary, ["--version"], { encoding: "utf8", timeout: 20_000 });
  return new RegExp(`^${tool.name}, version (\\S+)`, "m").exec(`${out.stdout ?? ""}${out.stderr ?? ""}`)?.[1];
}

/** The cached binary when its version matches the image tag, else undefined. */
export async function promtoolPath(): Promise<string | undefined> {
  return builtToolVersion(PROMTOOL) === PROMTOOL.version ? toolBinaryPath(PROMTOOL) : undefined;
}

export async function amtoolPath(): Promise<string | undefined> {
  return builtToolVersion(AMTOOL) === AMTOOL.version ? toolBinaryPath(AMTOOL) : undefined;
}

export const missingReason = (tool: PrometheusTool): string =>
  `no ${tool.name} ${tool.version} at ${toolBinaryPath(tool)} (build it once: npx tsx tools/prometheus-tools.ts build; .ci/run does)`;

const run = (go: string, args: readonly string[], cwd: string): string => runGo(go, args, cwd, ENV);

/** Builds one tool unless the cache has it at the right version; returns its path. */
export function buildTool(
  tool: PrometheusTool,
  log: (line: string) => void = (l) => process.stderr.write(`${l}\n`),
): string {
  const binary = toolBinaryPath(tool);
  if (builtToolVersion(tool, binary) === tool.version) return binary;
  const outDir = path.dirname(binary);
  const unlock = buildLock(outDir, binary);
  let work: string | undefined;
  try {
    if (builtToolVersion(tool, binary) === tool.version) return binary;
    const go = goBinary(`${tool.name} ${tool.version}`);
    const goVersion = run(go, ["version"], process.cwd()).trim();
    log(
      `building ${tool.name} ${tool.version} (${tool.module}@${tool.moduleVersion}) with ${goVersion}; a cold build takes minutes`,
    );
    mkdirSync(outDir, { recursive: true });
    work = mkdtempSync(path.join(outDir, "..", `build-${tool.name}-`));
    const downloaded = JSON.parse(
      run(go, ["mod", "download", "-json", `${tool.module}@${tool.moduleVersion}`], work),
    ) as { Dir: string; Info: string };
    const tagTime = (JSON.parse(readFileSync(downloaded.Info, "utf8")) as { Time: string }).Time;
    const versionFile = readFileSync(path.join(downloaded.Dir, "VERSION"), "utf8").trim();
    if (versionFile !== tool.version)
      throw new BuildError(
        `${tool.module}@${tool.moduleVersion} has VERSION ${versionFile}, the image tag says ${tool.version}`,
      );
    // promu's date format is 20060102-15:04:05.
    const buildDate = tagTime.replace(/[-]/g, "").replace("T", "-").replace(/Z$/, "").slice(0, 17);
    const ldflags = [
      `-X ${COMMON_VERSION_PACKAGE}.Version=${tool.version}`,
      `-X ${COMMON_VERSION_PACKAGE}.Revision=${tool.moduleVersion}`,
      `-X ${COMMON_VERSION_PACKAGE}.Branch=HEAD`,
      `-X ${COMMON_VERSION_PACKAGE}.BuildUser=inference-hub@module-proxy`,
      `-X ${COMMON_VERSION_PACKAGE}.BuildDate=${buildDate}`,
    ].join(" ");
    const staged = path.join(work, `${tool.name}.bin`);
    const started = Date.now();
    let source = downloaded.Dir;
    if (tool.placeholders) {
      // The module cache is read-only: build a writable copy with the placeholders added.
      source = path.join(work, "src");
      cpSync(downloaded.Dir, source, { recursive: true });
      spawnSync("chmod", ["-R", "u+w", source]);
      for (const [file, text] of Object.entries(tool.placeholders)) {
        mkdirSync(path.dirname(path.join(source, file)), { recursive: true });
        writeFileSync(path.join(source, file), text);
      }
    }
    run(go, ["build", "-trimpath", "-tags", TAGS, "-ldflags", ldflags, "-o", staged, tool.packagePath], source);
    const version = builtToolVersion(tool, staged);
    if (version !== tool.version)
      throw new BuildError(`the built ${tool.name} reports version ${version}, the image tag says ${tool.version}`);
    return installBuilt(
      staged,
      binary,
      {
        tool: tool.name,
        version,
        module: `${tool.module}@${tool.moduleVersion}`,
        go: goVersion,
        tags: TAGS,
        buildDate,
      },
      started,
      log,
    );
  } finally {
    if (work) rmSync(work, { recursive: true, force: true });
    unlock();
  }
}

if (require.main === module)
  toolCli("prometheus-tools.ts", {
    build: () => [AMTOOL, PROMTOOL].map((tool) => buildTool(tool)),
    path: () => [PROMTOOL, AMTOOL].map(toolBinaryPath),
  });
