import * as pulumi from "@pulumi/pulumi";
import { renderYaml } from "../services/gateway";
import {
  alertmanagerConfig,
  alertRules,
  type AlertSecrets,
  type CpuContainer,
  MONITORING_DIRS,
  MONITORING_FILES,
  PROM_IMAGE_UID,
  prometheusConfig,
  PROMETHEUS_CONTAINER,
  ALERTMANAGER_CONTAINER,
  SANDBOX_NODE_TARGETS_FILE,
  scrapeTargets,
  targetsFile,
  gpuJobs,
  JOBS,
} from "../services/monitoring";
import type { Route } from "../services/routes";
import type { ServiceSpec } from "../services/spec";
import { CPU_NODE_NAME, type HubConfig } from "../stacks/hub-config";
import { SANDBOX_NODE_NAME } from "../stacks/sandbox";
import { recordArtifact } from "./artifacts";
import type { NodeFile } from "./containers";

/** Secret inputs of the monitoring files: read by infra/program.ts with config.getSecret. */
export interface MonitoringSecrets {
  /** The backends' key, which llama.cpp's /metrics asks for. */
  readonly hubApiKey: pulumi.Output<string>;
  readonly smtpPassword?: pulumi.Output<string>;
  readonly webhookUrl?: pulumi.Output<string>;
}

/** The sandbox node as its scrape target needs it: its address, and its node_exporter answering there. */
export interface SandboxScrape {
  readonly privateIp: pulumi.Input<string>;
  /** The target is written after this (the exporter answered), so a first boot's ten minutes are never "node down". */
  readonly exporterReady: pulumi.Resource;
}

export const alertSecretsOf = (secrets: MonitoringSecrets): AlertSecrets => ({
  webhook: secrets.webhookUrl !== undefined,
  smtpPassword: secrets.smtpPassword !== undefined,
});

/**
 * The CPU node's monitoring files: prometheus.yml, the rules and alertmanager.yml (no secret in
 * any; a change restarts the container that reads it), the file_sd target files (watched by
 * Prometheus; written after the GPU replicas they name answer, like the routes file), and the
 * secret files, mode 0600 for the prom/* images' user, fed from Pulumi secrets over SSH (both
 * programs read them on every use, so a new secret needs no restart).
 */
export function monitoringFiles(
  hub: HubConfig,
  specs: readonly ServiceSpec[],
  routes: readonly Route[],
  privateIps: pulumi.Output<Record<string, string>>,
  cpuPrivateIp: pulumi.Input<string> | undefined,
  secrets: MonitoringSecrets,
  after: readonly pulumi.Resource[],
  sandbox?: SandboxScrape,
): NodeFile[] {
  if (!hub.monitoring) return [];
  const dirs = MONITORING_DIRS;
  const cpuContainers: CpuContainer[] = specs
    .filter((s) => s.node === CPU_NODE_NAME)
    .map((s) => ({ name: s.name, program: s.program, port: s.port }));
  const promConfig = renderYaml(prometheusConfig(hub, cpuContainers));
  const rules = renderYaml(alertRules(hub));
  const amConfig = renderYaml(alertmanagerConfig(hub, alertSecretsOf(secrets)));
  recordArtifact({
    kind: "prometheus-config",
    node: "cpu",
    path: `cpu/prometheus/${MONITORING_FILES.prometheusConfig}`,
    content: promConfig,
  });
  recordArtifact({
    kind: "prometheus-rules",
    node: "cpu",
    path: `cpu/prometheus/${MONITORING_FILES.rules}`,
    content: rules,
  });
  recordArtifact({
    kind: "alertmanager",
    node: "cpu",
    path: `cpu/alertmanager/${MONITORING_FILES.alertmanagerConfig}`,
    content: amConfig,
  });

  const addresses = pulumi
    .all([privateIps, pulumi.output(cpuPrivateIp ?? ""), pulumi.output(sandbox?.privateIp ?? "")])
    .apply(([ips, cpu, sandboxIp]) => ({
      ...ips,
      ...(cpu ? { [CPU_NODE_NAME]: cpu } : {}),
      ...(sandboxIp ? { [SANDBOX_NODE_NAME]: sandboxIp } : {}),
    }));
  const targets = addresses.apply((ips) => scrapeTargets(hub, routes, ips));
  const files: NodeFile[] = [
    {
      path: `${dirs.prometheusConfig}/${MONITORING_FILES.prometheusConfig}`,
      content: promConfig,
      restarts: [PROMETHEUS_CONTAINER],
    },
    { path: `${dirs.prometheusConfig}/${MONITORING_FILES.rules}`, content: rules, restarts: [PROMETHEUS_CONTAINER] },
    {
      path: `${dirs.alertmanagerConfig}/${MONITORING_FILES.alertmanagerConfig}`,
      content: amConfig,
      restarts: [ALERTMANAGER_CONTAINER],
    },
  ];
  const fileSdJobs = [...new Set([...gpuJobs(hub), ...(hub.monitoring.exporters ? [JOBS.node] : [])])];
  for (const job of fileSdJobs) {
    const name = targetsFile(job);
    const content = targets.apply((t) => `${JSON.stringify(t[name] ?? [], null, 2)}\n`);
    recordArtifact({ kind: "prometheus-targets", node: "cpu", path: `cpu/prometheus/targets/${name}`, content });
    // GPU targets appear once their replicas answer (the same waits as the routes file), so a booting node is never "down".
    files.push({ path: `${dirs.prometheusTargets}/${name}`, content, after });
  }
  if (hub.monitoring.exporters && sandbox) {
    const name = SANDBOX_NODE_TARGETS_FILE;
    const content = targets.apply((t) => `${JSON.stringify(t[name] ?? [], null, 2)}\n`);
    recordArtifact({ kind: "prometheus-targets", node: "cpu", path: `cpu/prometheus/targets/${name}`, content });
    // Not after the GPU replicas: the sandbox node is watched as soon as its exporter answers.
    files.push({ path: `${dirs.prometheusTargets}/${name}`, content, after: [sandbox.exporterReady] });
  }
  if (specs.some((s) => s.program === "llama.cpp"))
    files.push({
      path: `${dirs.prometheusSecrets}/${MONITORING_FILES.llamaCppKey}`,
      content: pulumi.secret(secrets.hubApiKey),
      privateTo: PROM_IMAGE_UID,
    });
  if (secrets.smtpPassword && hub.monitoring.email?.user)
    files.push({
      path: `${dirs.alertmanagerSecrets}/${MONITORING_FILES.smtpPassword}`,
      content: pulumi.secret(secrets.smtpPassword),
      privateTo: PROM_IMAGE_UID,
    });
  if (secrets.webhookUrl)
    files.push({
      path: `${dirs.alertmanagerSecrets}/${MONITORING_FILES.webhookUrl}`,
      content: pulumi.secret(secrets.webhookUrl),
      privateTo: PROM_IMAGE_UID,
    });
  return files;
}
