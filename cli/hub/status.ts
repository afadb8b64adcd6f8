import type { HubConfig } from "../../stacks/hub-config";

/**
 * `hub status`: the gateway's /admin/status report (programs/gatekeeper/status.ts) as lines for a
 * person, with what the checkout says beside what is deployed. Exit 3 when something is down.
 */

interface Report {
  tier?: string | null;
  region?: string | null;
  url?: string | null;
  backends?: { service: string; up: boolean; status?: number; error?: string }[];
  gpuReplicas?: { url: string; up: boolean }[];
  gateway?: { reachable: boolean; error?: string };
  gpu?: {
    deployed: number | null;
    wanted: number | null;
    ready: number | null;
    starting: number | null;
    pin: { nodes: number; until: string } | null;
  };
  controller?: {
    runs: boolean;
    reachable?: boolean;
    error?: string;
    mode?: string | null;
    decision?: { wantedNodes?: number; reason?: string; message?: string } | null;
  };
  spend?: {
    budgetUsd: number | null;
    projectedMonthUsd: number | null;
    gpuMonthToDateUsd: number | null;
    gpuBudgetUsd: number | null;
  };
  tls?: { domain: string | null; certificates?: { cn: string; notAfter: string; daysLeft: number }[] | null };
  keys?: {
    active: number;
    total: number;
    declared: number;
    runtime: number;
    store: string;
    storeError: string | null;
    declaredFileError: string | null;
  };
  audit?: { configured: boolean; connected?: boolean; lastError?: string | null };
}

const usd = (n: number | null | undefined) => (n === null || n === undefined ? "?" : `$${n.toFixed(2)}`);

/** What the checkout would deploy against what the gateway says is deployed. */
export function driftLines(report: Report, checkout: HubConfig | undefined): string[] {
  if (!checkout) return [];
  const drift: string[] = [];
  const compare = (what: string, deployed: unknown, here: unknown) => {
    if (deployed !== null && deployed !== undefined && deployed !== here)
      drift.push(`${what}: deployed ${String(deployed)}, this checkout ${String(here)}`);
  };
  compare("tier", report.tier, checkout.tier);
  compare("region", report.region, checkout.region);
  compare("budgetUsd", report.spend?.budgetUsd, checkout.budgetUsd);
  compare("GPU nodes", report.gpu?.deployed, checkout.gpu?.on ? checkout.gpu.count : 0);
  return drift.length
    ? ["config drift (a deploy from this checkout would change):", ...drift.map((d) => `  ${d}`)]
    : ["config drift: none (this checkout deploys what runs)"];
}

export function renderStatus(
  stack: string,
  report: Report,
  checkout?: HubConfig,
): { lines: string[]; healthy: boolean } {
  const lines: string[] = [];
  let healthy = true;
  lines.push(
    `stack ${stack}: tier ${report.tier ?? "?"}${report.region ? `, ${report.region}` : ""}, at ${report.url ?? "?"}`,
  );
  const down = (report.backends ?? []).filter((b) => !b.up);
  if (down.length) healthy = false;
  lines.push(
    `backends: ${(report.backends ?? []).map((b) => (b.up ? `${b.service} up` : `${b.service} DOWN (${b.error ?? `HTTP ${b.status}`})`)).join(", ") || "none"}`,
  );
  if (report.gateway && !report.gateway.reachable) {
    healthy = false;
    lines.push(`gateway metrics: NOT READ (${report.gateway.error}): GPU replicas and certificates unknown`);
  }
  const gpu = report.gpu;
  if (gpu && (gpu.deployed || gpu.wanted || gpu.ready)) {
    lines.push(
      `GPU nodes: ${gpu.wanted ?? "?"} wanted, ${gpu.ready ?? "?"} ready${gpu.starting ? `, ${gpu.starting} starting` : ""} (${gpu.deployed ?? "?"} deployed)${gpu.pin ? `; pinned at ${gpu.pin.nodes} until ${gpu.pin.until}` : ""}`,
    );
    for (const r of report.gpuReplicas ?? []) if (!r.up) lines.push(`  replica ${r.url} DOWN`);
  } else lines.push("GPU nodes: none running");
  const c = report.controller;
  if (c?.runs) {
    if (c.reachable)
      lines.push(
        `controller: ${c.mode ?? "?"} mode; last decision: ${c.decision ? `${c.decision.wantedNodes} node(s), ${c.decision.reason}` : "none yet"}`,
      );
    else {
      healthy = false;
      lines.push(
        `controller: NOT ANSWERING (${c.error}): no scaling or budget decision is made until it is back (hub logs controller)`,
      );
    }
  }
  const s = report.spend;
  if (s)
    lines.push(
      `spend: ${s.gpuMonthToDateUsd !== null ? `GPU ${usd(s.gpuMonthToDateUsd)} of ${usd(s.gpuBudgetUsd)} this month; ` : ""}projected month ${usd(s.projectedMonthUsd)} of budget ${usd(s.budgetUsd)}`,
    );
  const tls = report.tls;
  if (tls?.domain) {
    const cert = tls.certificates?.find((x) => x.cn === tls.domain) ?? tls.certificates?.[0];
    if (!cert) {
      healthy = false;
      lines.push(
        `TLS: no certificate for ${tls.domain} yet (Let's Encrypt issues it on the first request; check DNS points at the gateway)`,
      );
    } else
      lines.push(
        `TLS: ${cert.cn} valid until ${cert.notAfter.slice(0, 10)} (${cert.daysLeft} days)${cert.daysLeft < 14 ? " RENEWAL OVERDUE" : ""}`,
      );
  } else lines.push("TLS: none (no domain): plain HTTP");
  const k = report.keys;
  if (k)
    lines.push(
      `keys: ${k.active} active of ${k.total} (${k.declared} declared, ${k.runtime} runtime records in ${k.store})${k.storeError ? `; key store NOT READABLE: ${k.storeError}` : ""}${k.declaredFileError ? `; declared keys file refused: ${k.declaredFileError}` : ""}`,
    );
  if (k?.storeError || k?.declaredFileError) healthy = false;
  const a = report.audit;
  if (a)
    lines.push(
      `audit: ${a.configured ? (a.connected === false ? `PostgreSQL NOT CONNECTED (${a.lastError}); decisions wait in the spool` : "PostgreSQL connected") : "spool only (no database)"}`,
    );
  lines.push(...driftLines(report, checkout));
  return { lines, healthy };
}
