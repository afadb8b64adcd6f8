import * as digitalocean from "@pulumi/digitalocean";
import * as pulumi from "@pulumi/pulumi";

export interface GatewayAddressArgs {
  readonly region: string;
  readonly dropletId: pulumi.Input<number>;
}

/** A reserved IP assigned to the gateway node, so DNS keeps working when the node is replaced. */
export class GatewayAddress extends pulumi.ComponentResource {
  public readonly reservedIp: digitalocean.ReservedIp;
  public readonly address: pulumi.Output<string>;

  constructor(name: string, args: GatewayAddressArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("inference-hub:network:GatewayAddress", name, {}, opts);
    this.reservedIp = new digitalocean.ReservedIp(`${name}-ip`, { region: args.region }, { parent: this });
    this.address = this.reservedIp.ipAddress;
    // A separate assignment: replacing the droplet moves the IP instead of releasing it.
    new digitalocean.ReservedIpAssignment(
      `${name}-assignment`,
      { ipAddress: this.address, dropletId: args.dropletId },
      { parent: this },
    );
    this.registerOutputs({ address: this.address });
  }
}
