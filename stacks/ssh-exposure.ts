import * as ipaddr from "ipaddr.js";

/**
 * Who may reach port 22 on the nodes, decided from `adminCidrs` alone:
 * - `deployer`: no adminCidrs. Only the address the deploy itself runs from, looked up at every
 *   `pulumi up`/`preview`, so a CI runner's changing address follows each run.
 * - `cidrs`: exactly the listed ranges.
 * - `anywhere`: the list holds a /0 ("0.0.0.0/0", "::/0"): SSH is open to the whole internet,
 *   because the stack says so explicitly.
 */
export type SshExposure =
  | { readonly kind: "deployer" }
  | { readonly kind: "cidrs"; readonly cidrs: readonly string[] }
  | { readonly kind: "anywhere"; readonly cidrs: readonly string[] };

/** A /0 of either family: every address. A malformed entry is the settings check's business. */
export function isWholeInternet(cidr: string): boolean {
  try {
    return ipaddr.parseCIDR(cidr)[1] === 0;
  } catch {
    return false;
  }
}

export function sshExposure(adminCidrs: readonly string[]): SshExposure {
  if (adminCidrs.length === 0) return { kind: "deployer" };
  return adminCidrs.some(isWholeInternet)
    ? { kind: "anywhere", cidrs: [...adminCidrs] }
    : { kind: "cidrs", cidrs: [...adminCidrs] };
}

/** One sentence for the plan: which SSH exposure the deploy will create. */
export function describeSshExposure(exposure: SshExposure): string {
  switch (exposure.kind) {
    case "deployer":
      return "port 22 on every node accepts only the public IPv4 address this deploy runs from, looked up at each `pulumi up` (a deploy from another machine moves it there). Set adminCidrs to pin your own ranges.";
    case "cidrs":
      return `port 22 on every node accepts only ${exposure.cidrs.join(", ")} (adminCidrs); the deploying machine must be inside them.`;
    case "anywhere":
      return `port 22 on every node is open to the whole internet (adminCidrs has ${exposure.cidrs.filter(isWholeInternet).join(" and ")}); key login only.`;
  }
}

/** True when `address` falls inside one of `cidrs` (same family); malformed entries never match. */
export function addressInside(address: string, cidrs: readonly string[]): boolean {
  let parsed: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    parsed = ipaddr.parse(address);
  } catch {
    return false;
  }
  return cidrs.some((cidr) => {
    try {
      const range = ipaddr.parseCIDR(cidr);
      return range[0].kind() === parsed.kind() && parsed.match(range);
    } catch {
      return false;
    }
  });
}
