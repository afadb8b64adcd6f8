import * as digitalocean from "@pulumi/digitalocean";
import * as pulumi from "@pulumi/pulumi";
import { NodeSetupInput, readinessScript, renderCloudInit } from "../services/node-setup";
import { SSH_PORT } from "../services/ports";
import { HubNode } from "./node";
import { deployerSshAccess, SshFileStore } from "./ssh";

/**
 * A fine-tuning job's own Pulumi stack (`hub finetune`): never the serving stack. It holds a small
 * VPC, an SSH-only firewall, the job's volume (dataset, base weights, checkpoints: what a resumed
 * job continues from) and, while the job trains, one GPU droplet. Turning `droplet` off destroys
 * the droplet and keeps the volume; destroying the stack removes everything, the volume too. No
 * model-cache volume is ever named here.
 */
export interface FinetuneJobArgs {
  /** Cloud names' prefix, e.g. ih-ft-hybrid-myteam. */
  readonly cloudName: string;
  readonly region: string;
  readonly gpuSize: string;
  /** The size's DigitalOcean image (gpu-h100x1-base for single NVIDIA GPUs). */
  readonly image: string;
  readonly volumeGiB: number;
  /** False: the droplet goes (or never comes), the volume stays. */
  readonly droplet: boolean;
  /** SSH key fingerprints or ids installed for root: the serving stack's. */
  readonly sshKeys: readonly string[];
  /** CIDRs allowed to SSH in: the serving stack's adminCidrs, else this machine's address. */
  readonly sshSources: readonly string[];
  /** The deployer's private key (a secret); unset: the SSH agent. */
  readonly privateKey?: string;
  /** Where the job's SSH files (known_hosts, key) are written. */
  readonly sshFiles: SshFileStore;
  /** This job's directory under sshFiles.root. */
  readonly sshDirectory: string;
}

/** Where the job's volume is mounted on the droplet; the trainer's container sees it at /job. */
export const JOB_MOUNT = "/mnt/job";
/** Directories created on the volume at first boot. */
export const JOB_DATA_DIRS = ["data", "out", "prepared", "huggingface"] as const;

export interface FinetuneJobOutputs {
  readonly volumeId: pulumi.Output<string>;
  /** Absent while the droplet is off. */
  readonly host?: pulumi.Output<string>;
  /** The system ssh's options for this droplet: pinned host key, the key or agent, no prompts. */
  readonly sshOptions?: pulumi.Output<string[]>;
}

export function finetuneJobProgram(args: FinetuneJobArgs): FinetuneJobOutputs {
  if (args.sshSources.length === 0)
    throw new Error("no SSH source for the job's firewall: refusing to open SSH to nothing or to everyone");
  const tag = new digitalocean.Tag("job-tag", { name: args.cloudName });
  const vpc = new digitalocean.Vpc("job-vpc", {
    name: args.cloudName,
    region: args.region,
    description: "inference-hub fine-tuning job",
  });
  const firewall = new digitalocean.Firewall("job-firewall", {
    name: args.cloudName,
    tags: [tag.name],
    // SSH from the deployer only: the job serves nothing.
    inboundRules: [{ protocol: "tcp", portRange: String(SSH_PORT), sourceAddresses: [...args.sshSources] }],
    // The droplet downloads the trainer image and the base weights.
    outboundRules: [
      { protocol: "tcp", portRange: "1-65535", destinationAddresses: ["0.0.0.0/0", "::/0"] },
      { protocol: "udp", portRange: "1-65535", destinationAddresses: ["0.0.0.0/0", "::/0"] },
      { protocol: "icmp", destinationAddresses: ["0.0.0.0/0", "::/0"] },
    ],
  });
  // Not protected: it is the job's scratch space, and `finetune clean` is meant to delete it.
  const volume = new digitalocean.Volume("job-volume", {
    name: `${args.cloudName}-volume`,
    region: args.region,
    size: args.volumeGiB,
    initialFilesystemType: "ext4",
    description: "inference-hub fine-tuning job: dataset, base weights, checkpoints",
  });
  if (!args.droplet) return { volumeId: volume.id };

  const setup: NodeSetupInput = {
    nodeName: "job",
    role: "gpu",
    gpuVendor: "nvidia",
    gpuCount: 1,
    volume: { name: `${args.cloudName}-volume`, mountPath: JOB_MOUNT },
    dataDirs: [...JOB_DATA_DIRS],
  };
  const ssh = deployerSshAccess(args.sshFiles, args.sshDirectory, args.privateKey);
  const node = new HubNode("job", {
    cloudName: `${args.cloudName}-gpu`,
    region: args.region,
    size: args.gpuSize,
    image: args.image,
    vpcId: vpc.id,
    sshKeys: [...args.sshKeys],
    tags: [tag.name],
    cloudInit: (hostKey) => renderCloudInit({ ...setup, hostKey }),
    readinessScript: readinessScript(setup),
    volumeId: volume.id,
    ssh,
    sshFirewalls: [firewall],
  });
  // Outputs only once the readiness check passed: cloud-init done, Docker up, the GPU seen, the volume mounted.
  const ready = node.ready.id;
  return {
    volumeId: volume.id,
    host: pulumi.all([node.publicIp, ready]).apply(([ip]) => ip),
    sshOptions: pulumi.all([node.ssh.dockerSshOpts, ready]).apply(([o]) => o),
  };
}
