import { createHash, createPrivateKey, createPublicKey, type KeyObject, sign } from "node:crypto";
import * as pulumi from "@pulumi/pulumi";
import * as sshpk from "sshpk";
import { type RenderedArtifact, SECRET_PLACEHOLDER } from "../../infra/artifacts";
import { PROJECT } from "../../stacks/settings";

/**
 * Runs the real Pulumi program under Pulumi's mock engine (a preview: nothing is created) and
 * records what it would register. Values only the cloud knows come back as RFC 5737
 * documentation addresses and `mock-` ids, so nobody mistakes them for real ones.
 */

export const STAND_IN_NOTE =
  "addresses are RFC 5737 documentation stand-ins (192.0.2.0/24 public, 198.51.100.0/24 private, 203.0.113.0/24 reserved); ids start with mock- (droplet ids, which are numbers, with 999); SSH host keys are throwaway stand-ins; the cloud and the deploy create the real ones";
export const SECRET_MARK = SECRET_PLACEHOLDER;
export const UNKNOWN_MARK = "(known after deploy)";

export interface RecordedResource {
  /** Pulumi type token, e.g. digitalocean:index/droplet:Droplet. */
  readonly type: string;
  readonly name: string;
  readonly urn: string;
  readonly parent: string | undefined;
  readonly custom: boolean;
  /** The explicit provider's URN, when the resource has one (Docker providers per node). */
  readonly provider?: string;
  /** The stand-in id the mock cloud gave it (custom resources), which other resources' inputs name (a volume attachment's dropletId). */
  readonly id?: string;
  /** What the mock cloud computed beyond the inputs (stand-in addresses, a VPC's range), for linking resources as the cloud would. */
  readonly cloudOutputs?: Record<string, unknown>;
  /** Inputs with secrets replaced by "[secret]" and unknowns by "(known after deploy)". */
  readonly inputs: Record<string, unknown>;
  /** Inputs with secrets left in place, for tests that check where secrets flow. */
  readonly rawInputs: Record<string, unknown>;
  readonly options: {
    readonly protect: boolean;
    readonly retainOnDelete: boolean;
    readonly ignoreChanges: readonly string[];
    readonly replaceOnChanges: readonly string[];
    readonly deleteBeforeReplace: boolean;
    readonly dependsOn: readonly string[];
    /** The cloud id the resource is adopted by (`import`), if any. */
    readonly import?: string;
  };
}

export interface MockRun {
  readonly resources: readonly RecordedResource[];
  readonly outputs: Record<string, unknown>;
  /** What the program logged (pulumi.log): the engine would show these; the plan shows its own view. */
  readonly engineLog: readonly string[];
}

const SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270";
const SIG_KEY = "4dabf18193072939515e22adb298388d";
const UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";

/** Replaces secret envelopes and unknowns; `keepSecrets` returns the plaintext instead. */
export function presentValue(value: unknown, keepSecrets: boolean): unknown {
  if (value === UNKNOWN) return UNKNOWN_MARK;
  if (Array.isArray(value)) return value.map((v) => presentValue(v, keepSecrets));
  if (value && typeof value === "object") {
    const obj = value as Record<string, unknown>;
    if (obj[SIG_KEY] === SECRET_SIG) return keepSecrets ? presentValue(obj.value, true) : SECRET_MARK;
    if ("__pulumiUnknown" in obj) return UNKNOWN_MARK;
    if (obj[SIG_KEY] !== undefined && "urn" in obj) return { resourceUrn: obj.urn };
    return Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, presentValue(v, keepSecrets)]));
  }
  return value;
}

/** PKCS#8 wrapping of a raw Ed25519 seed (RFC 8410): a fixed 16-byte prefix, then the 32 bytes. */
const PKCS8_ED25519_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");

/**
 * The stand-in keys of this process by their PEM, as Node's crypto and sshpk hold them: the
 * certificate stand-in signs with the key it names without parsing it again. sshpk's own Ed25519
 * (tweetnacl, pure JavaScript) takes about 10 ms to derive a public key and as much to sign; Node's
 * crypto gives the same bytes (Ed25519 is deterministic) in well under one.
 */
const standInKeys = new Map<string, { readonly node: KeyObject; readonly ssh: sshpk.PrivateKey }>();

/**
 * A stand-in for tls.PrivateKey (ED25519): a real key pair, derived from the stack and resource
 * name so a plan renders the same files every time. Never deployed; only the offline plan and
 * tests see it (the SSH tests run a real sshd with it).
 */
export function standInEd25519(seedText: string): {
  privateKeyOpenssh: string;
  publicKeyOpenssh: string;
  privateKeyPem: string;
  publicKeyPem: string;
} {
  const seed = createHash("sha256").update(`inference-hub mock host key: ${seedText}`).digest();
  const node = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]), format: "der", type: "pkcs8" });
  const pem = node.export({ format: "pem", type: "pkcs8" }).toString();
  // The public point: the last 32 bytes of the SubjectPublicKeyInfo (RFC 8410).
  const publicPoint = createPublicKey(node).export({ format: "der", type: "spki" }).subarray(-32);
  const key = new sshpk.PrivateKey({
    type: "ed25519",
    parts: [
      { name: "A", data: publicPoint },
      { name: "k", data: seed },
    ],
  });
  // The comment sshpk gives a key it parses from PEM: the OpenSSH file stays the one it wrote before.
  key.comment = "(unnamed)";
  standInKeys.set(pem, { node, ssh: key });
  return {
    privateKeyOpenssh: key.toString("openssh"),
    publicKeyOpenssh: `${key.toPublic().toString("ssh").split(" ").slice(0, 2).join(" ")}\n`,
    privateKeyPem: pem,
    publicKeyPem: key.toPublic().toString("pem"),
  };
}

/**
 * The key sshpk signs a certificate with, signing through Node's crypto (sshpk.Certificate calls
 * createSign(), write() and sign() on the key it is given; the signature is the same bytes).
 */
function signingThroughNode(pem: string): sshpk.PrivateKey {
  let known = standInKeys.get(pem);
  if (!known) {
    // A key the stand-in did not make (a test's own PEM): parsed once, then signed as any other.
    const node = createPrivateKey(pem);
    known = { node, ssh: sshpk.parsePrivateKey(pem, "pem") };
    standInKeys.set(pem, known);
  }
  if (known.ssh.type !== "ed25519") return known.ssh;
  const { node, ssh } = known;
  return Object.create(ssh, {
    createSign: {
      value: () => {
        const chunks: Buffer[] = [];
        return {
          write: (chunk: Buffer) => void chunks.push(chunk),
          update: (chunk: Buffer) => void chunks.push(chunk),
          sign: () => {
            const signature = sshpk.parseSignature(sign(null, Buffer.concat(chunks), node), "ed25519", "raw");
            signature.hashAlgorithm = "sha512";
            return signature;
          },
        };
      },
    },
  }) as sshpk.PrivateKey;
}

/**
 * A stand-in for tls.SelfSignedCert: a real certificate for the first DNS name, signed by the
 * stand-in key it names (standInEd25519) with a fixed validity, so a plan renders the same files
 * every time and the containers started from it (test/helpers/docker-deploy.ts) really speak TLS.
 */
function standInSelfSignedCert(inputs: Record<string, unknown>): string {
  const unwrap = (v: unknown): unknown =>
    v && typeof v === "object" && SIG_KEY in v ? (v as unknown as { value: unknown }).value : v;
  const pem = unwrap(inputs.privateKeyPem);
  const names = unwrap(inputs.dnsNames);
  const host = Array.isArray(names) && typeof names[0] === "string" ? names[0] : "localhost";
  if (typeof pem !== "string") return "";
  return sshpk
    .createSelfSignedCertificate(sshpk.identityForHost(host), signingThroughNode(pem), {
      validFrom: new Date("2026-01-01T00:00:00Z"),
      validUntil: new Date("2099-01-01T00:00:00Z"),
      serial: Buffer.from([1]),
      purposes: ["serverAuth"],
    })
    .toString("pem");
}

let addressCounter = 0;
let mockStack = "";
const standIn = (prefix: string) => `${prefix}.${10 + (addressCounter++ % 240)}`;

/** Outputs the cloud would compute, per resource type (also the real-engine tests' stand-in providers' answers). */
export function cloudState(type: string, name: string, inputs: Record<string, unknown>): Record<string, unknown> {
  switch (type) {
    case "digitalocean:index/droplet:Droplet":
      return {
        ipv4Address: standIn("192.0.2"),
        ipv4AddressPrivate: standIn("198.51.100"),
        dropletUrn: `do:droplet:mock-${name}`,
        status: "active",
      };
    case "digitalocean:index/reservedIp:ReservedIp":
      return { ipAddress: standIn("203.0.113"), reservedIpUrn: `do:reservedip:mock-${name}` };
    case "digitalocean:index/vpc:Vpc":
      // DigitalOcean picks a free private range when none is given; 10.x here is a stand-in too.
      return { ipRange: inputs.ipRange ?? "10.110.0.0/20" };
    case "digitalocean:index/volume:Volume":
      return { volumeUrn: `do:volume:mock-${name}` };
    case "digitalocean:index/sshKey:SshKey":
      // DigitalOcean's fingerprint: the key's MD5.
      return {
        fingerprint:
          typeof inputs.publicKey === "string"
            ? sshpk.parseKey(inputs.publicKey, "ssh").fingerprint("md5").toString("hex")
            : "mock:fingerprint",
      };
    case "tls:index/privateKey:PrivateKey":
      return standInEd25519(`${mockStack}/${name}`);
    case "tls:index/selfSignedCert:SelfSignedCert":
      return { certPem: standInSelfSignedCert(inputs) };
    default:
      return {};
  }
}

interface Registration {
  readonly type: string;
  readonly name: string;
  readonly parent: pulumi.Resource | undefined;
  readonly opts: pulumi.ResourceOptions & pulumi.CustomResourceOptions;
}

/** One program run under mocks. Runs are sequential: the mock engine is process-global. */
export async function runUnderMocks(
  program: () => Record<string, unknown> | Promise<Record<string, unknown>>,
  stack: string,
  config: Record<string, string>,
  secretKeys: readonly string[] = [],
): Promise<MockRun> {
  let dropletCounter = 0;
  addressCounter = 0;
  mockStack = stack;
  const inputsByKey = new Map<
    string,
    {
      inputs: Record<string, unknown>;
      custom: boolean;
      provider?: string;
      id: string;
      cloudOutputs: Record<string, unknown>;
    }
  >();
  const registrations = new Map<pulumi.Resource, Registration>();

  await pulumi.runtime.setMocks(
    {
      newResource: (args) => {
        // Droplet ids are numbers (VolumeAttachment.dropletId takes one).
        // An imported resource keeps the id it was imported by.
        const id = args.id
          ? args.id
          : args.type === "digitalocean:index/droplet:Droplet"
            ? `999${String(++dropletCounter).padStart(5, "0")}`
            : `mock-${args.name}`;
        const cloudOutputs = cloudState(args.type, args.name, args.inputs);
        inputsByKey.set(`${args.type}::${args.name}`, {
          inputs: args.inputs,
          custom: args.custom ?? true,
          provider: args.provider,
          id,
          cloudOutputs,
        });
        return { id, state: { ...args.inputs, ...cloudOutputs } };
      },
      call: (args) => args.inputs,
    },
    PROJECT,
    stack,
    true,
    // The organization of a local backend (Pulumi's own default name); the SSH file directory keys on it.
    "organization",
  );
  pulumi.runtime.setAllConfig(config, [...secretKeys]);

  let outputs: Record<string, unknown> = {};
  let failure: { err: unknown } | undefined;
  // Without an engine, pulumi.log writes to console.log/warn/error; keep it with the run instead.
  const engineLog: string[] = [];
  const { log, warn, error } = console;
  console.warn = (...args: unknown[]) => void engineLog.push(args.map(String).join(" "));
  console.error = console.warn;
  console.log = console.warn;
  try {
    await pulumi.runtime.runInPulumiStack(async () => {
      pulumi.runtime.registerStackTransformation((args) => {
        registrations.set(args.resource, {
          type: args.type,
          name: args.name,
          parent: args.opts.parent,
          opts: args.opts,
        });
        return undefined;
      });
      // A refusal is handed back to the caller, not left to reject the stack resource's promises.
      try {
        outputs = await program();
      } catch (err) {
        failure = { err };
      }
      return outputs;
    });
    await (pulumi.runtime as unknown as { waitForRPCs(): Promise<void> }).waitForRPCs();
  } finally {
    Object.assign(console, { log, warn, error });
  }
  if (failure) throw failure.err;

  const urnOf = (res: pulumi.Resource | undefined): string | undefined => {
    const reg = res ? registrations.get(res) : undefined;
    if (!reg) return undefined;
    const chain: string[] = [reg.type];
    for (let p = reg.parent; p; p = registrations.get(p)?.parent) {
      const parentReg = registrations.get(p);
      if (parentReg) chain.unshift(parentReg.type);
    }
    return `urn:pulumi:${stack}::${PROJECT}::${chain.join("$")}::${reg.name}`;
  };
  const list = (v: unknown): string[] => (Array.isArray(v) ? v.map(String) : []);
  const resources: RecordedResource[] = [];
  for (const [res, reg] of registrations) {
    const recorded = inputsByKey.get(`${reg.type}::${reg.name}`);
    const raw = (recorded?.inputs ?? {}) as Record<string, unknown>;
    const dependsOn = Array.isArray(reg.opts.dependsOn)
      ? reg.opts.dependsOn
      : reg.opts.dependsOn
        ? [reg.opts.dependsOn]
        : [];
    resources.push({
      type: reg.type,
      name: reg.name,
      urn: urnOf(res) ?? "",
      parent: urnOf(reg.parent),
      custom: recorded?.custom ?? false,
      // Provider references are "<urn>::<id>"; keep the URN.
      provider: recorded?.provider ? recorded.provider.split("::").slice(0, -1).join("::") : undefined,
      ...(recorded ? { id: recorded.id } : {}),
      // Host keys are stand-ins, but still key material: only addresses and ranges are kept.
      ...(recorded && reg.type !== "tls:index/privateKey:PrivateKey" && Object.keys(recorded.cloudOutputs).length > 0
        ? { cloudOutputs: presentValue(recorded.cloudOutputs, false) as Record<string, unknown> }
        : {}),
      inputs: presentValue(raw, false) as Record<string, unknown>,
      rawInputs: presentValue(raw, true) as Record<string, unknown>,
      options: {
        protect: reg.opts.protect === true,
        retainOnDelete: reg.opts.retainOnDelete === true,
        ignoreChanges: list(reg.opts.ignoreChanges),
        replaceOnChanges: list(reg.opts.replaceOnChanges),
        deleteBeforeReplace: reg.opts.deleteBeforeReplace === true,
        dependsOn: (dependsOn as pulumi.Resource[]).map((d) => urnOf(d) ?? "?"),
        ...(reg.opts.import ? { import: reg.opts.import } : {}),
      },
    });
  }
  // The program's own return value, not the engine's copy of it: that one has lost secretness.
  const resolved = (await deepPresent(outputs)) as Record<string, unknown>;
  return { resources, outputs: resolved, engineLog };
}

/** An Output's value under mocks, with its secret envelope kept so presentValue can mask it. */
async function unwrap(output: pulumi.Output<unknown>): Promise<unknown> {
  const isSecret = await (output as unknown as { isSecret: Promise<boolean> }).isSecret;
  const isKnown = await (output as unknown as { isKnown: Promise<boolean> }).isKnown;
  if (!isKnown) return UNKNOWN;
  const value = await (output as unknown as { promise(): Promise<unknown> }).promise();
  return isSecret ? { [SIG_KEY]: SECRET_SIG, value } : value;
}

/**
 * A rendered file as the plan shows it (infra/artifacts.ts): its text, secrets masked and unknowns
 * marked; a file rendered from a value is rendered on first read of `content`, from the value as
 * an apply would see it.
 */
export async function presentArtifact(
  artifact: RenderedArtifact,
): Promise<{ readonly kind: string; readonly node: string; readonly path: string; readonly content: string }> {
  const { kind, node, path } = artifact;
  const text = (value: unknown) => (typeof value === "string" ? value : JSON.stringify(value, null, 2));
  if (!artifact.render) return { kind, node, path, content: text(await presentInput(artifact.content)) };
  const output = pulumi.output(artifact.content);
  const whole = await unwrap(output);
  // An apply over an unknown or secret value is unknown or secret as a whole.
  if (whole === UNKNOWN || (whole as Record<string, unknown>)?.[SIG_KEY] === SECRET_SIG)
    return { kind, node, path, content: text(presentValue(whole, false)) };
  const { render } = artifact;
  let rendered: string | undefined;
  return {
    kind,
    node,
    path,
    get content() {
      rendered ??= render(whole as Record<string, unknown>);
      return rendered;
    },
  };
}

/** An Input's value as the plan shows it: secrets masked, unknowns marked. */
export async function presentInput(input: pulumi.Input<unknown>, keepSecrets = false): Promise<unknown> {
  if (pulumi.Output.isInstance(input)) return presentValue(await unwrap(input), keepSecrets);
  return presentValue(await input, keepSecrets);
}

async function deepPresent(value: unknown): Promise<unknown> {
  if (pulumi.Output.isInstance(value)) return presentValue(await unwrap(value), false);
  if (Array.isArray(value)) return Promise.all(value.map(deepPresent));
  if (value && typeof value === "object") {
    const entries = await Promise.all(Object.entries(value).map(async ([k, v]) => [k, await deepPresent(v)] as const));
    return Object.fromEntries(entries);
  }
  return value;
}
