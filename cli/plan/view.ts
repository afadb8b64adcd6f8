import { formatProblem } from "../../stacks/problems";
import type { FailedPlanDocument, PlanDocument } from "./document";

export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (c ?? "").padEnd(widths[i]))
      .join("  ")
      .trimEnd();
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}

const money = (n: number) => `$${n.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
const num = (n: number, digits = 1) => n.toFixed(digits);

export function renderFailure(doc: FailedPlanDocument): string {
  // The type already forbids it; a document read back from JSON could still try.
  if (doc.problems.length === 0)
    throw new Error(
      `stack ${doc.stack} was refused without a problem; that is a bug in the plan, not in the stack file`,
    );
  const lines = [
    `Stack ${doc.stack} (${doc.configFile}) is refused: ${doc.problems.length} problem${doc.problems.length === 1 ? "" : "s"}. Nothing was planned or spent.`,
    "",
  ];
  for (const p of doc.problems) lines.push(`  ✗ ${formatProblem(p)}`);
  if (doc.warnings.length) {
    lines.push("");
    for (const w of doc.warnings) lines.push(`  ! ${w.keys.join(", ")}: ${w.message}`);
  }
  return lines.join("\n");
}

function section(title: string, body: string): string {
  return `\n== ${title} ==\n${body}`;
}

export function renderPlan(doc: PlanDocument): string {
  const out: string[] = [];
  out.push(`Inference hub plan: stack ${doc.stack}, tier ${doc.tier}, region ${doc.region} (${doc.configFile})`);
  out.push(`Offline: Pulumi's mock engine ran the program as a preview; nothing was created. ${doc.notes.join(" ")}.`);
  if (doc.warnings.length)
    out.push(section("Warnings", doc.warnings.map((w) => `  ! ${w.keys.join(", ")}: ${w.message}`).join("\n")));
  const boot = doc.gpuImage;
  if (boot)
    out.push(
      `GPU nodes boot ${boot.kind === "baked" ? `the baked image ${boot.name} (snapshot ${boot.image})` : `the base image ${boot.image}: ${boot.why}`}.`,
    );

  out.push(
    section(
      "Configuration",
      table(
        ["setting", "value", "from"],
        Object.entries(doc.settings).map(([k, v]) => [k, JSON.stringify(v.value), v.source]),
      ),
    ),
  );

  const placement: string[][] = [];
  for (const node of doc.nodes) {
    const state = node.active ? "" : " (planned; GPU off)";
    for (const w of node.workloads) {
      const resources =
        w.gpuShare !== undefined
          ? `GPU share ${w.gpuShare.toFixed(2)}`
          : w.ramGiB !== undefined
            ? `${num(w.ramGiB, 2)} GiB RAM`
            : "";
      placement.push([`${node.name}${state}`, node.size, w.role, w.program, w.model ?? "", resources]);
    }
  }
  out.push(section("Placement", table(["node", "size", "service", "program", "model", "needs"], placement)));

  const fit: string[] = [];
  if (doc.fit.gpu.length) {
    fit.push(
      table(
        [
          "service",
          "model",
          "format",
          "TP",
          "share",
          "weights",
          "KV (1 seq)",
          "overhead",
          "needed",
          "available",
          "full-context seqs",
        ],
        doc.fit.gpu.map((r) => [
          r.service,
          r.model,
          r.format,
          String(r.tensorParallel),
          r.share.toFixed(2),
          `${num(r.weightsPerGpuGB)} GB`,
          `${num(r.kvPerGpuGB, 2)} GB`,
          `${num(r.overheadGB)} GB`,
          `${num(r.neededPerGpuGB)} GB`,
          `${num(r.availablePerGpuGB)} GB`,
          String(r.fullContextSequences),
        ]),
      ),
    );
    fit.push(
      "(per GPU; needed = weights + KV cache for one full-context sequence + overhead; available = GPU memory x share)",
    );
  }
  for (const c of doc.fit.cpu)
    fit.push(`CPU node ${c.node} (${c.size}): services need ${num(c.ramNeededGiB, 2)} GiB of ${c.ramGiB} GiB RAM.`);
  const mc = doc.fit.modelCache;
  if (mc.volumes > 0 && mc.neededGiB > 0)
    fit.push(
      `Model cache: ${mc.volumes} volume(s) of ${mc.sizeGiB} GiB; GPU weights + compile cache need ${mc.neededGiB} GiB each.`,
    );
  else if (mc.volumes > 0)
    fit.push(
      `Model cache: ${mc.volumes} volume of ${mc.sizeGiB} GiB, kept (detached) so a move to a GPU tier finds it; this tier stores nothing on it.`,
    );
  out.push(section("Fit", fit.join("\n")));

  const cost = doc.cost;
  const costLines = [
    table(
      ["item", "detail", "per month"],
      [...cost.lines.map((l) => [l.item, l.detail, money(l.monthlyUsd)]), ["Total", "", money(cost.monthlyUsd)]],
    ),
  ];
  costLines.push(
    cost.hourlyGpuOnUsd > cost.hourlyNowUsd
      ? `Burn now: ${money(cost.hourlyNowUsd)}/h; with the GPU on: ${money(cost.hourlyGpuOnUsd)}/h.`
      : `Burn: ${money(cost.hourlyNowUsd)}/h.`,
  );
  for (const s of cost.seedComparison)
    costLines.push(`Seed design said ${s.item} ${s.seed}; we use ${s.ours}: ${s.why}`);
  out.push(section("Cost", costLines.join("\n")));

  if (doc.containers.length) {
    out.push(
      section(
        "Containers",
        table(
          ["node", "container", "image", "GPU", "memory limit", "published"],
          doc.containers.map((c) => [
            c.node,
            c.name,
            c.image,
            c.gpu ?? "",
            c.memoryLimitMiB ? `${c.memoryLimitMiB} MiB` : "",
            c.published.join(" "),
          ]),
        ),
      ),
    );
  }
  if (doc.vllmArgs.length)
    out.push(
      section(
        "vLLM command lines",
        doc.vllmArgs.map((v) => `${v.node} ${v.service}: vllm serve ${v.args.join(" ")}`).join("\n"),
      ),
    );

  if (doc.kubernetes) out.push(section("Kubernetes", kubernetesLines(doc.kubernetes).join("\n")));
  if (doc.ssh) {
    out.push(
      section(
        "SSH",
        [
          `  ${doc.ssh.exposure === "anywhere" ? "!" : "-"} Exposure (${doc.ssh.exposure}): ${doc.ssh.description}`,
          "  - Host keys: each node gets its own ED25519 host key from the program (cloud-init ssh_keys); every deploy connection trusts exactly that key, never an address's history.",
        ].join("\n"),
      ),
    );
  }
  if (doc.resources.length)
    out.push(
      section(`Resources (${doc.resources.length}, as a preview would create them)`, resourceTree(doc.resources)),
    );
  if (doc.artifacts.length) {
    // As wide as the longest kind and node, so "prometheus-targets" keeps its column.
    const kindWidth = Math.max(...doc.artifacts.map((a) => a.kind.length));
    const nodeWidth = Math.max(8, ...doc.artifacts.map((a) => a.node.length));
    out.push(
      section(
        "Rendered artifacts",
        doc.artifacts.map((a) => `${a.kind.padEnd(kindWidth)} ${a.node.padEnd(nodeWidth)} ${a.path}`).join("\n"),
      ),
    );
  }
  return out.join("\n");
}

function kubernetesLines(k: NonNullable<PlanDocument["kubernetes"]>): string[] {
  const lines = [
    `  - DOKS ${k.release.slug} (Kubernetes ${k.release.kubernetes}; the deploy takes the newest ${k.release.minor} patch the region offers).`,
    `  - CPU pool: ${k.cpuPool.nodes} x ${k.cpuPool.size}, ${num(k.cpuPool.allocatableGiBPerNode, 2)} GiB for pods on each; the pods ask for ${num(k.cpuPool.ramNeededGiB, 2)} GiB (${k.cpuPool.placement.map((n, i) => `node ${i + 1}: ${n.join(", ")}`).join("; ")}).`,
    `  - GPU pool: ${k.gpuPool.size}, ${k.gpuPool.minNodes} to ${k.gpuPool.maxNodes} node(s), ${k.gpuPool.gpusPerNode} ${k.gpuPool.resource} each; ${k.gpuPool.nodeHours} node-hours a month expected.`,
    `  - Public: only the load balancer, ports ${k.publicPorts.join(" and ")}; everything else is reachable inside the cluster only.`,
  ];
  if (k.scaling) {
    lines.push(
      `  - Scaling: KEDA (${k.scaling.keda}) every ${k.scaling.pollingSeconds} s: replicas = ${k.scaling.formula}`,
      ...Object.entries(k.scaling.queries).map(([name, q]) => `      ${name} = ${q}`),
      `  - Cold start on DOKS ≈ ${k.scaling.coldStartSeconds} s (${k.scaling.coldStart.map((s) => `${s.name} ${s.seconds} s${s.unverified ? " ⚠" : ""}`).join(" + ")}); KEDA's cooldown and scale-down window are ${k.scaling.cooldownSeconds} s, so a loading replica is never scaled away; an empty GPU node goes after ${k.scaling.emptyNodeGoesAfter}.`,
    );
  }
  lines.push(
    `  - Model cache: claims ${k.modelCache.claims.join(", ")} on ${k.modelCache.storageClass}; ${k.modelCache.note}`,
  );
  return lines;
}

type PlannedResource = PlanDocument["resources"][number];

/** The inputs worth a glance, per resource type. */
function keyInputs(r: PlannedResource): string {
  const i = r.inputs as Record<string, unknown>;
  const pick = (...keys: string[]) =>
    keys
      .filter((k) => i[k] !== undefined && i[k] !== "")
      .map((k) => `${k}=${typeof i[k] === "string" ? i[k] : JSON.stringify(i[k])}`);
  const parts: string[] = [];
  switch (r.type) {
    case "digitalocean:index/droplet:Droplet":
      parts.push(...pick("name", "size", "region", "image"));
      break;
    case "digitalocean:index/volume:Volume":
      parts.push(...pick("name", "size", "region", "initialFilesystemType"));
      break;
    case "digitalocean:index/firewall:Firewall": {
      const rules =
        (i.inboundRules as
          | { protocol: string; portRange?: string; sourceAddresses?: unknown; sourceTags?: unknown }[]
          | undefined) ?? [];
      parts.push(
        ...pick("name"),
        `in: ${rules.map((x) => `${x.protocol}/${x.portRange ?? "all"}<-${JSON.stringify(x.sourceAddresses ?? x.sourceTags)}`).join(", ")}`,
      );
      break;
    }
    case "tls:index/privateKey:PrivateKey":
      parts.push("the node's SSH host key (ED25519), installed by cloud-init, pinned by the deployer");
      break;
    case "command:remote:Command":
      parts.push(
        r.name.endsWith("-ready")
          ? "readiness check over SSH"
          : r.name.endsWith("-restart")
            ? "restarts a service over SSH and waits for it to answer"
            : `writes a file over SSH (${r.name.replace(/^.*-file-/, "")})`,
      );
      break;
    case "docker:index/container:Container":
      parts.push(
        ...pick("name"),
        `image=${String((i.image as string) ?? "").replace(/^mock-.*/, "(pulled image id)")}`,
      );
      break;
    default:
      parts.push(...pick("name", "region", "ipRange"));
  }
  const o = r.options;
  const flags = [
    o.protect ? "protect" : "",
    o.retainOnDelete ? "retainOnDelete" : "",
    o.ignoreChanges.length ? `ignoreChanges=${o.ignoreChanges.join("/")}` : "",
    o.deleteBeforeReplace ? "deleteBeforeReplace" : "",
  ].filter(Boolean);
  return [...parts, ...(flags.length ? [`[${flags.join(", ")}]`] : [])].join("  ");
}

export function resourceTree(resources: readonly PlannedResource[]): string {
  const children = new Map<string | undefined, PlannedResource[]>();
  for (const r of resources) children.set(r.parent, [...(children.get(r.parent) ?? []), r]);
  const lines: string[] = [];
  const walk = (parent: string | undefined, depth: number) => {
    for (const r of children.get(parent) ?? []) {
      const shortType = r.type
        .replace(/^digitalocean:index\/[a-zA-Z]+:/, "digitalocean:")
        .replace(/^inference-hub:/, "");
      lines.push(`${"  ".repeat(depth)}${depth ? "└ " : ""}${shortType} ${r.name}  ${keyInputs(r)}`.trimEnd());
      walk(r.urn, depth + 1);
    }
  };
  walk(undefined, 0);
  return lines.join("\n");
}
