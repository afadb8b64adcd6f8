/**
 * Which input changes make the real providers replace a resource instead of updating it in place,
 * for every resource type the program registers. The stand-in providers' Diff reports a
 * replacement exactly for these, so the real engine plans a tier switch the way it would with the
 * real providers. Read from the providers' sources (2026-12-07); property names are the Pulumi
 * schema's (provider/cmd/pulumi-resource-<name>/schema.json), which are the Terraform names in
 * camelCase, lists pluralised by the bridge (`upload` → `uploads`).
 *
 * - digitalocean (pulumi-digitalocean's `upstream` submodule, digitalocean/terraform-provider-digitalocean
 *   commit 5ef5c080): `ForceNew: true` in digitalocean/<kind>/resource_<kind>.go. Volume's
 *   CustomizeDiff also refuses a smaller `size` ("volumes `size` can only be expanded and not
 *   shrunk"); Droplet's forces a replacement when `ipv6` goes from true to false.
 * - docker (pulumi-docker's `upstream` submodule, kreuzwerker/terraform-provider-docker commit
 *   5074970c): internal/provider/resource_docker_{container,network,image}.go; RemoteImage is
 *   Terraform's docker_image.
 * - tls (hashicorp/terraform-provider-tls, internal/provider/resource_private_key.go and
 *   resource_self_signed_cert.go, commit 7a60d4a3): `RequiresReplace()` plan modifiers (the
 *   certificate's `private_key_pem` replaces when the key changes; `early_renewal_hours` and
 *   `max_path_length` update in place).
 * - random (terraform-provider-random v1.3.2-0.20260513075824-f8d869dc98d9, the version
 *   pulumi-random's provider/go.mod requires; internal/provider/resource_password.go).
 * - command (pulumi-command v1.2.1, provider/pkg/provider/common/inputs.go): only `triggers`
 *   carries `provider:"replaceOnChanges"`; every other input updates in place.
 *
 * Resource types missing here get no replacements from a stand-in: a test that depends on one
 * must add it with its source first (the stand-in refuses an unknown type, see provider.ts).
 */
export const REPLACING_INPUTS: Readonly<Record<string, readonly string[]>> = {
  "digitalocean:index/droplet:Droplet": [
    "image",
    "region",
    "publicNetworking",
    "sshKeys",
    "userData",
    "monitoring",
    "dropletAgent",
    "vpcUuid",
  ],
  "digitalocean:index/volume:Volume": [
    "region",
    "name",
    "description",
    "snapshotId",
    "initialFilesystemType",
    "initialFilesystemLabel",
  ],
  "digitalocean:index/volumeAttachment:VolumeAttachment": ["dropletId", "volumeId"],
  "digitalocean:index/vpc:Vpc": ["ipRange", "region"],
  "digitalocean:index/reservedIp:ReservedIp": ["region"],
  "digitalocean:index/reservedIpAssignment:ReservedIpAssignment": ["dropletId", "ipAddress"],
  "digitalocean:index/sshKey:SshKey": ["publicKey"],
  "digitalocean:index/tag:Tag": ["name"],
  "digitalocean:index/firewall:Firewall": [],
  "digitalocean:index/project:Project": [],
  "docker:index/container:Container": [
    "name",
    "readOnly",
    "image",
    "hostname",
    "domainname",
    "command",
    "entrypoints",
    "user",
    "dns",
    "dnsOpts",
    "dnsSearches",
    "publishAllPorts",
    "workingDir",
    "capabilities",
    "securityOpts",
    "runtime",
    "platform",
    "stopSignal",
    "stopTimeout",
    "mounts",
    "volumes",
    "ports",
    "hosts",
    "ulimits",
    "envs",
    "privileged",
    "devices",
    "deviceRequests",
    "labels",
    "shmSize",
    "logDriver",
    "logOpts",
    "networkMode",
    "networksAdvanced",
    "pidMode",
    "usernsMode",
    "uploads",
    "sysctls",
    "ipcMode",
    "groupAdds",
    "tty",
    "stdinOpen",
    "storageOpts",
    "gpus",
    "cpus",
    "cgroupnsMode",
    "cgroupParent",
  ],
  "docker:index/network:Network": [
    "name",
    "labels",
    "driver",
    "options",
    "internal",
    "attachable",
    "ingress",
    "ipv6",
    "ipamDriver",
    "ipamOptions",
    "ipamConfigs",
  ],
  "docker:index/remoteImage:RemoteImage": ["name", "pullTriggers", "triggers", "platform"],
  "tls:index/privateKey:PrivateKey": ["algorithm", "rsaBits", "ecdsaCurve"],
  "tls:index/selfSignedCert:SelfSignedCert": [
    "privateKeyPem",
    "validityPeriodHours",
    "allowedUses",
    "nameConstraintPermittedDnsNamesCritical",
    "nameConstraintPermittedDnsNames",
    "dnsNames",
    "ipAddresses",
    "uris",
    "isCaCertificate",
    "setSubjectKeyId",
    "setAuthorityKeyId",
    "subject",
  ],
  "random:index/randomPassword:RandomPassword": [
    "keepers",
    "length",
    "special",
    "upper",
    "lower",
    "number",
    "numeric",
    "minNumeric",
    "minUpper",
    "minLower",
    "minSpecial",
    "overrideSpecial",
  ],
  "command:remote:Command": ["triggers"],
  "command:local:Command": ["triggers"],
};
