import { gatewayRoutes, prometheusScrapes } from "./diagram-links";
import { UNKNOWN_MARK } from "./mock-engine";
import type { PlanArtifact, PlanDocument } from "./document";

/**
 * A picture of one deployment, read from what the plan registered under Pulumi's mock engine
 * (droplets, volumes and their attachments, firewalls, Docker containers) and from the Traefik
 * files it rendered (routes): never a second description of the deployment. Resources are
 * linked the way the cloud links them: an attachment's dropletId and volumeId, a firewall's
 * tags, a Docker provider's host address, a Traefik server's URL.
 */

type PlanResource = PlanDocument["resources"][number];

const TYPES = {
  vpc: "digitalocean:index/vpc:Vpc",
  droplet: "digitalocean:index/droplet:Droplet",
  volume: "digitalocean:index/volume:Volume",
  attachment: "digitalocean:index/volumeAttachment:VolumeAttachment",
  firewall: "digitalocean:index/firewall:Firewall",
  reservedIpAssignment: "digitalocean:index/reservedIpAssignment:ReservedIpAssignment",
  dockerProvider: "pulumi:providers:docker",
  container: "docker:index/container:Container",
} as const;

/**
 * Where a firewall rule lets traffic in from: anywhere, the stack's VPC range, or the admin
 * sources (adminCidrs, or the deploying machine's address). On the local tier, which has no
 * firewall, "admin" is this machine itself (ports published on loopback).
 */
export type SourceClass = "internet" | "vpc" | "admin";

export interface PictureHost {
  readonly id: string;
  /** The hub's node name (cpu, gpu-0), or "local" for this machine's Docker engine. */
  readonly node: string;
  /** droplet: planned now; off: a GPU node of the tier with no droplet (gpuEnabled false); local: the user's own Docker. */
  readonly kind: "droplet" | "off" | "local";
  readonly size?: string;
  readonly image?: string;
  readonly cloudName?: string;
  readonly firewalls: readonly string[];
  readonly reservedIp: boolean;
  /** What an off node would run once on (the plan's placement). */
  readonly wouldRun: readonly string[];
}

export interface PictureVolume {
  readonly id: string;
  readonly cloudName: string;
  readonly sizeGiB: number;
  readonly filesystem?: string;
  readonly protect: boolean;
  readonly retainOnDelete: boolean;
  /** Host id of the droplet the attachment names; undefined when detached. */
  readonly attachedTo?: string;
  /** Detached: the off GPU node it attaches to once on (model-cache-<i> belongs to the i-th GPU node, infra/program.ts). */
  readonly waitsFor?: string;
}

export interface PublishedPort {
  readonly port: number;
  /** all: every interface (public); private: the node's VPC address; loopback: 127.0.0.1. */
  readonly on: "all" | "private" | "loopback";
}

export interface PictureContainer {
  readonly id: string;
  readonly host: string;
  readonly name: string;
  readonly image: string;
  readonly gpu: boolean;
  readonly published: readonly PublishedPort[];
  readonly memoryMiB?: number;
  /** On the node's own network (networkMode host): it listens on the node's addresses, publishing nothing. */
  readonly hostNetwork?: boolean;
}

export interface PictureExposure {
  readonly source: SourceClass;
  /** Host id (firewall rules), or container id (local tier: loopback ports). */
  readonly target: string;
  readonly firewall?: string;
  /** e.g. "80", "443", "icmp". */
  readonly ports: readonly string[];
  /** The rule's source addresses as planned ("(known after deploy)" for the deployer's own address). */
  readonly addresses: readonly string[];
}

export interface PictureRoute {
  readonly from: string;
  readonly to: string;
  readonly kind: "route" | "fallback" | "auth";
  /** Public paths (a trailing * for prefixes); for auth edges, the scopes asked for. */
  readonly labels: readonly string[];
}

/** Prometheus to a container (or, for a target on a node's address with no container publishing it, the node) it scrapes. */
export interface PictureScrape {
  readonly from: string;
  readonly to: string;
  /** Prometheus job names. */
  readonly jobs: readonly string[];
}

export interface Picture {
  readonly stack: string;
  readonly tier: string;
  readonly region: string;
  readonly vpc?: { readonly name: string; readonly cidr?: string };
  readonly hosts: readonly PictureHost[];
  readonly volumes: readonly PictureVolume[];
  readonly containers: readonly PictureContainer[];
  readonly exposures: readonly PictureExposure[];
  readonly routes: readonly PictureRoute[];
  readonly scrapes: readonly PictureScrape[];
  /** The container API clients call (/v1 on the gateway), and the public path prefixes they use. */
  readonly client?: { readonly to: string; readonly paths: readonly string[] };
  /** SSH's sources as the plan decided them (deployer, cidrs, open). */
  readonly sshDescription?: string;
}

const ANYWHERE = new Set(["0.0.0.0/0", "::/0"]);
const ident = (prefix: string, name: string) => `${prefix}_${name.replace(/[^A-Za-z0-9]/g, "_")}`;
const asStrings = (v: unknown): string[] => (Array.isArray(v) ? v.map(String) : typeof v === "string" ? [v] : []);
/** The component a resource belongs to, by its parent URN's last segment (HubNode "cpu", ContainerHost "cpu-containers"). */
const parentName = (r: PlanResource) => r.parent?.split("::").pop();

/** Builds the picture from a successful plan's document and its rendered files. */
export function pictureOf(document: PlanDocument, artifacts: readonly PlanArtifact[]): Picture {
  const resources = document.resources;
  const ofType = (type: string) => resources.filter((r) => r.type === type);
  const byUrn = new Map(resources.map((r) => [r.urn, r]));

  const vpcResource = ofType(TYPES.vpc)[0];
  const vpcCidr = vpcResource
    ? String(vpcResource.inputs.ipRange ?? vpcResource.cloudOutputs?.ipRange ?? "") || undefined
    : undefined;

  // Droplets, keyed by the ids and addresses other resources name them by.
  const droplets = ofType(TYPES.droplet).map((r) => ({
    resource: r,
    node: parentName(r) ?? r.name,
    id: ident("host", parentName(r) ?? r.name),
  }));
  const dropletById = new Map(droplets.map((d) => [String(d.resource.id), d]));
  const dropletByPublicIp = new Map(droplets.map((d) => [String(d.resource.cloudOutputs?.ipv4Address), d]));
  const dropletByPrivateIp = new Map(droplets.map((d) => [String(d.resource.cloudOutputs?.ipv4AddressPrivate), d]));
  const reservedFor = new Set(
    ofType(TYPES.reservedIpAssignment).map((a) => dropletById.get(String(a.inputs.dropletId))?.id),
  );

  const firewalls = ofType(TYPES.firewall);
  const hosts: PictureHost[] = droplets.map((d) => {
    const tags = new Set(asStrings(d.resource.inputs.tags));
    return {
      id: d.id,
      node: d.node,
      kind: "droplet",
      size: String(d.resource.inputs.size),
      image: String(d.resource.inputs.image),
      cloudName: String(d.resource.inputs.name),
      firewalls: firewalls
        .filter((f) => asStrings(f.inputs.tags).some((t) => tags.has(t)))
        .map((f) => String(f.inputs.name)),
      reservedIp: reservedFor.has(d.id),
      wouldRun: [],
    };
  });
  // GPU nodes of the tier that have no droplet right now (the hybrid GPU while off).
  for (const node of document.nodes) {
    if (node.active || hosts.some((h) => h.node === node.name)) continue;
    hosts.push({
      id: ident("host", node.name),
      node: node.name,
      kind: "off",
      size: node.size,
      firewalls: [],
      reservedIp: false,
      wouldRun: node.workloads.map((w) => w.role),
    });
  }

  const gpuNodes = document.nodes.filter((n) => n.kind === "gpu");
  const volumes: PictureVolume[] = ofType(TYPES.volume).map((v) => {
    const attachment = ofType(TYPES.attachment).find((a) => String(a.inputs.volumeId) === String(v.id));
    const gpuIndex = /(?:^|-)model-cache-(\d+)$/.exec(v.name)?.[1];
    const owner =
      gpuIndex === undefined
        ? undefined
        : hosts.find((h) => h.kind === "off" && h.node === gpuNodes[Number(gpuIndex)]?.name);
    return {
      id: ident("vol", v.name),
      cloudName: String(v.inputs.name),
      sizeGiB: Number(v.inputs.size),
      filesystem: v.inputs.initialFilesystemType === undefined ? undefined : String(v.inputs.initialFilesystemType),
      protect: v.options.protect,
      retainOnDelete: v.options.retainOnDelete,
      attachedTo: attachment ? dropletById.get(String(attachment.inputs.dropletId))?.id : undefined,
      waitsFor: attachment ? undefined : owner?.id,
    };
  });

  // Containers run where their Docker provider dials: a droplet's public address, or the local engine.
  const containers: PictureContainer[] = [];
  for (const c of ofType(TYPES.container)) {
    const provider = c.provider ? byUrn.get(c.provider) : undefined;
    const dockerHost = provider ? String(provider.inputs.host ?? "") : "";
    const address = /^ssh:\/\/[^@]+@(.+)$/.exec(dockerHost)?.[1];
    const droplet = address ? dropletByPublicIp.get(address) : undefined;
    let hostId: string;
    if (droplet) hostId = droplet.id;
    else if (!dockerHost) {
      hostId = "host_local";
      if (!hosts.some((h) => h.id === hostId))
        hosts.push({ id: hostId, node: "local", kind: "local", firewalls: [], reservedIp: false, wouldRun: [] });
    } else throw new Error(`container ${c.name}: its Docker provider dials ${dockerHost}, which is no planned droplet`);
    const name = String(c.inputs.name);
    const published = (
      Array.isArray(c.inputs.ports) ? (c.inputs.ports as { external?: number; internal: number; ip?: string }[]) : []
    ).map(
      (p): PublishedPort => ({
        port: Number(p.external ?? p.internal),
        on: p.ip === "0.0.0.0" || p.ip === undefined ? "all" : p.ip === "127.0.0.1" ? "loopback" : "private",
      }),
    );
    containers.push({
      id: ident(`c_${hostId.slice(5)}`, name),
      host: hostId,
      name,
      image: String(imageOf(c, resources) ?? ""),
      gpu: c.inputs.gpus !== undefined || Array.isArray(c.inputs.devices),
      published,
      memoryMiB: typeof c.inputs.memory === "number" ? c.inputs.memory : undefined,
      hostNetwork: c.inputs.networkMode === "host",
    });
  }

  const exposures: PictureExposure[] = [];
  for (const f of firewalls) {
    const targets = hosts.filter((h) => h.firewalls.includes(String(f.inputs.name)));
    const rules = Array.isArray(f.inputs.inboundRules)
      ? (f.inputs.inboundRules as {
          protocol: string;
          portRange?: string;
          sourceAddresses?: unknown;
          sourceTags?: unknown;
        }[])
      : [];
    const grouped = new Map<SourceClass, { ports: string[]; addresses: Set<string> }>();
    for (const rule of rules) {
      // A rule by tag (the hub's own nodes, with a sandbox node in the VPC) admits nodes inside the VPC.
      const addresses =
        rule.sourceAddresses === undefined ? asStrings(rule.sourceTags) : asStrings(rule.sourceAddresses);
      const source: SourceClass = addresses.some((a) => ANYWHERE.has(a))
        ? "internet"
        : rule.sourceAddresses === undefined && addresses.length > 0
          ? "vpc"
          : vpcCidr && addresses.length > 0 && addresses.every((a) => a === vpcCidr)
            ? "vpc"
            : "admin";
      const group = grouped.get(source) ?? { ports: [], addresses: new Set<string>() };
      group.ports.push(rule.protocol === "icmp" ? "icmp" : `${rule.portRange}`);
      for (const a of addresses) group.addresses.add(a);
      grouped.set(source, group);
    }
    for (const host of targets)
      for (const [source, g] of grouped)
        exposures.push({
          source,
          target: host.id,
          firewall: String(f.inputs.name),
          ports: g.ports,
          addresses: [...g.addresses],
        });
  }
  // No cloud firewall on a laptop: what is published on loopback is what this machine reaches.
  for (const c of containers.filter((x) => x.host === "host_local")) {
    const loopback = c.published.filter((p) => p.on === "loopback").map((p) => String(p.port));
    if (loopback.length) exposures.push({ source: "admin", target: c.id, ports: loopback, addresses: ["127.0.0.1"] });
  }

  const routes = gatewayRoutes(artifacts, containers, (ip) => dropletByPrivateIp.get(ip)?.id);
  const gateway = containers.find((c) => c.image.startsWith("traefik:"));
  const apiPaths = routes.some((r) => r.kind === "route" && r.labels.some((l) => l.startsWith("/v1/")))
    ? ["/v1/*"]
    : [];
  const hostOfIp = (ip: string) => dropletByPrivateIp.get(ip)?.id ?? dropletByPublicIp.get(ip)?.id;
  return {
    stack: document.stack,
    tier: document.tier,
    region: document.region,
    vpc: vpcResource ? { name: String(vpcResource.inputs.name), cidr: vpcCidr } : undefined,
    hosts,
    volumes,
    containers,
    exposures,
    routes,
    scrapes: prometheusScrapes(artifacts, containers, hostOfIp),
    client: gateway && apiPaths.length ? { to: gateway.id, paths: apiPaths } : undefined,
    sshDescription: document.ssh?.description,
  };
}

/** A container's image name: its RemoteImage's name (the container names the image by id). */
function imageOf(container: PlanResource, resources: readonly PlanResource[]): unknown {
  const sibling = resources.find(
    (r) =>
      r.type === "docker:index/remoteImage:RemoteImage" &&
      r.parent === container.parent &&
      r.name.endsWith(`-image-${String(container.inputs.name)}`),
  );
  return sibling?.inputs.name ?? container.inputs.image;
}

// ---- Mermaid ----

/** Text inside a quoted Mermaid label: quotes and angle brackets as entities, lines joined by <br/>. */
const label = (...lines: string[]) =>
  `"${lines.map((l) => l.replace(/&/g, "#amp;").replace(/"/g, "#quot;").replace(/</g, "#lt;").replace(/>/g, "#gt;")).join("<br/>")}"`;

const SOURCE_NODES: Record<SourceClass, { id: string; text: (p: Picture, addresses: readonly string[]) => string[] }> =
  {
    internet: { id: "src_internet", text: () => ["internet", "0.0.0.0/0, ::/0"] },
    vpc: { id: "src_vpc", text: (p) => ["the VPC", p.vpc?.cidr ? `${p.vpc.cidr} (stand-in range)` : "private range"] },
    admin: {
      id: "src_admin",
      text: (p, addresses) =>
        p.tier === "local"
          ? ["this machine", "127.0.0.1"]
          : addresses.includes(UNKNOWN_MARK) || addresses.length === 0
            ? ["admin SSH", "the deploying machine's address, found at each pulumi up"]
            : ["admin SSH", addresses.join(", ")],
    },
  };

const CLIENT_NODE = "src_client";

const portsText = (ports: readonly string[]) => {
  const tcp = ports.filter((p) => p !== "icmp");
  return [tcp.length ? `tcp ${tcp.join(", ")}` : "", ports.includes("icmp") ? "icmp" : ""].filter(Boolean).join(" + ");
};
const publishedText = (c: PictureContainer) => {
  const on = (kind: PublishedPort["on"]) =>
    c.published
      .filter((p) => p.on === kind)
      .map((p) => `:${p.port}`)
      .join(" ");
  return [
    on("all") && `${on("all")} all interfaces`,
    on("private") && `${on("private")} VPC address`,
    on("loopback") && `${on("loopback")} loopback`,
  ]
    .filter(Boolean)
    .join(" · ");
};

export interface MermaidOptions {
  /** @default - false: the full picture; true leaves out image tags and memory limits (the README's copy) */
  readonly compact?: boolean;
}

/** The picture as a Mermaid flowchart (left to right), which GitHub renders. */
export function renderMermaid(p: Picture, options: MermaidOptions = {}): string {
  // Left to right: sources, the gateway, then the containers in a column, narrow enough for a README.
  const out: string[] = ["flowchart LR"];
  if (p.client)
    out.push(
      `  ${CLIENT_NODE}((${label(...(p.tier === "local" ? ["API clients on this machine"] : ["API clients"]), "OpenAI SDKs, curl, Continue, aider")}))`,
    );
  const usedSources = new Map<SourceClass, string[]>();
  for (const e of p.exposures) usedSources.set(e.source, [...(usedSources.get(e.source) ?? []), ...e.addresses]);
  for (const [source, addresses] of usedSources)
    out.push(`  ${SOURCE_NODES[source].id}((${label(...SOURCE_NODES[source].text(p, addresses))}))`);

  const hostBlock = (h: PictureHost, indent: string) => {
    if (h.kind === "off") {
      out.push(
        `${indent}${h.id}[${label(`${h.node} · ${h.size}`, "OFF: no droplet (gpuEnabled false)", `runs ${h.wouldRun.join(", ")} when on`)}]`,
      );
      return;
    }
    const title =
      h.kind === "local"
        ? ["this machine's Docker engine (local tier)"]
        : [
            `${h.node} · droplet ${h.cloudName} · ${h.size}${h.reservedIp ? " · reserved IP" : ""}`,
            ...(options.compact ? [] : [`image ${h.image}`]),
            `firewall ${h.firewalls.join(", ") || "none"}`,
          ];
    out.push(`${indent}subgraph ${h.id}[${label(...title)}]`);
    for (const c of p.containers.filter((x) => x.host === h.id)) {
      const details = options.compact
        ? [c.image.replace(/^.*\//, "").replace(":", " ")]
        : [c.image, ...(c.memoryMiB ? [`memory ${c.memoryMiB} MiB`] : [])];
      const ports = publishedText(c);
      out.push(
        `${indent}  ${c.id}[${label(`${c.name}${c.gpu ? " (GPU)" : ""}`, ...details, ...(ports ? [ports] : []))}]`,
      );
    }
    out.push(`${indent}end`);
  };

  const droplets = p.hosts.filter((h) => h.kind !== "local");
  if (p.vpc) {
    out.push(`  subgraph vpc[${label(`VPC ${p.vpc.name} · ${p.region}`)}]`);
    for (const h of droplets) hostBlock(h, "    ");
    out.push("  end");
  } else for (const h of droplets) hostBlock(h, "  ");
  for (const h of p.hosts.filter((x) => x.kind === "local")) hostBlock(h, "  ");

  for (const v of p.volumes) {
    const keep = [
      v.protect ? "protected" : "NOT protected",
      v.retainOnDelete ? "kept on destroy" : "deleted on destroy",
    ].join(" · ");
    out.push(
      `  ${v.id}[(${label(v.cloudName, `${v.sizeGiB} GiB${v.filesystem ? ` ${v.filesystem}` : ""}`, keep, ...(v.attachedTo ? [] : ["detached"]))})]`,
    );
  }

  for (const e of p.exposures) out.push(`  ${SOURCE_NODES[e.source].id} -->|${label(portsText(e.ports))}| ${e.target}`);
  if (p.client)
    out.push(`  ${CLIENT_NODE} -->|${label(`${p.client.paths.join(" ")} with an API key`)}| ${p.client.to}`);
  // Volume first: the volumes sit in the sources' column rather than widening the picture.
  for (const v of p.volumes) if (v.attachedTo) out.push(`  ${v.id} ---|${label("attached")}| ${v.attachedTo}`);
  for (const v of p.volumes) if (v.waitsFor) out.push(`  ${v.id} -.-|${label("attaches when on")}| ${v.waitsFor}`);
  // The job names only in the full picture: in the compact one a label would widen it past a README column.
  for (const sc of p.scrapes)
    out.push(`  ${sc.from} -.->|${label(options.compact ? "scrape" : `scrapes ${sc.jobs.join(", ")}`)}| ${sc.to}`);
  for (const r of p.routes) {
    const arrow = r.kind === "route" ? "-->" : "-.->";
    const text =
      r.kind === "auth"
        ? [`forwardAuth${r.labels.length ? ` (${r.labels.join(", ")})` : ""}`]
        : r.kind === "fallback"
          ? [`fallback: ${r.labels.join(" ")}`]
          : r.labels;
    out.push(`  ${r.from} ${arrow}|${label(...text)}| ${r.to}`);
  }

  // Off nodes and detached volumes drawn dashed; protected volumes in the volume colour.
  out.push("  classDef off fill:#f4f4f4,stroke:#999,stroke-dasharray:5 5,color:#666");
  out.push("  classDef volume fill:#e8f1fb,stroke:#3b6ea8");
  out.push("  classDef detached fill:#f4f4f4,stroke:#3b6ea8,stroke-dasharray:5 5");
  out.push("  classDef source fill:#fff7e0,stroke:#b08400");
  const off = p.hosts.filter((h) => h.kind === "off").map((h) => h.id);
  if (off.length) out.push(`  class ${off.join(",")} off`);
  const attached = p.volumes.filter((v) => v.attachedTo).map((v) => v.id);
  const detached = p.volumes.filter((v) => !v.attachedTo).map((v) => v.id);
  if (attached.length) out.push(`  class ${attached.join(",")} volume`);
  if (detached.length) out.push(`  class ${detached.join(",")} detached`);
  const sourceIds = [...(p.client ? [CLIENT_NODE] : []), ...[...usedSources.keys()].map((s) => SOURCE_NODES[s].id)];
  if (sourceIds.length) out.push(`  class ${sourceIds.join(",")} source`);
  return `${out.join("\n")}\n`;
}

/** File formats `--diagram FILE` writes, by extension (.svg through cli/plan/diagram-svg.ts). */
export const DIAGRAM_EXTENSIONS = [".mmd", ".md", ".svg"] as const;

/** Why a FILE cannot be written, naming what would work; undefined when it can. */
export function diagramFileProblem(file: string): string | undefined {
  const lower = file.toLowerCase();
  if (DIAGRAM_EXTENSIONS.some((ext) => lower.endsWith(ext))) return undefined;
  return `--diagram ${JSON.stringify(file)}: unknown file type. Use a .mmd file (Mermaid text), a .md file (a fenced mermaid block, which GitHub renders) or a .svg file (drawn by Mermaid in a headless Chromium).`;
}

/** The file's content for its extension (see diagramFileProblem). */
export function diagramFileContent(file: string, p: Picture, mermaid: string): string {
  if (file.toLowerCase().endsWith(".md"))
    return `# Deployment of stack ${p.stack} (${p.tier} tier, ${p.region})\n\nGenerated by \`npm run plan -- --diagram\` from the offline plan.\n\n\`\`\`mermaid\n${mermaid}\`\`\`\n`;
  return mermaid;
}
