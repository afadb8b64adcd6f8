import { ALERTMANAGER_IMAGE, NODE_EXPORTER_IMAGE, PROMETHEUS_IMAGE } from "../services/images";
import type { ImageRef } from "../services/spec";
import { toolCli } from "./go-build";
import { buildTool, prometheusModuleVersion, type PrometheusTool, toolBinaryPath } from "./prometheus-tools";

/**
 * The Prometheus, Alertmanager and node_exporter servers at exactly the pinned images' versions,
 * built from the Go module proxy with the same recipe as promtool and amtool (prometheus-tools.ts
 * says how it differs from the release): the real-engine tests put them into local images under
 * the pinned tags (tools/local-images.ts), since no registry can be reached here.
 *
 *   npx tsx tools/prometheus-servers.ts build   # builds what is missing; prints the paths
 *   npx tsx tools/prometheus-servers.ts path
 *
 * Alertmanager's web UI is replaced by a one-page placeholder (its embed needs files the module zip
 * lacks). The Prometheus server is built without its web UI (the `builtinassets` tag needs the compiled
 * React app, which the module zip lacks): the API, /-/healthy and /-/ready answer; the UI pages do not.
 */

/** A server at its image's version; the Go module is tagged like the image unless said otherwise. */
const server = (
  name: string,
  module: string,
  packagePath: string,
  image: ImageRef,
  extra: Partial<PrometheusTool> = {},
): PrometheusTool => ({
  name,
  module,
  packagePath,
  version: image.tag.replace(/^v/, ""),
  moduleVersion: image.tag,
  ...extra,
});

export const PROMETHEUS_SERVER = server(
  "prometheus",
  "github.com/prometheus/prometheus",
  "./cmd/prometheus",
  PROMETHEUS_IMAGE,
  { moduleVersion: prometheusModuleVersion(PROMETHEUS_IMAGE.tag) },
);

export const ALERTMANAGER_SERVER = server(
  "alertmanager",
  "github.com/prometheus/alertmanager",
  "./cmd/alertmanager",
  ALERTMANAGER_IMAGE,
  {
    // ui/web.go embeds app/dist, the Elm UI its release builds with npm; the module zip has none.
    placeholders: {
      "ui/app/dist/index.html":
        "<!doctype html><title>Alertmanager</title><p>This Alertmanager was built from the Go module proxy without its web UI (inference-hub scripts/tools/prometheus-servers.ts); the API answers under /api/v2.\n",
    },
  },
);

/** node_exporter's main package is the module root. */
export const NODE_EXPORTER = server("node_exporter", "github.com/prometheus/node_exporter", ".", NODE_EXPORTER_IMAGE);

export const PROMETHEUS_SERVERS: readonly PrometheusTool[] = [NODE_EXPORTER, ALERTMANAGER_SERVER, PROMETHEUS_SERVER];

if (require.main === module)
  toolCli("prometheus-servers.ts", {
    build: () => PROMETHEUS_SERVERS.map((tool) => buildTool(tool)),
    path: () => PROMETHEUS_SERVERS.map(toolBinaryPath),
  });
