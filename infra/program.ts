import * as digitalocean from "@pulumi/digitalocean";
import * as os from "node:os";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import * as tls from "@pulumi/tls";
import { PUBLIC_PORTS } from "../services/ports";
import { GATEKEEPER_CONTAINER } from "../services/auth";
import {
  CPU_CACHE_MOUNT,
  MODEL_CACHE_MOUNT,
  readinessScript,
  renderCloudInit,
  NodeSetupInput,
} from "../services/node-setup";
import { gpuBootImage } from "../services/gpu-image";
import { ConfigError, HubConfig, loadHubConfig, NOT_SHOWN, problem, PROJECT } from "../stacks";
import { secretsInTheClear } from "../stacks/load";
import { findGpuSize } from "../stacks/catalogue/droplets";
import { GatewayAddress } from "./address";
import { recordArtifact, SECRET_PLACEHOLDER } from "./artifacts";
import { cloudSlug, hubTags } from "./naming";
import { HubNetwork, sshSourceCidrs } from "./network";
import { addressInside, sshExposure } from "../stacks/ssh-exposure";
import { DeployEnvironment, liveEnvironment } from "./environment";
import { HubNode, HubNodeArgs } from "./node";
import { deployerSshAccess, inspectDeployerKey, stackSshDirectory } from "./ssh";
import {
  AccountSshKey,
  decideSshKeyRegistration,
  dropletSshKeys,
  md5Fingerprint,
  SshKeyRegistration,
} from "./ssh-keys";
import { KeysFileError, parseKeysFile } from "../programs/gatekeeper/keys";
import { isOfflineStandIn, SettingsRefused } from "./offline-secrets";
import { providerErrorCause } from "./provider-errors";
import type { SecretName } from "../services/spec";
import type { DropletTarget } from "./containers";
import { deployServices } from "./services";
import { MONITORING_PORTS, NO_ALERT_RECEIVER_WARNING } from "../services/monitoring";
import { HubStorage } from "./storage";
import { sandboxNode } from "./sandbox";
import { SANDBOX_NODE_NAME } from "../stacks/sandbox";

/**
 * Keys the engine handed over encrypted. The SDK keeps the list (PULUMI_CONFIG_SECRET_KEYS) but
 * types its reader as internal; the pinned version has it, and the real-engine tests would fail without it.
 */
function engineSecretKeys(config: Record<string, string>): string[] {
  const isConfigSecret = (pulumi.runtime as unknown as { isConfigSecret?: (key: string) => boolean }).isConfigSecret;
  if (typeof isConfigSecret !== "function")
    throw new pulumi.RunError(
      "this @pulumi/pulumi has no runtime.isConfigSecret: the program cannot tell secret settings stored in the clear; pin the version package.json names.",
    );
  return Object.keys(config).filter((key) => isConfigSecret(key));
}

/** Reads and validates the stack's config; refuses (without a stack trace) before anything is created. */
function hubConfigFromEngine(): HubConfig {
  const config = pulumi.runtime.allConfig();
  // Pulumi.yaml cannot declare the secret settings secret (that would make them required), so the program checks.
  const loaded = loadHubConfig(config, [], secretsInTheClear(config, engineSecretKeys(config)));
  if (!loaded.ok) throw new pulumi.RunError(new ConfigError(loaded.problems, `stack ${pulumi.getStack()}`).message);
  const hub = loaded.config;
  const hasSshKey = hub.settings.sshPublicKey !== undefined || hub.settings.sshKeyFingerprints.length > 0;
  if (!hasSshKey && hub.tier !== "local" && hub.tier !== "k8s" && !pulumi.runtime.isDryRun()) {
    // Droplets without a key cannot be checked or deployed to: refuse before creating them.
    throw new pulumi.RunError(
      'sshPublicKey, sshKeyFingerprints: no SSH key is configured; the deploy would create droplets it cannot log in to. Set one: pulumi config set sshPublicKey "$(cat ~/.ssh/id_ed25519.pub)".',
    );
  }
  for (const w of hub.warnings) void pulumi.log.warn(`${w.keys.join(", ")}: ${w.message}`);
  return hub;
}

/** Secrets the containers get as environment variables, never as files or arguments. */
function hubSecrets(hub: HubConfig): Record<SecretName, pulumi.Output<string>> {
  // An empty URL means no database: the gatekeeper's spool is then the audit log.
  const config = new pulumi.Config();
  const auditDatabaseUrl = config.getSecret("auditDatabaseUrl") ?? pulumi.secret("");
  // Empty: the autoscaler advises only / skips the billing cross-check. Only its container gets them.
  const autoscalerDispatchToken = config.getSecret("autoscalerDispatchToken") ?? pulumi.secret("");
  const autoscalerBillingToken = config.getSecret("autoscalerBillingToken") ?? pulumi.secret("");
  const autoscalerPulumiToken = config.getSecret("autoscalerPulumiToken") ?? pulumi.secret("");
  // Opens the sandbox API only; the sandbox node gets its digest, the front on the gateway node the token.
  const sandboxToken = !hub.sandbox
    ? pulumi.secret("")
    : (config.getSecret("sandboxToken") ??
      pulumi.secret(new random.RandomPassword("sandbox-token", { length: 48, special: false }).result));
  return {
    hubApiKey: hubApiKey(),
    auditDatabaseUrl,
    autoscalerDispatchToken,
    autoscalerPulumiToken,
    autoscalerBillingToken,
    sandboxToken,
    ...gatekeeperTls(),
  };
}

/** Ten years: renewed by a `pulumi up` in its last year (earlyRenewalHours), which restarts Traefik and the gatekeeper. */
const GATEKEEPER_TLS_VALID_HOURS = 10 * 365 * 24;
const GATEKEEPER_TLS_RENEW_HOURS = 365 * 24;

/**
 * The certificate of the gatekeeper's forwardAuth port (HTTP/2 over TLS, so Traefik keeps one
 * connection; programs/gatekeeper/tls-listener.ts). Self-signed for the container's name, and
 * pinned by Traefik (forwardAuth tls.ca), so nothing else on the Docker network can pose as it.
 */
function gatekeeperTls(): Pick<Record<SecretName, pulumi.Output<string>>, "gatekeeperTlsCert" | "gatekeeperTlsKey"> {
  const key = new tls.PrivateKey("gatekeeper-tls-key", { algorithm: "ECDSA", ecdsaCurve: "P256" });
  const cert = new tls.SelfSignedCert("gatekeeper-tls-cert", {
    privateKeyPem: key.privateKeyPem,
    subject: { commonName: GATEKEEPER_CONTAINER },
    dnsNames: [GATEKEEPER_CONTAINER],
    allowedUses: ["digitalSignature", "serverAuth"],
    validityPeriodHours: GATEKEEPER_TLS_VALID_HOURS,
    earlyRenewalHours: GATEKEEPER_TLS_RENEW_HOURS,
  });
  return { gatekeeperTlsCert: cert.certPem, gatekeeperTlsKey: pulumi.secret(key.privateKeyPem) };
}

/** Alertmanager's secrets (SMTP password, webhook URL); without a receiver, alerts are only shown in the UIs. */
function alertSecrets(hub: HubConfig): { smtpPassword?: pulumi.Output<string>; webhookUrl?: pulumi.Output<string> } {
  const config = new pulumi.Config();
  const smtpPassword = config.getSecret("alertSmtpPassword");
  const webhookUrl = config.getSecret("alertWebhookUrl");
  if (hub.monitoring && !hub.monitoring.email && !webhookUrl) void pulumi.log.warn(NO_ALERT_RECEIVER_WARNING);
  if (hub.monitoring?.email && !hub.monitoring.email.user && smtpPassword)
    void pulumi.log.warn(
      "alertSmtpPassword is set but alertSmtpUser is not: Alertmanager sends alert e-mail without logging in.",
    );
  return { smtpPassword, webhookUrl };
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
      const why =
        err instanceof KeysFileError
          ? err.problems.map((p) => (p.startsWith("not valid JSON") ? "not valid JSON" : p)).join("; ")
          : "unreadable";
      const manage = `Declare keys with: npm run hub -- keys create --bootstrap --stack ${pulumi.getStack()} (runtime keys: npm run hub -- keys create|list|revoke)`;
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

/** The configured deployer key, read where the engine keeps config (decrypted); never printed. */
function configuredPrivateKey(): string | undefined {
  return pulumi.runtime.allConfig()[`${PROJECT}:sshPrivateKey`];
}

/** Problems with the deployer key that would make every SSH step fail, found before anything is created. */
function deployerKeyProblems(hub: HubConfig, privateKey: string): string[] {
  const inspected = inspectDeployerKey(privateKey);
  if (!inspected.ok)
    return [
      `sshPrivateKey (secret, not shown): ${inspected.reason}. Set the unencrypted private key: pulumi config set --secret sshPrivateKey < ~/.ssh/id_ed25519`,
    ];
  let publicKeyFingerprint: string[] = [];
  try {
    publicKeyFingerprint = hub.settings.sshPublicKey ? [md5Fingerprint(hub.settings.sshPublicKey)] : [];
  } catch {
    // An unreadable sshPublicKey is reported by the key registration.
    return [];
  }
  const installed = [...publicKeyFingerprint, ...hub.settings.sshKeyFingerprints];
  // A numeric key id cannot be matched offline; then DigitalOcean's own answer will tell.
  if (
    installed.length === 0 ||
    hub.settings.sshKeyFingerprints.some((k) => /^\d+$/.test(k)) ||
    installed.includes(inspected.fingerprint)
  )
    return [];
  return [
    `sshPrivateKey, sshPublicKey, sshKeyFingerprints: the private key's public half (MD5 ${inspected.fingerprint}) is not installed on the droplets (they get ${installed.join(", ")}), so every SSH step would be refused. Set sshPublicKey to its public half (ssh-keygen -y -f <key file>), or add ${inspected.fingerprint} to sshKeyFingerprints.`,
  ];
}

/**
 * The SSH rule's sources: adminCidrs, or else this machine's own address, looked up now. A failed
 * lookup refuses the deploy: SSH is never opened wider than asked because an address was unknown.
 */
async function sshSources(hub: HubConfig, env: DeployEnvironment, problems: string[]): Promise<pulumi.Input<string[]>> {
  const exposure = sshExposure(hub.gateway.adminCidrs);
  if (exposure.kind !== "deployer") {
    if (exposure.kind === "cidrs" && env.deployerAddress) {
      // Best effort: a deploy from outside adminCidrs would otherwise only time out at its first SSH step.
      const found = await env.deployerAddress.find().catch(() => undefined);
      const outside = found?.filter((a) => !addressInside(a, exposure.cidrs)) ?? [];
      if (outside.length > 0)
        void pulumi.log.warn(
          `adminCidrs: this machine reaches the internet from ${outside.join(", ")}, outside ${exposure.cidrs.join(", ")}: the SSH steps of this deploy will time out. Deploy from inside adminCidrs, or add ${outside.map((a) => `${a}/32`).join(", ")}.`,
        );
    }
    return [...exposure.cidrs];
  }
  if (!env.deployerAddress) return pulumi.output(pulumi.unknown as unknown as string[]);
  try {
    const sources = sshSourceCidrs([], await env.deployerAddress.find());
    void pulumi.log.info(
      `adminCidrs is empty: SSH (port 22) on the nodes opens only to this machine, ${sources.join(", ")}.`,
    );
    return sources;
  } catch (err) {
    problems.push(
      `adminCidrs: is empty, so SSH (port 22) opens only to the public IPv4 address this deploy runs from, and that address could not be found (${(err as Error).message}). Nothing was opened. Set adminCidrs to the ranges you deploy from, e.g. pulumi config set --path 'adminCidrs[0]' 203.0.113.7/32 (or "0.0.0.0/0" to open SSH to the whole internet, key login only).`,
    );
    return [];
  }
}

/** Whether and how to register sshPublicKey: decided from the account's keys before anything is created. */
async function deployerKeyRegistration(
  hub: HubConfig,
  cloudName: string,
  env: DeployEnvironment,
  problems: string[],
): Promise<SshKeyRegistration | undefined> {
  const publicKey = hub.settings.sshPublicKey;
  if (!publicKey) return undefined;
  let fingerprint: string;
  try {
    fingerprint = md5Fingerprint(publicKey);
  } catch {
    problems.push(
      `sshPublicKey: ${JSON.stringify(publicKey.slice(0, 40))}... is not a readable OpenSSH public key. Use the one line of your .pub file: pulumi config set sshPublicKey "$(cat ~/.ssh/id_ed25519.pub)"`,
    );
    return undefined;
  }
  let accountKeys: readonly AccountSshKey[] = [];
  if (env.accountSshKeys) {
    try {
      accountKeys = await env.accountSshKeys.withFingerprint(fingerprint);
    } catch (err) {
      problems.push(
        `sshPublicKey: could not list the DigitalOcean account's SSH keys to see whether ${fingerprint} is registered already (${providerErrorCause(err)}). Check DIGITALOCEAN_TOKEN.`,
      );
      return undefined;
    }
  }
  return decideSshKeyRegistration({ ownName: `${cloudName}-deployer`, publicKey, fingerprint, accountKeys });
}

/** Carries out the registration decision: the fingerprint the droplets name, and the resource they wait for, if any. */
function registerDeployerKey(decision: SshKeyRegistration | undefined): {
  fingerprint?: string;
  resource?: digitalocean.SshKey;
} {
  if (!decision) return {};
  if (decision.action === "reuse") {
    void pulumi.log.info(
      `sshPublicKey: already registered in the DigitalOcean account as "${decision.registeredAs}"; the droplets name it by fingerprint ${decision.fingerprint}.`,
    );
    return { fingerprint: decision.fingerprint };
  }
  const resource = new digitalocean.SshKey(
    "deployer-key",
    { name: decision.name, publicKey: decision.publicKey },
    {
      // `pulumi destroy` leaves the public key registered: another stack may name it by fingerprint.
      retainOnDelete: true,
      // Registered under this stack's name before (maybe left by a destroy): take it over instead of failing with 422.
      ...(decision.action === "adopt" ? { import: decision.id } : {}),
    },
  );
  return { fingerprint: decision.fingerprint, resource };
}

/**
 * The Pulumi program: engine config → validated HubConfig → resources. `pulumi up` runs it from
 * infra/index.ts; the offline plan runs the same function under Pulumi's mock engine, with an
 * environment that reaches neither the internet nor the account.
 */
export async function hubProgram(env: DeployEnvironment = liveEnvironment()): Promise<Record<string, unknown>> {
  const hub = hubConfigFromEngine();
  const stack = pulumi.getStack();
  if (hub.tier === "local") return localProgram(hub, stack);
  // DigitalOcean Kubernetes: its own renderer of the same specs and routes (infra/kubernetes/),
  // loaded only here so the droplet tiers' plans never load @pulumi/kubernetes.
  if (hub.tier === "k8s") {
    const { kubernetesProgram } = await import("./kubernetes/program");
    return kubernetesProgram(hub, stack, env, {
      env: hubSecrets(hub),
      apiKeys: apiKeysDocument(),
      alerts: alertSecrets(hub),
    });
  }
  const cloudName = `ih-${cloudSlug(stack)}`;
  const tags = hubTags(stack, hub.tier);

  // Everything that would make the deploy fail at its first SSH step, reported at once, before anything is created.
  const problems: string[] = [];
  const privateKey = configuredPrivateKey();
  if (privateKey !== undefined && env.secretsReadable) problems.push(...deployerKeyProblems(hub, privateKey));
  const sources = await sshSources(hub, env, problems);
  const registration = await deployerKeyRegistration(hub, cloudName, env, problems);
  if (problems.length > 0)
    throw new pulumi.RunError(
      `stack ${stack}: ${problems.length} problem${problems.length === 1 ? "" : "s"}; nothing was created or changed:\n${problems.map((p) => `  - ${p}`).join("\n")}`,
    );
  const deployerKey = registerDeployerKey(registration);
  const ssh = deployerSshAccess(
    env.sshFiles,
    stackSshDirectory(pulumi.getOrganization(), pulumi.getProject(), stack),
    privateKey,
  );

  const network = new HubNetwork("network", {
    region: hub.region,
    cloudName,
    stackTag: tags.stack,
    tierTag: tags.tier,
    gatewayTag: tags.gateway,
    gpuTag: tags.gpu,
    sshSources: sources,
    ...(hub.sandbox ? { sandboxTag: tags.sandbox, sandboxNodeExporter: Boolean(hub.monitoring?.exporters) } : {}),
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

  const sshKeys = dropletSshKeys(hub.settings.sshKeyFingerprints, deployerKey.fingerprint);
  const node = (
    name: string,
    setup: NodeSetupInput,
    args: Pick<HubNodeArgs, "cloudName" | "size" | "image" | "tags" | "volumeId" | "longLived">,
  ): HubNode => {
    const created = new HubNode(name, {
      ...args,
      region: hub.region,
      vpcId: network.vpc.id,
      sshKeys,
      sshKeyResources: deployerKey.resource ? [deployerKey.resource] : [],
      cloudInit: (hostKey) => renderCloudInit({ ...setup, hostKey }),
      readinessScript: readinessScript(setup),
      ssh,
      sshFirewalls: network.firewalls,
    });
    // The file as the droplet gets it, with its private host key replaced by a marker (rendered when read).
    recordArtifact({
      kind: "cloud-init",
      node: setup.nodeName,
      path: `${setup.nodeName}/cloud-init.yaml`,
      content: created.hostPublicKey.apply((publicKey) => ({ publicKey })),
      render: ({ publicKey }) =>
        renderCloudInit({ ...setup, hostKey: { privateKey: SECRET_PLACEHOLDER, publicKey: String(publicKey) } }),
    });
    return created;
  };

  const cpu = node(
    "cpu",
    {
      nodeName: "cpu",
      role: "cpu",
      volume: { name: storage.cpuCache.cloudName, mountPath: CPU_CACHE_MOUNT },
      dataDirs: ["huggingface", "models", "traefik", "audit"],
    },
    {
      cloudName: `${cloudName}-cpu`,
      size: hub.cpuNode.size.slug,
      image: hub.cpuNode.size.image,
      tags: [tag(tags.stack), tag(tags.tier), tag(tags.gateway)],
      volumeId: storage.cpuCache.volume.id,
      longLived: true,
    },
  );

  const gpuNodes: HubNode[] = [];
  const gpuNodesByName = new Map<string, HubNode>();
  const gpuSize = hub.gpu ? findGpuSize(hub.gpu.size.slug) : undefined;
  if (hub.gpu?.on && gpuSize) {
    // The baked snapshot when it is current (services/gpu-image.ts), else the base image and the full cloud-init.
    const boot = gpuBootImage(hub);
    const baked = boot?.kind === "baked";
    if (boot?.kind === "stale") void pulumi.log.warn(boot.why);
    for (const plan of hub.nodes.filter((n) => n.kind === "gpu")) {
      const index = gpuNodes.length;
      const gpuNode = node(
        plan.name,
        {
          nodeName: plan.name,
          role: "gpu",
          gpuVendor: gpuSize.vendor,
          gpuCount: gpuSize.gpuCount,
          volume: { name: storage.modelCaches[index].cloudName, mountPath: MODEL_CACHE_MOUNT },
          dataDirs: ["huggingface", "vllm"],
          baked,
        },
        {
          cloudName: `${cloudName}-${plan.name}`,
          size: gpuSize.slug,
          image: boot?.image ?? gpuSize.image,
          tags: [tag(tags.stack), tag(tags.tier), tag(tags.gpu)],
          volumeId: storage.modelCaches[index].volume.id,
        },
      );
      gpuNodes.push(gpuNode);
      gpuNodesByName.set(plan.name, gpuNode);
    }
  }

  const secrets = hubSecrets(hub);
  const apiKey = secrets.hubApiKey;
  const sandbox = hub.sandbox
    ? sandboxNode(SANDBOX_NODE_NAME, {
        plan: hub.sandbox,
        token: secrets.sandboxToken,
        cloudName: `${cloudName}-${SANDBOX_NODE_NAME}`,
        region: hub.region,
        vpcId: network.vpc.id,
        sshKeys,
        sshKeyResources: deployerKey.resource ? [deployerKey.resource] : [],
        tags: [tag(tags.stack), tag(tags.tier), tag(tags.sandbox)],
        ssh,
        sshFirewalls: network.firewalls,
        ...(hub.monitoring?.exporters ? { nodeExporterPort: MONITORING_PORTS.nodeExporter } : {}),
      })
    : undefined;
  const droplet = (n: HubNode): DropletTarget => ({
    kind: "droplet",
    host: n.publicIp,
    privateIp: n.privateIp,
    ready: n.ready,
    ssh: n.ssh,
  });
  deployServices(
    hub,
    droplet(cpu),
    new Map([...gpuNodesByName].map(([name, node]) => [name, droplet(node)])),
    secrets,
    apiKeysDocument(),
    alertSecrets(hub),
    sandbox ? { privateIp: sandbox.node.privateIp, exporterReady: sandbox.exporter?.answering } : undefined,
  );

  const gateway = new GatewayAddress("gateway-address", { region: hub.region, dropletId: cpu.dropletId });

  new digitalocean.Project("project", {
    name: `inference-hub-${cloudSlug(stack)}`,
    description: `Inference hub, stack ${stack} (${hub.tier} tier)`,
    purpose: "Machine learning / AI / Data processing",
    resources: [
      cpu.droplet.dropletUrn,
      ...gpuNodes.map((n) => n.droplet.dropletUrn),
      ...(sandbox ? [sandbox.node.droplet.dropletUrn] : []),
      storage.cpuCache.volume.volumeUrn,
      ...storage.modelCaches.map((c) => c.volume.volumeUrn),
      gateway.reservedIp.reservedIpUrn,
    ],
  });

  const nodeAddresses: Record<string, { public: pulumi.Output<string>; private: pulumi.Output<string> }> = {};
  const addressedNodes = [
    ["cpu", cpu] as const,
    ...gpuNodes.map((g, i) => [`gpu-${i}`, g] as const),
    ...(sandbox ? [[SANDBOX_NODE_NAME, sandbox.node] as const] : []),
  ];
  for (const [name, n] of addressedNodes) nodeAddresses[name] = { public: n.publicIp, private: n.privateIp };
  // The system ssh's options per node (pinned host key, the deployer's key): `hub finetune add` copies adapters with them.
  const nodeSshOptions: Record<string, pulumi.Output<string[]>> = Object.fromEntries(
    addressedNodes.map(([name, n]) => [name, n.ssh.dockerSshOpts]),
  );
  const volumeIds: Record<string, pulumi.Output<string>> = { "cpu-cache": storage.cpuCache.volume.id };
  storage.modelCaches.forEach((c, i) => (volumeIds[`model-cache-${i}`] = c.volume.id));

  return {
    tier: hub.tier,
    region: hub.region,
    gatewayAddress: gateway.address,
    baseUrl: hub.gateway.domain ? `https://${hub.gateway.domain}/v1` : pulumi.interpolate`http://${gateway.address}/v1`,
    nodeAddresses,
    nodeSshOptions,
    volumeIds,
    hubApiKey: apiKey,
    monthlyCostUsd: hub.cost.monthlyUsd,
    hourlyBurnUsd: hub.cost.hourlyNowUsd,
    // The pin as deployed: a fresh checkout (the autoscale and deploy pipelines) takes it from here.
    ...(hub.gpuPin
      ? {
          gpuPin: {
            nodes: hub.gpuPin.nodes,
            until: new Date(hub.gpuPin.untilMs).toISOString().replace(/\.\d{3}Z$/, "Z"),
          },
        }
      : {}),
  };
}

/**
 * The local tier: the same CPU services on this machine's Docker engine, no cloud resources.
 * Files live under ~/.inference-hub/<stack>; the gateway listens on 127.0.0.1:8100.
 */
function localProgram(hub: HubConfig, stack: string): Record<string, unknown> {
  const secrets = hubSecrets(hub);
  const apiKey = secrets.hubApiKey;
  const dataDir = path.join(os.homedir(), ".inference-hub", cloudSlug(stack));
  deployServices(
    hub,
    { kind: "local", dataDir, mountRoot: CPU_CACHE_MOUNT },
    new Map(),
    secrets,
    apiKeysDocument(),
    alertSecrets(hub),
  );
  return {
    tier: hub.tier,
    baseUrl: `http://127.0.0.1:${PUBLIC_PORTS.legacy}/v1`,
    dataDir,
    hubApiKey: apiKey,
    monthlyCostUsd: 0,
  };
}
