import * as digitalocean from "@pulumi/digitalocean";
import * as pulumi from "@pulumi/pulumi";
import { MONITORING_PORTS } from "../services/monitoring";
import { GATEWAY_METRICS_PORT, GPU_SERVICE_PORTS, PUBLIC_PORTS, SSH_PORT } from "../services/ports";
import { SANDBOX_NODE_PORT } from "../programs/sandbox/protocol";

const ANYWHERE = ["0.0.0.0/0", "::/0"];

export interface HubNetworkArgs {
  readonly region: string;
  /** Prefix of cloud names, e.g. ih-hybrid. */
  readonly cloudName: string;
  readonly stackTag: string;
  readonly tierTag: string;
  /** Droplets carrying this tag get the gateway's firewall. */
  readonly gatewayTag: string;
  /** Droplets carrying this tag get the GPU node's firewall. */
  readonly gpuTag: string;
  /**
   * Source CIDRs allowed to SSH in: adminCidrs as configured, or the deploying machine's own
   * address (/32) when none are (see stacks/ssh-exposure.ts and sshSourceCidrs).
   */
  readonly sshSources: pulumi.Input<string[]>;
  /**
   * Droplets carrying this tag get the sandbox node's firewall (only the gateway node may call it).
   * With a sandbox node in the VPC, the other firewalls' VPC-only ports admit the hub's own
   * gateway and GPU nodes by tag instead of the whole VPC range, so code escaping a sandbox
   * reaches none of them.
   * @default - no sandbox node
   */
  readonly sandboxTag?: string;
  /**
   * The sandbox node runs node_exporter (monitoring on): its port admits the gateway node, where Prometheus runs.
   * @default false
   */
  readonly sandboxNodeExporter?: boolean;
}

/** The firewall's SSH sources: the configured adminCidrs, else each deployer address as a /32. */
export function sshSourceCidrs(adminCidrs: readonly string[], deployerAddresses: readonly string[]): string[] {
  if (adminCidrs.length > 0) return [...adminCidrs];
  if (deployerAddresses.length === 0)
    throw new Error("no adminCidrs and no deployer address: refusing to open SSH to nothing or to everyone");
  return deployerAddresses.map((a) => `${a}/32`);
}

export interface FirewallRule {
  readonly protocol: "tcp" | "udp" | "icmp";
  readonly portRange?: string;
  /** vpc: the VPC (or, with a sandbox node, the hub's gateway and GPU nodes by tag); gateway: the gateway node only. */
  readonly sources: "anywhere" | "vpc" | "admin" | "gateway";
  readonly why: string;
}

/** Inbound rules by role, as data: tests read them without a cloud. */
export function inboundRules(
  role: "gateway" | "gpu" | "sandbox",
  options: { readonly sandboxNodeExporter?: boolean } = {},
): FirewallRule[] {
  const ssh: FirewallRule = {
    protocol: "tcp",
    portRange: String(SSH_PORT),
    sources: "admin",
    why: "deployer SSH (readiness, files, Docker): adminCidrs, else only the deploying machine",
  };
  if (role === "sandbox") {
    // Untrusted code runs here: the gateway node is its only caller (the front; Prometheus with monitoring on).
    return [
      {
        protocol: "tcp",
        portRange: String(SANDBOX_NODE_PORT),
        sources: "gateway",
        why: "the sandbox API, from the gateway node's front only",
      },
      ...(options.sandboxNodeExporter
        ? [
            {
              protocol: "tcp",
              portRange: String(MONITORING_PORTS.nodeExporter),
              sources: "gateway",
              why: "node_exporter, for Prometheus on the gateway node (nothing else in the VPC)",
            } satisfies FirewallRule,
          ]
        : []),
      ssh,
      { protocol: "icmp", sources: "gateway", why: "ping from the gateway node" },
    ];
  }
  const icmp: FirewallRule = { protocol: "icmp", sources: "vpc", why: "ping inside the VPC" };
  if (role === "gateway") {
    return [
      ...Object.values(PUBLIC_PORTS).map(
        (port): FirewallRule => ({
          protocol: "tcp",
          portRange: String(port),
          sources: "anywhere",
          why: "the OpenAI-compatible endpoint",
        }),
      ),
      {
        protocol: "tcp",
        portRange: String(GATEWAY_METRICS_PORT),
        sources: "vpc",
        why: "Prometheus scrapes the gateway from inside the VPC",
      },
      {
        protocol: "tcp",
        portRange: String(MONITORING_PORTS.prometheus),
        sources: "vpc",
        why: "Prometheus (under /prometheus), from inside the VPC only",
      },
      {
        protocol: "tcp",
        portRange: String(MONITORING_PORTS.nodeExporter),
        sources: "vpc",
        why: "node_exporter (host network), for Prometheus over the VPC",
      },
      ssh,
      icmp,
    ];
  }
  // The GPU node has no public inference port: only the gateway reaches vLLM, over the VPC.
  const exporters = [MONITORING_PORTS.nodeExporter, MONITORING_PORTS.dcgmExporter, MONITORING_PORTS.amdExporter].map(
    (port): FirewallRule => ({
      protocol: "tcp",
      portRange: String(port),
      sources: "vpc",
      why: "node and GPU exporters, for Prometheus on the CPU node over the VPC",
    }),
  );
  return [
    ...Object.values(GPU_SERVICE_PORTS).map(
      (port): FirewallRule => ({
        protocol: "tcp",
        portRange: String(port),
        sources: "vpc",
        why: "vLLM, from the gateway over the VPC",
      }),
    ),
    ...exporters,
    ssh,
    icmp,
  ];
}

/**
 * What the sandbox node may open: DNS, HTTP(S) for its packages, the Debian snapshot and the Go
 * module proxy at setup (and unattended upgrades), NTP. Sandboxes themselves have no network at all.
 */
export const SANDBOX_OUTBOUND: readonly { readonly protocol: "tcp" | "udp"; readonly portRange: string }[] = [
  { protocol: "tcp", portRange: "53" },
  { protocol: "udp", portRange: "53" },
  { protocol: "tcp", portRange: "80" },
  { protocol: "tcp", portRange: "443" },
  { protocol: "udp", portRange: "123" },
];

/** The stack's VPC, its tags, and one cloud firewall per node role (applied by tag). */
export class HubNetwork extends pulumi.ComponentResource {
  public readonly vpc: digitalocean.Vpc;
  public readonly vpcCidr: pulumi.Output<string>;
  /** Tag name → its resource; droplets reference `.name` so they wait for the tag. */
  public readonly tags: ReadonlyMap<string, digitalocean.Tag>;
  /** Anything that logs in over SSH waits for these: their SSH rule may have just moved to this machine. */
  public readonly firewalls: readonly digitalocean.Firewall[];

  constructor(name: string, args: HubNetworkArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("inference-hub:network:HubNetwork", name, {}, opts);
    this.vpc = new digitalocean.Vpc(
      `${name}-vpc`,
      { name: `${args.cloudName}-vpc`, region: args.region, description: `inference hub ${args.cloudName}` },
      { parent: this },
    );
    this.vpcCidr = this.vpc.ipRange;
    // Explicit tags, so firewalls never reference a tag DigitalOcean has not created yet.
    const tagNames = [
      args.stackTag,
      args.tierTag,
      args.gatewayTag,
      args.gpuTag,
      ...(args.sandboxTag ? [args.sandboxTag] : []),
    ];
    this.tags = new Map(
      tagNames.map((tag) => [tag, new digitalocean.Tag(`${name}-tag-${tag}`, { name: tag }, { parent: this })]),
    );
    const tagName = (tag: string) => this.tags.get(tag)!.name;

    const toRule = (rule: FirewallRule): digitalocean.types.input.FirewallInboundRule => {
      const portRange = rule.protocol === "icmp" ? undefined : rule.portRange;
      if (rule.sources === "gateway")
        return { protocol: rule.protocol, portRange, sourceTags: [tagName(args.gatewayTag)] };
      // A sandbox node shares the VPC: the hub's own nodes are named by tag, the range would admit it.
      if (rule.sources === "vpc" && args.sandboxTag)
        return { protocol: rule.protocol, portRange, sourceTags: [tagName(args.gatewayTag), tagName(args.gpuTag)] };
      return {
        protocol: rule.protocol,
        portRange,
        sourceAddresses:
          rule.sources === "anywhere"
            ? ANYWHERE
            : rule.sources === "admin"
              ? args.sshSources
              : this.vpcCidr.apply((cidr) => [cidr]),
      };
    };
    const outbound: digitalocean.types.input.FirewallOutboundRule[] = [
      // Image pulls, model downloads, package updates, ACME.
      { protocol: "tcp", portRange: "1-65535", destinationAddresses: ANYWHERE },
      { protocol: "udp", portRange: "1-65535", destinationAddresses: ANYWHERE },
      { protocol: "icmp", destinationAddresses: ANYWHERE },
    ];
    const hubFirewalls = (["gateway", "gpu"] as const).map(
      (role) =>
        new digitalocean.Firewall(
          `${name}-firewall-${role}`,
          {
            name: `${args.cloudName}-${role}`,
            tags: [tagName(role === "gateway" ? args.gatewayTag : args.gpuTag)],
            inboundRules: inboundRules(role).map(toRule),
            outboundRules: outbound,
          },
          { parent: this },
        ),
    );
    const sandboxFirewall = args.sandboxTag
      ? new digitalocean.Firewall(
          `${name}-firewall-sandbox`,
          {
            name: `${args.cloudName}-sandbox`,
            tags: [tagName(args.sandboxTag)],
            inboundRules: inboundRules("sandbox", { sandboxNodeExporter: args.sandboxNodeExporter }).map(toRule),
            outboundRules: SANDBOX_OUTBOUND.map((r) => ({ ...r, destinationAddresses: ANYWHERE })),
          },
          { parent: this },
        )
      : undefined;
    this.firewalls = [...hubFirewalls, ...(sandboxFirewall ? [sandboxFirewall] : [])];
    this.registerOutputs({ vpcId: this.vpc.id, vpcCidr: this.vpcCidr });
  }
}
