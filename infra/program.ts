import * as digitalocean from "@pulumi/digitalocean";
import * as os from "node:os";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import { PUBLIC_PORTS } from "../services/ports";
import { CPU_CACHE_MOUNT, MODEL_CACHE_MOUNT, readinessScript, renderCloudInit, NodeSetupInput } from "../services/node-setup";
import { ConfigError, HubConfig, loadHubConfig, NOT_SHOWN, problem } from "../stacks";
import { findGpuSize } from "../stacks/catalogue/droplets";
import { GatewayAddress } from "./address";
import { recordArtifact } from "./artifacts";
import { cloudSlug, hubTags } from "./naming";
import { HubNetwork } from "./network";
import { HubNode, SshAccess } from "./node";
import { KeysFileError, parseKeysFile } from "../programs/gatekeeper/keys";
import { isOfflineStandIn, SettingsRefused } from "./offline-secrets";
import type { SecretName } from "../services/spec";
import type { DropletTarget } from "./containers";
import { deployServices } from "./services";
import { HubStorage } from "./storage";

/** Reads and validates the stack's config; refuses (without a stack trace) before anything is created. */
function hubConfigFromEngine(): HubConfig {
  const loaded = loadHubConfig(pulumi.runtime.allConfig());
  if (!loaded.ok) throw new pulumi.RunError(new ConfigError(loaded.problems, `stack ${pulumi.getStack()}`).message);
  const hub = loaded.config;
  const hasSshKey = hub.settings.sshPublicKey !== undefined || hub.settings.sshKeyFingerprints.length > 0;
  if (!hasSshKey && hub.tier !== "local" && !pulumi.runtime.isDryRun()) {
    // Droplets without a key cannot be checked or deployed to: refuse before creating them.
    throw new pulumi.RunError("sshPublicKey, sshKeyFingerprints: no SSH key is configured; the deploy would create droplets it cannot log in to. Set one: pulumi config set sshPublicKey \"$(cat ~/.ssh/id_ed25519.pub)\".");
  }
  for (const w of hub.warnings) void pulumi.log.warn(`${w.keys.join(", ")}: ${w.message}`);
  return hub;
}

/** Secrets the containers get as environment variables, never as files or arguments. */
function hubSecrets(): Record<SecretName, pulumi.Output<string>> {
  // An empty URL means no database: the gatekeeper's spool is then the audit log.
  const auditDatabaseUrl = new pulumi.Config().getSecret("auditDatabaseUrl") ?? pulumi.secret("");
  return { hubApiKey: hubApiKey(), auditDatabaseUrl };
}

/** Client API keys (hashes), checked here so a malformed document fails the preview, not the gateway. */
function apiKeysDocument(): pulumi.Output<string> {
  const configured = new pulumi.Config().getSecret("apiKeys");
  if (!configured) return pulumi.secret(JSON.stringify({ version: 1, keys: [] }));
  // The offline plan cannot decrypt a `secure:` value; `pulumi up` checks the real one.
  if (isOfflineStandIn("apiKeys")) return configured;
  return configured.apply((text) => {
    try {
      parseKeysFile(text);
    } catch (err) {
      // JSON.parse's message quotes the text: keep the document's content out of the output.
      const why = err instanceof KeysFileError ? err.problems.map((p) => (p.startsWith("not valid JSON") ? "not valid JSON" : p)).join("; ") : "unreadable";
      const manage = `Manage keys with: npm run hub -- keys create|list|revoke --stack ${pulumi.getStack()}`;
      throw new SettingsRefused([problem("apiKeys", NOT_SHOWN, `is not a valid keys document: ${why}.`, manage)]);
    }
    return text;
  });
}

/** The backends' API key: from secret config, else generated once and kept in the stack's state. */
function hubApiKey(): pulumi.Output<string> {
  const configured = new pulumi.Config().getSecret("hubApiKey");
  if (configured) return configured;
  const generated = new random.RandomPassword("hub-api-key", { length: 48, special: false });
  // The engine marks `result` secret; say so here too, so every consumer inherits it.
  return pulumi.secret(generated.result);
}

function sshAccess(): SshAccess {
  const privateKey = new pulumi.Config().getSecret("sshPrivateKey");
  return privateKey ? { privateKey } : { agentSocketPath: process.env.SSH_AUTH_SOCK };
}

/**
 * The Pulumi program: engine config → validated HubConfig → resources. `pulumi up` runs it from
 * infra/index.ts; the offline plan runs the same function under Pulumi's mock engine.
 */
export function hubProgram(): Record<string, unknown> {
  const hub = hubConfigFromEngine();
  const stack = pulumi.getStack();
  if (hub.tier === "local") return localProgram(hub, stack);
  const cloudName = `ih-${cloudSlug(stack)}`;
  const tags = hubTags(stack, hub.tier);
  const ssh = sshAccess();

  const network = new HubNetwork("network", {
    region: hub.region,
    cloudName,
    stackTag: tags.stack,
    tierTag: tags.tier,
    gatewayTag: tags.gateway,
    gpuTag: tags.gpu,
    adminCidrs: hub.gateway.adminCidrs,
  });
  const tag = (name: string) => network.tags.get(name)!.name;

  const storage = new HubStorage("storage", {
    region: hub.region,
    cloudName,
    stackTag: tag(tags.stack),
    modelCacheVolumes: hub.modelCache.volumes,
    modelCacheGiB: hub.modelCache.sizeGiB,
    cpuCacheGiB: hub.cpuNode.cacheGiB,
  });

  const sshKeys: pulumi.Input<string>[] = [...hub.settings.sshKeyFingerprints];
  if (hub.settings.sshPublicKey) {
    sshKeys.push(new digitalocean.SshKey("deployer-key", { name: `${cloudName}-deployer`, publicKey: hub.settings.sshPublicKey }).fingerprint);
  }

  const nodeSetup = (input: NodeSetupInput) => {
    const userData = renderCloudInit(input);
    recordArtifact({ kind: "cloud-init", node: input.nodeName, path: `${input.nodeName}/cloud-init.yaml`, content: userData });
    return { userData, readinessScript: readinessScript(input) };
  };

  const cpu = new HubNode("cpu", {
    cloudName: `${cloudName}-cpu`,
    region: hub.region,
    size: hub.cpuNode.size.slug,
    image: hub.cpuNode.size.image,
    vpcId: network.vpc.id,
    sshKeys,
    tags: [tag(tags.stack), tag(tags.tier), tag(tags.gateway)],
    ...nodeSetup({ nodeName: "cpu", role: "cpu", volume: { name: storage.cpuCache.cloudName, mountPath: CPU_CACHE_MOUNT }, dataDirs: ["huggingface", "models", "traefik", "audit"] }),
    volumeId: storage.cpuCache.volume.id,
    ssh,
    longLived: true,
  });

  const gpuNodes: HubNode[] = [];
  const gpuNodesByName = new Map<string, HubNode>();
  const gpuSize = hub.gpu ? findGpuSize(hub.gpu.size.slug) : undefined;
  if (hub.gpu?.on && gpuSize) {
    for (const plan of hub.nodes.filter((n) => n.kind === "gpu")) {
      const index = gpuNodes.length;
      const node = new HubNode(plan.name, {
          cloudName: `${cloudName}-${plan.name}`,
          region: hub.region,
          size: gpuSize.slug,
          image: gpuSize.image,
          vpcId: network.vpc.id,
          sshKeys,
          tags: [tag(tags.stack), tag(tags.tier), tag(tags.gpu)],
          ...nodeSetup({ nodeName: plan.name, role: "gpu", gpuVendor: gpuSize.vendor, gpuCount: gpuSize.gpuCount, volume: { name: storage.modelCaches[index].cloudName, mountPath: MODEL_CACHE_MOUNT }, dataDirs: ["huggingface", "vllm"] }),
          volumeId: storage.modelCaches[index].volume.id,
          ssh,
      });
      gpuNodes.push(node);
      gpuNodesByName.set(plan.name, node);
    }
  }

  const secrets = hubSecrets();
  const apiKey = secrets.hubApiKey;
  const droplet = (node: HubNode): DropletTarget => ({ kind: "droplet", host: node.publicIp, privateIp: node.privateIp, ready: node.ready, ssh });
  deployServices(hub, droplet(cpu), new Map([...gpuNodesByName].map(([name, node]) => [name, droplet(node)])), secrets, apiKeysDocument());

  const gateway = new GatewayAddress("gateway-address", { region: hub.region, dropletId: cpu.dropletId });

  new digitalocean.Project("project", {
    name: `inference-hub-${cloudSlug(stack)}`,
    description: `Inference hub, stack ${stack} (${hub.tier} tier)`,
    purpose: "Machine learning / AI / Data processing",
    resources: [
      cpu.droplet.dropletUrn,
      ...gpuNodes.map((n) => n.droplet.dropletUrn),
      storage.cpuCache.volume.volumeUrn,
      ...storage.modelCaches.map((c) => c.volume.volumeUrn),
      gateway.reservedIp.reservedIpUrn,
    ],
  });

  const nodeAddresses: Record<string, { public: pulumi.Output<string>; private: pulumi.Output<string> }> = {};
  for (const [name, node] of [["cpu", cpu] as const, ...gpuNodes.map((n, i) => [`gpu-${i}`, n] as const)]) nodeAddresses[name] = { public: node.publicIp, private: node.privateIp };
  const volumeIds: Record<string, pulumi.Output<string>> = { "cpu-cache": storage.cpuCache.volume.id };
  storage.modelCaches.forEach((c, i) => (volumeIds[`model-cache-${i}`] = c.volume.id));

  return {
    tier: hub.tier,
    region: hub.region,
    gatewayAddress: gateway.address,
    baseUrl: hub.gateway.domain ? `https://${hub.gateway.domain}/v1` : pulumi.interpolate`http://${gateway.address}/v1`,
    nodeAddresses,
    volumeIds,
    hubApiKey: apiKey,
    monthlyCostUsd: hub.cost.monthlyUsd,
    hourlyBurnUsd: hub.cost.hourlyNowUsd,
  };
}

/**
 * The local tier: the same CPU services on this machine's Docker engine, no cloud resources.
 * Files live under ~/.inference-hub/<stack>; the gateway listens on 127.0.0.1:8100.
 */
function localProgram(hub: HubConfig, stack: string): Record<string, unknown> {
  const secrets = hubSecrets();
  const apiKey = secrets.hubApiKey;
  const dataDir = path.join(os.homedir(), ".inference-hub", cloudSlug(stack));
  deployServices(hub, { kind: "local", dataDir, mountRoot: CPU_CACHE_MOUNT }, new Map(), secrets, apiKeysDocument());
  return { tier: hub.tier, baseUrl: `http://127.0.0.1:${PUBLIC_PORTS.legacy}/v1`, dataDir, hubApiKey: apiKey, monthlyCostUsd: 0 };
}
