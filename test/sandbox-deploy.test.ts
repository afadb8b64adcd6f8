import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { SANDBOX_NODE_PORT } from "../programs/sandbox/protocol";
import { RUNSC_VERSION } from "../programs/sandbox/runsc-version";
import { EXECUTIONS_PATH } from "../programs/gatekeeper/protocol";
import { NODE_EXPORTER_IMAGE } from "../services/images";
import { routeTable } from "../services/routes";
import {
  SANDBOX_NODE_IMAGE,
  SANDBOX_NODE_PATHS,
  sandboxReadinessScript,
  sandboxSetupScript,
} from "../services/sandbox";
import { hubServiceSpecs } from "../services/index";
import { PRESETS } from "../stacks/presets";
import { TIERS } from "../stacks/settings";
import { cloudInitProblems } from "./helpers/cloud-init-validate";
import { loadSettings, mustLoad } from "./helpers/load";
import { runProgram, T } from "./helpers/mock-run";

/**
 * `sandbox: on` in the plan, under Pulumi's mocks: a node of its own that holds no hub secret,
 * admits only the gateway node, and is priced; the front and its route on the gateway node.
 */

const SECRETS = {
  hubApiKey: "hub-backend-secret-0123456789abcdef0123456789",
  auditDatabaseUrl: "postgres://audit:db-password-98765@db.example.com/audit",
  sandboxToken: "sandbox-token-for-the-front-only-0123456789abcdef",
};
const bashSyntax = (script: string) => spawnSync("bash", ["-n"], { input: script, encoding: "utf8" });

describe("the sandbox setting", () => {
  it("is off in every preset: no node, no route, no front, nothing billed", () => {
    for (const tier of TIERS) {
      expect(PRESETS[tier].sandbox).toBe("none");
      const hub = mustLoad({ tier });
      expect(hub.sandbox).toBeUndefined();
      expect(hub.nodes.some((n) => n.kind === "sandbox")).toBe(false);
      expect(routeTable(hub).some((r) => r.scope === "sandbox")).toBe(false);
      expect(hubServiceSpecs(hub).some((s) => s.role === "sandbox-front")).toBe(false);
      expect(hub.cost.lines.some((l) => l.item === "Sandbox node")).toBe(false);
    }
  });

  it("on: a node of its own, priced in the plan; a route with the sandbox scope that drops the backends' key", () => {
    const hub = mustLoad({ tier: "cpu", sandbox: "on" });
    expect(hub.sandbox).toMatchObject({ size: { slug: "s-2vcpu-4gb", ramGiB: 4 }, slots: 2 });
    expect(hub.nodes.find((n) => n.kind === "sandbox")).toMatchObject({
      name: "sandbox",
      size: "s-2vcpu-4gb",
      active: true,
    });
    const line = hub.cost.lines.find((l) => l.item === "Sandbox node")!;
    expect(line.monthlyUsd).toBe(24);
    expect(hub.cost.monthlyUsd).toBeCloseTo(mustLoad({ tier: "cpu" }).cost.monthlyUsd + 24, 2);
    const route = routeTable(hub).find((r) => r.scope === "sandbox")!;
    expect(route).toMatchObject({ paths: ["/v1/sandbox/"], prefix: true, dropCredentials: true, streaming: false });
    expect(route.primary.map((b) => `${b.service}:${b.port}`)).toEqual(["sandbox-front:8080"]);
    const front = hubServiceSpecs(hub).find((s) => s.role === "sandbox-front")!;
    expect(front.secretEnv).toEqual({ SANDBOX_NODE_TOKEN: "sandboxToken" });
    expect(front.env.SANDBOX_AUDIT_URL).toBe(`http://gatekeeper:8080${EXECUTIONS_PATH}`);
  });

  it("refuses what cannot work, naming the setting and what would", () => {
    const refused = (settings: Record<string, unknown>) => {
      const result = loadSettings(settings);
      if (result.ok) throw new Error(`accepted ${JSON.stringify(settings)}`);
      return result.problems.map((p) => `${p.keys.join(",")}: ${p.message} ${p.fix}`).join("\n");
    };
    expect(refused({ tier: "local", sandbox: "on" })).toMatch(/sandbox.*local tier creates no droplets/s);
    expect(refused({ tier: "cpu", sandbox: "on", sandboxSize: "gpu-h100x1-80gb" })).toMatch(
      /sandboxSize.*GPU size.*s-2vcpu-4gb \(\$24\/month\)/s,
    );
    expect(refused({ tier: "cpu", sandbox: "maybe" })).toMatch(/sandbox.*none, on/s);
  });
});

describe("the sandbox node in the program (mock engine)", () => {
  it("Debian 13, no volume, its own firewall admitting only the gateway node; the hub's VPC ports admit the hub's nodes by tag", async () => {
    const run = await runProgram({ tier: "gpu", sandbox: "on", adminCidrs: ["203.0.113.7/32"] }, { secrets: SECRETS });
    const droplet = run.one(T.droplet, "sandbox-droplet");
    expect(droplet.inputs).toMatchObject({ size: "s-2vcpu-4gb", image: SANDBOX_NODE_IMAGE });
    expect(droplet.inputs.tags).toEqual(expect.arrayContaining(["ih-stack-gpu", "ih-gpu-sandbox"]));
    expect(run.byType(T.attachment).map((a) => a.name)).not.toContain("sandbox-volume");

    const firewall = (role: string) => run.byType(T.firewall).find((f) => String(f.inputs.name).endsWith(`-${role}`))!;
    const sandboxRules = firewall("sandbox").inputs.inboundRules as {
      protocol: string;
      portRange?: string;
      sourceTags?: string[];
      sourceAddresses?: string[];
    }[];
    // The API, and node_exporter for Prometheus (monitoring is on in every preset): both from the gateway node alone.
    expect(sandboxRules.map((r) => `${r.protocol}/${r.portRange ?? "-"}`).sort()).toEqual(
      ["icmp/-", "tcp/22", `tcp/${SANDBOX_NODE_PORT}`, "tcp/9100"].sort(),
    );
    for (const port of [String(SANDBOX_NODE_PORT), "9100"])
      expect(sandboxRules.find((r) => r.portRange === port)).toEqual({
        protocol: "tcp",
        portRange: port,
        sourceTags: ["ih-gpu-gateway"],
      });
    expect(sandboxRules.find((r) => r.portRange === "22")?.sourceAddresses).toEqual(["203.0.113.7/32"]);
    const outbound = firewall("sandbox").inputs.outboundRules as { protocol: string; portRange?: string }[];
    expect(outbound.map((r) => `${r.protocol}/${r.portRange}`).sort()).toEqual([
      "tcp/443",
      "tcp/53",
      "tcp/80",
      "udp/123",
      "udp/53",
    ]);
    // With the sandbox in the VPC, no other node admits the VPC range: only the hub's own nodes, by tag.
    for (const role of ["gateway", "gpu"]) {
      const rules = firewall(role).inputs.inboundRules as {
        portRange?: string;
        sourceTags?: string[];
        sourceAddresses?: string[];
      }[];
      for (const r of rules.filter((x) => x.sourceAddresses === undefined))
        expect(r.sourceTags, `${role} ${r.portRange}`).toEqual(["ih-gpu-gateway", "ih-gpu-gpu"]);
      for (const r of rules.filter((x) => x.sourceAddresses !== undefined))
        expect(r.sourceAddresses!.some((a) => a.startsWith("10."))).toBe(false);
    }
  });

  it("holds no hub secret: its user data, files and commands carry neither the backends' key, the database URL nor the sandbox token (only its digest)", async () => {
    const run = await runProgram({ tier: "cpu", sandbox: "on" }, { secrets: SECRETS });
    const token = SECRETS.sandboxToken;
    // The front (on the gateway node) is the one container holding the token.
    const containers = run.byType("docker:index/container:Container");
    expect(
      containers.filter((c) => JSON.stringify(c.rawInputs.envs).includes(token)).map((c) => c.inputs.name),
    ).toEqual(["sandbox-front"]);
    const secrets = [SECRETS.hubApiKey, SECRETS.auditDatabaseUrl, "db-password-98765", token];

    const droplet = run.one(T.droplet, "sandbox-droplet");
    const userData = String(droplet.rawInputs.userData);
    expect(cloudInitProblems(userData)).toEqual([]);
    const onNode = run.byType(T.command).filter((c) => c.name.startsWith("sandbox-"));
    expect(onNode.map((c) => c.name).sort()).toEqual([
      "sandbox-api-bundle",
      "sandbox-api-env",
      "sandbox-api-restart",
      "sandbox-node-exporter-env",
      "sandbox-node-exporter-restart",
      "sandbox-ready",
    ]);
    for (const text of [userData, ...onNode.map((c) => JSON.stringify(c.rawInputs))])
      for (const secret of secrets) expect(text).not.toContain(secret);
    const env = String(run.one(T.command, "sandbox-api-env").rawInputs.stdin);
    expect(env).toContain(`SANDBOX_TOKEN_SHA256=${createHash("sha256").update(token).digest("hex")}\n`);
    // The bundle written is the API itself, for Debian 13's Node.
    expect(String(run.one(T.command, "sandbox-api-bundle").rawInputs.stdin)).toContain("runsc");
  });

  it("cloud-init builds runsc at the pin and the Debian tree, then enables the API; no Docker, no volume", async () => {
    const run = await runProgram({ tier: "cpu", sandbox: "on" });
    const shown = run.artifacts.find((a) => a.kind === "cloud-init" && a.node === "sandbox")!;
    const doc = parse(shown.content) as {
      packages: string[];
      write_files: { path: string; content: string }[];
      runcmd: string[][];
      mounts?: unknown;
    };
    expect(doc.packages).toEqual(expect.arrayContaining(["nodejs", "debootstrap", "golang-go", "dbus"]));
    expect(doc.packages).not.toContain("docker.io");
    expect(doc.mounts).toBeUndefined();
    const setup = doc.write_files.find((f) => f.path === SANDBOX_NODE_PATHS.setup)!.content;
    expect(setup).toContain(`gvisor.dev/gvisor/runsc@${RUNSC_VERSION}`);
    expect(setup).toContain(`github.com/prometheus/node_exporter@${NODE_EXPORTER_IMAGE.tag}`);
    expect(setup).toContain("snapshot.debian.org/archive/debian/");
    expect(bashSyntax(setup).status, bashSyntax(setup).stderr).toBe(0);
    expect(bashSyntax(sandboxReadinessScript()).status).toBe(0);
    expect(sandboxSetupScript()).toBe(setup);
  });
});
