import { existsSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { execFile } from "node:child_process";
import { tmpdir } from "node:os";
import { promisify } from "node:util";
import { goBinary } from "../../tools/go-build";
import { TRAEFIK_MODULE, TRAEFIK_VERSION } from "../../tools/traefik";
import { TRAEFIK_CRDS_FILE } from "../../infra/kubernetes/program";
import { KEDA_CHART } from "../../stacks/catalogue/kubernetes";

/**
 * The CRDs the k8s tier's objects need, read from the pinned releases' own Go modules (the proxy
 * serves them; `go mod download -json` gives the directory), never copied into the repository:
 * Traefik's from the module of the gateway image's version, KEDA's from the module of the chart's
 * app version.
 */
const run = promisify(execFile);

export interface CrdSource {
  readonly name: string;
  readonly module: string;
  readonly version: string;
  readonly files: readonly string[];
}

export const CRD_SOURCES: readonly CrdSource[] = [
  { name: "Traefik", module: TRAEFIK_MODULE, version: TRAEFIK_VERSION, files: [TRAEFIK_CRDS_FILE] },
  {
    name: "KEDA",
    module: KEDA_CHART.module,
    version: KEDA_CHART.moduleVersion,
    files: ["config/crd/bases/keda.sh_scaledobjects.yaml", "config/crd/bases/keda.sh_triggerauthentications.yaml"],
  },
];

/** Where the proxy's module is on disk, without blocking the test worker (a download can take a while). */
async function moduleDir(module: string, version: string): Promise<string> {
  const { stdout } = await run(goBinary(`${module}@${version}`), ["mod", "download", "-json", `${module}@${version}`], {
    cwd: tmpdir(),
    env: { ...process.env, GOTOOLCHAIN: "local", GOWORK: "off", GOFLAGS: "-mod=mod" },
    maxBuffer: 16 * 1024 * 1024,
  });
  const dir = (JSON.parse(stdout) as { Dir?: string }).Dir;
  if (!dir || !existsSync(dir)) throw new Error(`go mod download ${module}@${version} gave no directory`);
  return dir;
}

/** Every CRD document of every source, as YAML text, with where it came from. */
export async function crdTexts(): Promise<{ source: CrdSource; file: string; text: string }[]> {
  const out: { source: CrdSource; file: string; text: string }[] = [];
  for (const source of CRD_SOURCES) {
    const dir = await moduleDir(source.module, source.version);
    for (const file of source.files) {
      const full = path.join(dir, file);
      if (!existsSync(full)) throw new Error(`${source.module}@${source.version} has no ${file}`);
      out.push({ source, file, text: readFileSync(full, "utf8") });
    }
  }
  return out;
}
