import { writeFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { asExternalSpend, EXTERNAL_SPEND_FILE, ExternalSpend } from "../../../programs/autoscaler/controller/contract";
import { AUTOSCALER_DIRS } from "../../../services/autoscaler";
import { autoscalerRuns } from "../../../services/routes";
import type { HubConfig } from "../../../stacks/hub-config";
import type { StackOps } from "../ops";
import type { RemoteShell } from "./job-ops";
import { JobRecord, spendUsd } from "./record";

/**
 * The job's droplet spend, per month, into the autoscaling controller's state directory on the
 * CPU node (contract.ts EXTERNAL_SPEND_FILE), so the month's budget guard there counts it with the
 * serving droplets. Without a controller (or its node unreachable) the command says so: the job's
 * plan-time check still counted it, from this machine's records.
 */
export function jobSpendEntries(record: JobRecord, nowMs: number): ExternalSpend["entries"] {
  const byMonth = new Map<string, number>();
  for (const span of record.dropletSpans) {
    const month = new Date(span.fromMs).toISOString().slice(0, 7);
    byMonth.set(month, (byMonth.get(month) ?? 0) + spendUsd({ dropletSpans: [span], gpu: record.gpu }, nowMs));
  }
  return Object.fromEntries(
    [...byMonth].map(([month, usd]) => [
      `finetune:${record.stack}/${record.name}:${month}`,
      { month, usd: Math.round(usd * 10_000) / 10_000, what: `fine-tuning job ${record.name} (${record.gpu.slug})` },
    ]),
  );
}

export function mergeSpend(existing: ExternalSpend | undefined, entries: ExternalSpend["entries"]): ExternalSpend {
  return { version: 1, entries: { ...(existing?.entries ?? {}), ...entries } };
}

export async function recordJobSpend(
  serving: StackOps,
  hub: HubConfig,
  record: JobRecord,
  nodeShell: (host: string, sshOptions: readonly string[]) => RemoteShell,
  nowMs: number,
): Promise<string> {
  if (record.dropletSpans.length === 0) return "no droplet ran: nothing to add to the month's spend";
  const usd = spendUsd(record, nowMs).toFixed(2);
  if (!autoscalerRuns(hub))
    return `$${usd} of droplet time: this stack runs no autoscaling controller, so only \`finetune\`'s own check (this machine's job records) counts it against budgetUsd`;
  const outputs = await serving.outputs();
  const host = (outputs.nodeAddresses?.value as Record<string, { public?: string }> | undefined)?.cpu?.public;
  const options = (outputs.nodeSshOptions?.value as Record<string, string[]> | undefined)?.cpu;
  if (!host || !options)
    return `$${usd} NOT given to the controller's ledger: the stack's outputs lack the CPU node's address or SSH options (run \`pulumi up\` once from this checkout); the next \`finetune\` run retries`;
  const shell = nodeShell(host, options);
  const file = `${AUTOSCALER_DIRS.state}/${EXTERNAL_SPEND_FILE}`;
  const current = await shell.run(`cat ${file} 2>/dev/null || true`);
  let existing: ExternalSpend | undefined;
  try {
    existing = current.stdout.trim() ? asExternalSpend(JSON.parse(current.stdout)) : undefined;
  } catch {
    existing = undefined;
  }
  const local = path.join(os.tmpdir(), `hub-spend-${process.pid}.json`);
  writeFileSync(local, `${JSON.stringify(mergeSpend(existing, jobSpendEntries(record, nowMs)))}\n`, { mode: 0o600 });
  await shell.upload(local, file);
  const chmod = await shell.run(`chmod 0644 ${file}`);
  if (chmod.code !== 0)
    return `$${usd} written to the controller's ${EXTERNAL_SPEND_FILE}, but it could not be made readable: ${chmod.stderr.trim()}`;
  return `$${usd} of droplet time recorded in the autoscaling controller's ledger (${EXTERNAL_SPEND_FILE}): the month's GPU budget there counts it`;
}
