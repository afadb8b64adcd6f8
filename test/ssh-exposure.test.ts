import { describe, expect, it } from "vitest";
import { planFromText } from "../cli/plan/runner";
import { renderPlan } from "../cli/plan/view";
import { addressInside, describeSshExposure, isWholeInternet, sshExposure } from "../stacks/ssh-exposure";
import { mustLoad } from "./helpers/load";

describe("sshExposure: what adminCidrs means for port 22", () => {
  it("empty: only the deploying machine", () => {
    expect(sshExposure([])).toEqual({ kind: "deployer" });
  });

  it("ranges: exactly those", () => {
    expect(sshExposure(["203.0.113.0/24", "2001:db8::/48"])).toEqual({
      kind: "cidrs",
      cidrs: ["203.0.113.0/24", "2001:db8::/48"],
    });
  });

  it("a /0 of either family, alone or among ranges: the whole internet, because the stack says so", () => {
    for (const cidrs of [["0.0.0.0/0"], ["::/0"], ["203.0.113.0/24", "0.0.0.0/0"]])
      expect(sshExposure(cidrs).kind).toBe("anywhere");
    expect(isWholeInternet("0.0.0.0/1")).toBe(false);
    expect(isWholeInternet("not a cidr")).toBe(false);
  });

  it("addressInside matches by family and prefix", () => {
    expect(addressInside("203.0.113.9", ["203.0.113.0/24"])).toBe(true);
    expect(addressInside("203.0.114.9", ["203.0.113.0/24"])).toBe(false);
    expect(addressInside("203.0.113.9", ["2001:db8::/32"])).toBe(false);
    expect(addressInside("203.0.113.9", ["0.0.0.0/0"])).toBe(true);
  });
});

describe("the plan says which SSH exposure it will create", () => {
  const stackFile = (extra: string) => `config:\n  inference-hub:tier: hybrid\n${extra}`;
  const cases = [
    {
      extra: "",
      exposure: "deployer",
      sources: [],
      line: "Exposure (deployer): port 22 on every node accepts only the public IPv4 address this deploy runs from, looked up at each `pulumi up`",
      warned: false,
    },
    {
      extra: "  inference-hub:adminCidrs:\n    - 203.0.113.0/24\n",
      exposure: "cidrs",
      sources: ["203.0.113.0/24"],
      line: "Exposure (cidrs): port 22 on every node accepts only 203.0.113.0/24 (adminCidrs)",
      warned: false,
    },
    {
      extra: "  inference-hub:adminCidrs:\n    - 0.0.0.0/0\n    - ::/0\n",
      exposure: "anywhere",
      sources: ["0.0.0.0/0", "::/0"],
      line: "! Exposure (anywhere): port 22 on every node is open to the whole internet (adminCidrs has 0.0.0.0/0 and ::/0)",
      warned: true,
    },
  ];
  for (const c of cases) {
    it(`${c.exposure}: in the JSON document and the human view, and the firewall matches`, async () => {
      const plan = await planFromText("hybrid", "Pulumi.hybrid.yaml", stackFile(c.extra));
      expect(plan.ok).toBe(true);
      if (!plan.ok) return;
      expect(plan.document.ssh).toMatchObject({ exposure: c.exposure, sources: c.sources });
      expect(renderPlan(plan.document)).toContain(c.line);
      const warning = plan.document.warnings.find((w) => w.keys.includes("adminCidrs"));
      if (c.warned)
        expect(warning?.message).toMatch(
          /^SSH \(port 22\) on every node is open to the whole internet, as adminCidrs asks \(0\.0\.0\.0\/0, ::\/0; key login only\)/,
        );
      else expect(warning).toBeUndefined();
      // Offline the deployer's address is unknown; never a stand-in that looks real, never 0.0.0.0/0.
      const gateway = plan.resources.find(
        (r) => r.type === "digitalocean:index/firewall:Firewall" && String(r.inputs.name).endsWith("-gateway"),
      )!;
      const ssh = (gateway.inputs.inboundRules as { portRange?: string; sourceAddresses: unknown }[]).find(
        (r) => r.portRange === "22",
      )!;
      expect(ssh.sourceAddresses).toEqual(c.exposure === "deployer" ? "(known after deploy)" : c.sources);
    });
  }

  it("the local tier has no SSH", async () => {
    const plan = await planFromText("local", "Pulumi.local.yaml", "config:\n  inference-hub:tier: local\n");
    expect(plan.ok && plan.document.ssh).toBe(undefined);
  });

  it("describeSshExposure names the fix for each case", () => {
    expect(describeSshExposure(sshExposure([]))).toContain("Set adminCidrs to pin your own ranges");
    expect(describeSshExposure(sshExposure(["198.51.100.0/24"]))).toContain(
      "the deploying machine must be inside them",
    );
    expect(mustLoad({ tier: "cpu", adminCidrs: ["0.0.0.0/0"] }).warnings.map((w) => w.keys)).toContainEqual([
      "adminCidrs",
    ]);
  });
});
