import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { z } from "zod";
import type { KeyRegistryStatus } from "./key-registry";

/**
 * `GET /admin/status`: what is deployed and live, as the gateway node sees it. Each source is read
 * on its own and may be missing without failing the report: Traefik's metrics (each backend's
 * health as Traefik's own checks see it, the certificate's expiry), the autoscaling controller's
 * status (GPU nodes wanted and ready, its last decision, month-to-date GPU spend), and the
 * gatekeeper's keys and audit database. A source that does not answer is reported with why.
 */

/** What the deploy knows and the gatekeeper cannot see (GATEKEEPER_STATUS_CONTEXT, rendered by services/auth.ts). */
export const statusContextSchema = z.object({
  tier: z.string(),
  region: z.string().optional(),
  domain: z.string().optional(),
  budgetUsd: z.number().optional(),
  monthlyCostUsd: z.number().optional(),
  /** GPU nodes the deploy created. */
  gpuNodes: z.number().int().nonnegative(),
  /** The gateway node's own backends (containers), each probed at its health path. */
  backends: z.array(z.object({ service: z.string(), url: z.string() })).default([]),
});
export type StatusContext = z.infer<typeof statusContextSchema>;

export interface StatusSources {
  readonly context?: StatusContext;
  /** Traefik's Prometheus text, or why it could not be read. */
  readonly gatewayMetrics: () => Promise<string>;
  /** The controller's /status JSON; undefined when the stack runs no controller. */
  readonly controllerStatus?: () => Promise<unknown>;
  readonly keys: () => KeyRegistryStatus;
  /** GET a backend's health URL: its HTTP status. */
  readonly probe: (url: string) => Promise<number>;
  readonly audit: () => Promise<{ configured: boolean; connected?: boolean; lastError?: string | null }>;
  readonly nowMs: () => number;
}

export interface BackendStatus {
  readonly service: string;
  readonly up: boolean;
  readonly servers: readonly { readonly url: string; readonly up: boolean }[];
}

export interface ReadProblem {
  readonly reachable: false;
  readonly error: string;
}

/** Backends and certificates from Traefik's metrics text. */
export function readGatewayMetrics(
  text: string,
  nowMs: number,
): { backends: BackendStatus[]; certificates: { cn: string; sans: string; notAfter: string; daysLeft: number }[] } {
  const families = parsePrometheusTextFormat(text);
  const servers = new Map<string, { url: string; up: boolean }[]>();
  const certificates: { cn: string; sans: string; notAfter: string; daysLeft: number }[] = [];
  for (const family of families) {
    if (family.name === "traefik_service_server_up") {
      for (const m of family.metrics) {
        const service = (m.labels?.service ?? "").replace(/@.*$/, "");
        if (!service) continue;
        servers.set(service, [
          ...(servers.get(service) ?? []),
          { url: m.labels?.url ?? "", up: Number(m.value) === 1 },
        ]);
      }
    }
    if (family.name === "traefik_tls_certs_not_after") {
      for (const m of family.metrics) {
        const seconds = Number(m.value);
        if (!Number.isFinite(seconds)) continue;
        certificates.push({
          cn: m.labels?.cn ?? "",
          sans: m.labels?.sans ?? "",
          notAfter: new Date(seconds * 1000).toISOString(),
          daysLeft: Math.floor((seconds * 1000 - nowMs) / 86_400_000),
        });
      }
    }
  }
  const backends = [...servers]
    .map(([service, list]) => ({ service, up: list.some((s) => s.up), servers: list }))
    .sort((a, b) => a.service.localeCompare(b.service));
  return { backends, certificates };
}

/** GPU replicas are addressed by a VPC (private) IP; CPU containers by name. */
const onGpuNode = (url: string): boolean =>
  /^https?:\/\/(10\.\d+|172\.(1[6-9]|2\d|3[01])|192\.168)\.\d+\.\d+:/.test(url);

interface ControllerView {
  readonly mode?: string;
  readonly deployedNodes?: number;
  readonly nodes?: { ready?: number; starting?: number; draining?: number };
  readonly decision?: { wantedNodes?: number; reason?: string; message?: string };
  readonly ledger?: { month?: string; monthToDateUsd?: number; gpuBudgetUsd?: number };
  readonly pin?: { nodes: number; untilMs: number };
}

const errorOf = (error: unknown): string => (error instanceof Error ? error.message : String(error)).slice(0, 300);

export async function statusReport(sources: StatusSources, publicUrl: string | null): Promise<Record<string, unknown>> {
  const nowMs = sources.nowMs();
  const context = sources.context;
  const [metrics, controller, audit, probed] = await Promise.all([
    sources.gatewayMetrics().then(
      (text) => ({ reachable: true as const, ...readGatewayMetrics(text, nowMs) }),
      (error: unknown): ReadProblem => ({ reachable: false, error: errorOf(error) }),
    ),
    sources.controllerStatus
      ? sources.controllerStatus().then(
          (value) => ({ reachable: true as const, status: value as ControllerView }),
          (error: unknown): ReadProblem => ({ reachable: false, error: errorOf(error) }),
        )
      : Promise.resolve(undefined),
    sources.audit().catch((error: unknown) => ({ configured: true, connected: false, lastError: errorOf(error) })),
    Promise.all(
      (context?.backends ?? []).map((b) =>
        sources.probe(b.url).then(
          (status) => ({ service: b.service, url: b.url, up: status >= 200 && status < 300, status }),
          (error: unknown) => ({ service: b.service, url: b.url, up: false, error: errorOf(error) }),
        ),
      ),
    ),
  ]);
  const keys = sources.keys();
  const gpuServers = metrics.reachable
    ? metrics.backends.flatMap((b) =>
        b.servers.filter((s) => onGpuNode(s.url)).map((s) => ({ ...s, host: new URL(s.url).hostname })),
      )
    : [];
  const readyHosts = new Set(gpuServers.filter((s) => s.up).map((s) => s.host));
  const ctl = controller?.reachable ? controller.status : undefined;
  const domain = context?.domain;
  return {
    generatedAt: new Date(nowMs).toISOString(),
    tier: context?.tier ?? null,
    region: context?.region ?? null,
    url: domain ? `https://${domain}/v1` : publicUrl,
    // The gateway node's containers as probed now, and the GPU replicas as Traefik's health checks see them.
    backends: probed,
    gpuReplicas: gpuServers.map(({ host: _host, ...s }) => s),
    gateway: metrics.reachable ? { reachable: true, healthChecked: metrics.backends } : metrics,
    gpu: {
      deployed: context?.gpuNodes ?? null,
      wanted: ctl?.decision?.wantedNodes ?? context?.gpuNodes ?? null,
      // The controller counts a node ready once its replicas answer; without one, Traefik's health checks do.
      ready: ctl?.nodes?.ready ?? (metrics.reachable ? readyHosts.size : null),
      starting: ctl?.nodes?.starting ?? null,
      pin: ctl?.pin ? { nodes: ctl.pin.nodes, until: new Date(ctl.pin.untilMs).toISOString() } : null,
    },
    controller:
      controller === undefined
        ? { runs: false }
        : controller.reachable
          ? { runs: true, reachable: true, mode: ctl?.mode ?? null, decision: ctl?.decision ?? null }
          : { runs: true, ...controller },
    spend: {
      budgetUsd: context?.budgetUsd ?? null,
      projectedMonthUsd: context?.monthlyCostUsd ?? null,
      gpuMonthToDateUsd: ctl?.ledger?.monthToDateUsd ?? null,
      gpuBudgetUsd: ctl?.ledger?.gpuBudgetUsd ?? null,
      month: ctl?.ledger?.month ?? null,
    },
    tls: domain
      ? { domain, certificates: metrics.reachable ? metrics.certificates : null }
      : { domain: null, note: "no domain: the gateway serves plain HTTP" },
    keys: {
      active: keys.active,
      total: keys.count,
      declared: keys.declared,
      runtime: keys.runtime.count,
      store: keys.runtime.store,
      storeError: keys.runtime.error,
      declaredFileError: keys.error,
    },
    audit,
  };
}
