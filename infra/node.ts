import * as command from "@pulumi/command";
import * as digitalocean from "@pulumi/digitalocean";
import * as pulumi from "@pulumi/pulumi";

/** How the deployer logs in to nodes: a key from secret config, or the local SSH agent. */
export interface SshAccess {
  readonly privateKey?: pulumi.Output<string>;
  readonly agentSocketPath?: string;
}

export interface HubNodeArgs {
  /** Droplet name in DigitalOcean. */
  readonly cloudName: string;
  readonly region: string;
  readonly size: string;
  readonly image: string;
  readonly vpcId: pulumi.Input<string>;
  /** SSH key fingerprints or ids installed for root. */
  readonly sshKeys: pulumi.Input<string>[];
  readonly tags: pulumi.Input<string>[];
  /** Rendered cloud-config (services/node-setup.ts). */
  readonly userData: string;
  /** The cache volume this node mounts. */
  readonly volumeId: pulumi.Input<string>;
  /** Script that proves the node usable (services/node-setup.ts). */
  readonly readinessScript: string;
  readonly ssh: SshAccess;
  /**
   * The gateway node lives for months and holds DNS: first-boot-only inputs (user data, SSH keys)
   * are not allowed to replace it. Apply such changes with `pulumi up --replace <urn>`.
   * @default false - a change to user data or SSH keys replaces the droplet
   */
  readonly longLived?: boolean;
}

/** A droplet, its cache-volume attachment, and a readiness check later deployments wait for. */
export class HubNode extends pulumi.ComponentResource {
  public readonly droplet: digitalocean.Droplet;
  public readonly dropletId: pulumi.Output<number>;
  public readonly publicIp: pulumi.Output<string>;
  public readonly privateIp: pulumi.Output<string>;
  public readonly attachment: digitalocean.VolumeAttachment;
  /** Succeeds once cloud-init finished, Docker answers, the volume is mounted and every GPU is seen. */
  public readonly ready: command.remote.Command;

  constructor(name: string, args: HubNodeArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("inference-hub:node:HubNode", name, {}, opts);
    this.droplet = new digitalocean.Droplet(
      `${name}-droplet`,
      {
        name: args.cloudName,
        region: args.region,
        size: args.size,
        image: args.image,
        vpcUuid: args.vpcId,
        sshKeys: args.sshKeys,
        tags: args.tags,
        userData: args.userData,
        monitoring: true,
        // Keep the disk at its original size so the droplet can be resized back down.
        resizeDisk: false,
      },
      { parent: this, ignoreChanges: args.longLived ? ["userData", "sshKeys"] : [] },
    );
    this.dropletId = this.droplet.id.apply((id) => Number(id));
    this.publicIp = this.droplet.ipv4Address;
    this.privateIp = this.droplet.ipv4AddressPrivate;
    this.attachment = new digitalocean.VolumeAttachment(
      `${name}-volume`,
      { dropletId: this.dropletId, volumeId: args.volumeId },
      // A volume attaches to one droplet at a time: detach from the old droplet before attaching to its replacement.
      { parent: this, deleteBeforeReplace: true },
    );
    this.ready = new command.remote.Command(
      `${name}-ready`,
      {
        connection: {
          host: this.publicIp,
          user: "root",
          privateKey: args.ssh.privateKey,
          agentSocketPath: args.ssh.agentSocketPath,
          // A fresh droplet takes a minute or two to answer SSH.
          dialErrorLimit: 40,
          perDialTimeout: 15,
        },
        create: args.readinessScript,
        // Re-check whenever the droplet is replaced.
        triggers: [this.droplet.id],
      },
      // The mount check needs the volume attached.
      { parent: this, dependsOn: [this.attachment] },
    );
    this.registerOutputs({ dropletId: this.dropletId, publicIp: this.publicIp, privateIp: this.privateIp });
  }
}
