import { existsSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { downloadModuleDir } from "../../scripts/tools/kube";
import { TRAEFIK_MODULE, TRAEFIK_VERSION } from "../../scripts/tools/traefik";
import { TRAEFIK_CRDS_FILE } from "../../infra/kubernetes/program";
import { KEDA_CHART } from "../../stacks/catalogue/kubernetes";

/**
 * The CRDs the k8s tier's objects need, read from the pinned releases' own Go modules (the proxy
 * serves them; `go mod download -json` gives the directory), never copied into the repository:
 * Traefik's from the module of the gateway image's version, KEDA's from the module of the chart's
 * app version.
 */
export interface CrdSource {
  readonly name: string;
  readonly module: string;
  readonly version: string;
  readonly files: readonly string[];
}

export const CRD_SOURCES: readonly CrdSource[] = [
  { name: "Traefik", module: TRAEFIK_MODULE, version: TRAEFIK_VERSION, files: [TRAEFIK_CRDS_FILE] },
  { name: "KEDA", module: KEDA_CHART.module, version: KEDA_CHART.moduleVersion, files: ["config/crd/bases/keda.sh_scaledobjects.yaml", "config/crd/bases/keda.sh_triggerauthentications.yaml"] },
];

/** Every CRD document of every source, as YAML text, with where it came from. */
export function crdTexts(): { source: CrdSource; file: string; text: string }[] {
  return CRD_SOURCES.flatMap((source) => {
    const dir = downloadModuleDir(source.module, source.version);
    return source.files.map((file) => {
      const full = path.join(dir, file);
      if (!existsSync(full)) throw new Error(`${source.module}@${source.version} has no ${file}`);
      return { source, file, text: readFileSync(full, "utf8") };
    });
  });
}
