import { createHash } from "node:crypto";
import { mkdirSync, statSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EXIT, runHub } from "../cli/hub/cli";
import { defaultKeyFile } from "../cli/hub/connection";
import { runScriptToEnd } from "./helpers/cli";
import { GatewayRig, rigMissing } from "./helpers/gateway-rig";
import { freeLoopbackPort } from "./helpers/postgres";
import { fakeHub } from "./helpers/hub-deps";
import { ROOT } from "./helpers/load";
import { cfg, RecordingOps } from "./helpers/recording-ops";

/**
 * The operator's CLI as parsed and run by commander, table by table: each command's --help, a bad
 * argument, no stack, no Pulumi CLI on the PATH and no cloud token; then its keys and status
 * commands against the real gateway rig.
 */

const COMMANDS = [
  "keys create",
  "keys list",
  "keys revoke",
  "keys rotate",
  "keys limits",
  "status",
  "url",
  "logs",
  "down",
  "gpu on",
  "gpu off",
  "gpu status",
  "gpu sync",
  "gpu unpin",
  "gpu keep",
  "gpu scale",
  "tier",
  "autoscale",
];

describe("hub --help and refusals, for every command", () => {
  for (const command of COMMANDS) {
    it(`${command} --help: its own usage with examples, exit 0, nothing run`, async () => {
      const hub = fakeHub();
      expect(await runHub([...command.split(" "), "--help"], hub)).toBe(EXIT.ok);
      expect(hub.stdout()).toContain(`Usage: hub ${command}`);
      expect(hub.stdout()).toContain("Examples:");
      expect(hub.stackOpsAsked).toEqual([]);
    });
  }

  // Each refused for its own argument, with no Pulumi CLI, no token and no stack file reading beyond its own.
  const bad: [string[], RegExp][] = [
    [
      ["keys", "create", "--name", "x", "--scopes", "llm,bogus", "--rate", "2x"],
      /unknown scope\(s\) bogus.*--rate "2x"/,
    ],
    [["keys", "create", "--scopes", "llm"], /required option '--name <name>'/],
    [["keys", "revoke", "not-an-id"], /is not a key id/],
    [["keys", "limits", "k_abcd1234"], /at least one of --rate, --burst, --daily-quota/],
    [["keys", "limits", "k_abcd1234", "--rate", "-1"], /--rate "-1" is not a whole number/],
    [["logs", "gatekeeper", "--since", "yesterday", "--stack", "cpu"], /--since "yesterday" is not a duration/],
    [["logs", "nosuch", "--stack", "cpu"], /the cpu tier runs no "nosuch"; services: .*gatekeeper/],
    [["down", "--confirm", "cpu", "--stack", "cpu"], /--confirm goes with --delete-volumes/],
    [["gpu", "on", "--for", "3", "--stack", "hybrid"], /--for takes a duration/],
    [["gpu", "on", "--stack", "cpu"], /the cpu tier runs no GPU/],
    [["gpu", "off", "--stack", "gpu"], /always on/],
    [["gpu", "scale", "2x", "--stack", "gpu"], /a whole number/],
    [["gpu", "scale", "1", "--stack", "local"], /the local tier runs no GPU/],
    [["tier", "banana", "--stack", "cpu"], /unknown tier "banana"; tiers: cpu, gpu, hybrid, multigpu, local, k8s/],
    // On k8s KEDA and the cluster autoscaler move the GPU: each GPU command says what to do instead.
    [
      ["gpu", "on", "--stack", "k8s"],
      /gpu on: KEDA scales the k8s tier's GPU pool.*pulumi config set gpuMinNodes N --stack k8s/,
    ],
    [["gpu", "off", "--for", "8h", "--stack", "k8s"], /gpu off: KEDA scales the k8s tier's GPU pool/],
    [["gpu", "sync", "--stack", "k8s"], /gpu sync: KEDA scales/],
    [
      ["gpu", "scale", "2", "--stack", "k8s"],
      /gpu scale: KEDA sizes the k8s tier's coder between gpuMinNodes and gpuMaxNodes/,
    ],
    [["gpu", "image", "build", "--stack", "k8s"], /DOKS GPU node image .*no baked image/],
    [["url", "--stack", "nosuch"], /there is no Pulumi\.nosuch\.yaml here/],
    [["status", "--stack", "cpu", "--url", "ftp://hub"], /no admin key|not an http/],
  ];
  for (const [argv, message] of bad) {
    it(`${argv.join(" ")}: exit 1 with its own reason, before any tool or credential`, async () => {
      const hub = fakeHub();
      expect(await runHub(argv, hub)).toBe(EXIT.refused);
      expect(hub.stderr()).toMatch(message);
      expect(hub.stderr()).not.toMatch(/Pulumi CLI|DIGITALOCEAN_TOKEN|\n\s+at /);
      expect(hub.stackOpsAsked).toEqual([]);
    });
  }

  const VALID: Record<string, string[]> = {
    "keys create": ["--name", "x", "--scopes", "llm"],
    "keys list": [],
    "keys revoke": ["k_abcd1234"],
    "keys rotate": ["k_abcd1234"],
    "keys limits": ["k_abcd1234", "--rate", "5"],
    status: [],
    url: [],
    logs: ["gatekeeper"],
    down: ["--yes"],
    "gpu on": [],
    "gpu off": [],
    "gpu status": [],
    "gpu sync": [],
    "gpu unpin": [],
    "gpu keep": [],
    "gpu scale": ["1"],
    tier: ["gpu"],
    autoscale: [],
  };
  for (const command of COMMANDS) {
    it(`${command} with no stack chosen: the one rule's error, exit 1`, async () => {
      const hub = fakeHub({ onPathPrograms: ["pulumi", "ssh", "docker"] });
      Object.assign(hub.env, {
        HUB_ADMIN_KEY: `ihk_${"a".repeat(43)}`,
        HUB_URL: "https://hub.example.com/v1",
        DIGITALOCEAN_TOKEN: "dop_v1_test",
      });
      expect(await runHub([...command.split(" "), ...VALID[command]], hub)).toBe(EXIT.refused);
      expect(hub.stderr()).toMatch(
        /no stack chosen: pass --stack NAME, set PULUMI_STACK, or select one with `pulumi stack select NAME`/,
      );
      expect(hub.stackOpsAsked).toEqual([]);
    });
  }
  const NEEDS_PULUMI = [
    "logs",
    "down",
    "gpu on",
    "gpu off",
    "gpu status",
    "gpu sync",
    "gpu unpin",
    "gpu keep",
    "gpu scale",
    "tier",
    "autoscale",
  ];
  for (const command of NEEDS_PULUMI) {
    it(`${command} without the Pulumi CLI on the PATH: says so, exit 1`, async () => {
      const hub = fakeHub({ onPathPrograms: ["ssh", "docker"] });
      Object.assign(hub.env, { HUB_ADMIN_KEY: `ihk_${"a".repeat(43)}`, DIGITALOCEAN_TOKEN: "dop_v1_test" });
      expect(await runHub([...command.split(" "), ...VALID[command], "--stack", "hybrid"], hub)).toBe(EXIT.refused);
      expect(hub.stderr()).toMatch(/needs the Pulumi CLI, which is not on the PATH/);
    });
  }

  it("unknown commands and options are refused with a suggestion, exit 1, even with --help", async () => {
    for (const [argv, message] of [
      [["destroy", "--help"], /unknown command 'destroy'/],
      [["keys", "craete"], /unknown command 'craete'\n\(Did you mean create\?\)/],
      [["statsu"], /Did you mean status\?/],
      [["down", "--stak", "cpu"], /unknown option '--stak'\n\(Did you mean --stack\?\)/],
    ] as const) {
      const hub = fakeHub();
      expect(await runHub([...argv], hub), argv.join(" ")).toBe(EXIT.refused);
      expect(hub.stderr()).toMatch(message);
      expect(hub.stdout()).toBe("");
    }
  });

  it("one --stack rule: the flag, else PULUMI_STACK, else the stack `pulumi stack select` chose, else a clear error", async () => {
    const none = fakeHub();
    expect(await runHub(["url"], none)).toBe(EXIT.refused);
    expect(none.stderr()).toMatch(
      /no stack chosen: pass --stack NAME, set PULUMI_STACK, or select one with `pulumi stack select NAME` \(stack files here: cpu, gpu, hybrid, k8s, local, multigpu\)/,
    );
    const fromEnv = fakeHub();
    fromEnv.env.PULUMI_STACK = "local";
    expect(await runHub(["url"], fromEnv)).toBe(EXIT.ok);
    expect(fromEnv.stdout()).toBe("http://127.0.0.1:8100/v1\n");
    // The Pulumi CLI's own workspace file, as `pulumi stack select local` writes it (CLI v3.248.0).
    const selected = fakeHub();
    const workspaces = path.join(selected.env.PULUMI_HOME!, "workspaces");
    mkdirSync(workspaces, { recursive: true });
    const hash = createHash("sha1").update(path.join(ROOT, "Pulumi.yaml")).digest("hex");
    writeFileSync(
      path.join(workspaces, `inference-hub-${hash}-workspace.json`),
      JSON.stringify({ stack: "organization/inference-hub/local" }),
    );
    expect(await runHub(["url"], selected)).toBe(EXIT.ok);
    expect(selected.stdout()).toBe("http://127.0.0.1:8100/v1\n");
    // The flag wins over both.
    selected.env.PULUMI_STACK = "cpu";
    expect(await runHub(["url", "--stack", "local"], selected)).toBe(EXIT.ok);
  });

  it("without the Pulumi CLI, commands that need it say so; keys and status need only the URL and an admin key", async () => {
    const hub = fakeHub();
    expect(await runHub(["gpu", "status", "--stack", "hybrid"], hub)).toBe(EXIT.refused);
    expect(hub.stderr()).toMatch(/gpu status needs the Pulumi CLI, which is not on the PATH/);
    const cloud = fakeHub({ onPathPrograms: ["pulumi"] });
    expect(await runHub(["gpu", "sync", "--stack", "hybrid"], cloud)).toBe(EXIT.refused);
    expect(cloud.stderr()).toMatch(/export DIGITALOCEAN_TOKEN/);
    const url = fakeHub();
    expect(await runHub(["url", "--stack", "cpu"], url)).toBe(EXIT.refused);
    expect(url.stderr()).toMatch(/the gateway's URL is unknown: pass --url .*HUB_URL.*Pulumi CLI/);
    const key = fakeHub();
    expect(await runHub(["keys", "list", "--stack", "cpu", "--url", "https://hub.example.com"], key)).toBe(
      EXIT.refused,
    );
    expect(key.stderr()).toMatch(/no admin key: set HUB_ADMIN_KEY, pass --key-file FILE.*keys create --bootstrap/);
  });

  it("a key file readable by others is refused, as ssh refuses such a private key", async () => {
    const hub = fakeHub();
    const file = path.join(hub.home, "admin.key");
    writeFileSync(file, `ihk_${"a".repeat(43)}\n`, { mode: 0o644 });
    expect(
      await runHub(["keys", "list", "--stack", "cpu", "--url", "https://hub.example.com", "--key-file", file], hub),
    ).toBe(EXIT.refused);
    expect(hub.stderr()).toMatch(/readable by others \(mode 0644\).*chmod 600/);
  });

  it("keys create --bootstrap declares the key in apiKeys through Pulumi (no deploy, no token) and saves an admin key with mode 600", async () => {
    const ops = new RecordingOps(cfg({ tier: "cpu" }), [], "cpu");
    const hub = fakeHub({ onPathPrograms: ["pulumi"], ops });
    expect(
      await runHub(["keys", "create", "--bootstrap", "--name", "admin", "--scopes", "admin", "--stack", "cpu"], hub),
    ).toBe(EXIT.ok);
    const file = defaultKeyFile("cpu", hub.home);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(ops.config["inference-hub:apiKeys"].secret).toBe(true);
    expect(ops.calls).not.toContain("up");
    expect(hub.stdout()).toMatch(/saved to .*cpu\.admin-key \(mode 600\).*\n.*Deploy to bring it/);
  });

  it("plan, simulate, smoke, grafana and bench run their own scripts with the arguments as given", async () => {
    for (const name of ["plan", "simulate", "smoke", "grafana", "bench"]) {
      const hub = fakeHub();
      expect(await runHub([name, "--help", "--stack", "cpu"], hub)).toBe(0);
      expect(hub.scripts).toEqual([{ name, args: ["--help", "--stack", "cpu"] }]);
    }
  });

  it("logs: docker logs on the local tier; the deploy's pinned SSH options on a droplet tier", async () => {
    const local = fakeHub({ onPathPrograms: ["docker"] });
    expect(await runHub(["logs", "controller", "--stack", "local", "--since", "10m"], local)).toBe(EXIT.refused);
    expect(local.stderr()).toMatch(/the local tier runs no "controller"/);
    expect(await runHub(["logs", "gatekeeper", "--stack", "local", "--since", "10m", "--follow"], local)).toBe(EXIT.ok);
    expect(local.ran).toEqual([
      {
        program: "docker",
        args: ["logs", "--timestamps", "--since", "10m", "--tail", "all", "--follow", "gatekeeper"],
      },
    ]);
    const ops = new RecordingOps({}, [], "hybrid");
    const sshOptions = [
      "-o",
      "BatchMode=yes",
      "-o",
      "StrictHostKeyChecking=yes",
      "-o",
      "UserKnownHostsFile=/root/.pulumi/ssh/x/known_hosts",
    ];
    ops.outputs = (async () => ({
      nodeAddresses: { value: { cpu: { public: "203.0.113.10" } }, secret: false },
      nodeSshOptions: { value: { cpu: sshOptions }, secret: false },
    })) as never;
    const droplet = fakeHub({ onPathPrograms: ["pulumi", "ssh"], ops });
    expect(await runHub(["logs", "controller", "--stack", "hybrid", "--tail", "50"], droplet)).toBe(EXIT.ok);
    expect(droplet.ran).toEqual([
      {
        program: "ssh",
        args: [
          ...sshOptions,
          "-T",
          "root@203.0.113.10",
          "docker",
          "logs",
          "--timestamps",
          "--tail",
          "50",
          "autoscaler",
        ],
      },
    ]);
    // No DigitalOcean token was needed.
    expect(droplet.env.DIGITALOCEAN_TOKEN).toBeUndefined();
    // A GPU service whose node is off is named as such.
    expect(await runHub(["logs", "coder", "--stack", "gpu"], droplet)).toBe(EXIT.refused);
    expect(droplet.stderr()).toMatch(/node gpu-0 is not running/);
  });

  it("on k8s: tier k8s moves a stack through the preview like any tier; gpu keep leaves the count to KEDA; logs run kubectl logs", async () => {
    const ops = new RecordingOps(cfg({ tier: "hybrid", gpuEnabled: "true" }), [], "hybrid");
    const move = fakeHub({ onPathPrograms: ["pulumi"], ops });
    move.env.DIGITALOCEAN_TOKEN = "dop_v1_test";
    expect(await runHub(["tier", "k8s", "--stack", "hybrid"], move)).toBe(EXIT.ok);
    expect(ops.config["inference-hub:tier"].value).toBe("k8s");
    expect(ops.config["inference-hub:gpuEnabled"]).toBeUndefined();

    const keep = fakeHub({ onPathPrograms: ["pulumi"] });
    keep.env.DIGITALOCEAN_TOKEN = "dop_v1_test";
    expect(await runHub(["gpu", "keep", "--stack", "k8s"], keep)).toBe(EXIT.ok);
    expect(keep.stdout()).toMatch(
      /k8s: on the k8s tier the GPU count belongs to KEDA and the cluster autoscaler.*nothing to keep/,
    );
    expect(keep.stackOpsAsked).toEqual([]);

    const noKubectl = fakeHub({ onPathPrograms: ["pulumi", "ssh"] });
    expect(await runHub(["logs", "gatekeeper", "--stack", "k8s"], noKubectl)).toBe(EXIT.refused);
    expect(noKubectl.stderr()).toMatch(/runs `kubectl logs`, and kubectl is not on the PATH/);
    const logs = fakeHub({ onPathPrograms: ["kubectl"] });
    expect(await runHub(["logs", "controller", "--stack", "k8s", "--since", "1d"], logs)).toBe(EXIT.ok);
    expect(await runHub(["logs", "ocr", "--stack", "k8s", "--node", "gpu-1", "--tail", "20", "--follow"], logs)).toBe(
      EXIT.ok,
    );
    expect(logs.ran).toEqual([
      {
        program: "kubectl",
        args: [
          "--namespace",
          "inference-hub",
          "logs",
          "deployment/autoscaler",
          "--container",
          "autoscaler",
          "--timestamps",
          "--since",
          "24h",
          "--tail",
          "-1",
        ],
      },
      {
        program: "kubectl",
        args: [
          "--namespace",
          "inference-hub",
          "logs",
          "pod/coder-1",
          "--container",
          "ocr",
          "--timestamps",
          "--tail",
          "20",
          "--follow",
        ],
      },
    ]);
    expect(logs.stackOpsAsked).toEqual([]);
  });

  it("the real `npm run hub` prints a command's help and refuses an unknown one with exit 1", async () => {
    const help = await runScriptToEnd("hub", ["keys", "create", "--help"]);
    expect(help.status).toBe(0);
    expect(help.stdout).toContain("Usage: hub keys create");
    const unknown = await runScriptToEnd("hub", ["destroy", "--help"]);
    expect(unknown.status).toBe(1);
    expect(unknown.stderr).toMatch(/unknown command 'destroy'/);
  }, 120_000);
});

const missing = rigMissing();
describe.skipIf(Boolean(missing))(
  "hub keys and status against the real gateway, with no Pulumi CLI and no DIGITALOCEAN_TOKEN",
  () => {
    let rig: GatewayRig;
    beforeAll(async () => {
      rig = await GatewayRig.start({ keys: { admin: { scopes: ["admin"] } } });
    }, 120_000);
    afterAll(async () => rig?.stop());

    const hub = () => {
      const h = fakeHub();
      h.env.HUB_ADMIN_KEY = rig.keys.admin.key;
      h.env.HUB_URL = `${rig.baseUrl}/v1`;
      return h;
    };

    it("keys create shows the key once, it works; list shows it without it; revoke refuses it; status reports and exits 3 with the controller down", async () => {
      const create = hub();
      expect(
        await runHub(
          ["keys", "create", "--name", "laptop", "--scopes", "llm", "--daily-quota", "100", "--stack", "hybrid"],
          create,
        ),
      ).toBe(EXIT.ok);
      const key = /API key \(shown once, store it now\): (ihk_\S+)/.exec(create.stdout())![1];
      const id = /created key (k_\w+)/.exec(create.stdout())![1];
      expect((await rig.request({ path: "/v1/models", headers: { authorization: `Bearer ${key}` } })).status).toBe(200);
      const list = hub();
      expect(await runHub(["keys", "list", "--stack", "hybrid"], list)).toBe(EXIT.ok);
      expect(list.stdout()).toMatch(
        new RegExp(
          `${id}  laptop  scopes=llm  quota=1/100 today  runtime  created=\\S+  last used=2026|${id}  laptop  scopes=llm  quota=\\d/100 today  runtime`,
        ),
      );
      expect(list.stdout()).not.toContain(key);
      const revoke = hub();
      expect(await runHub(["keys", "revoke", id, "--stack", "hybrid"], revoke)).toBe(EXIT.ok);
      expect((await rig.request({ path: "/v1/models", headers: { authorization: `Bearer ${key}` } })).status).toBe(401);
      const healthy = hub();
      expect(await runHub(["status", "--stack", "hybrid"], healthy)).toBe(EXIT.ok);
      expect(healthy.stdout()).toMatch(/controller: advice mode/);
      // The controller stops: the status says so and exits 3.
      await rig.autoscaler?.stop();
      const status = hub();
      expect(await runHub(["status", "--stack", "hybrid"], status)).toBe(EXIT.unhealthy);
      expect(status.stdout()).toMatch(/^stack hybrid: tier hybrid, tor1, at http:\/\/127\.0\.0\.1:\d+\/v1$/m);
      expect(status.stdout()).toMatch(/controller: NOT ANSWERING/);
      expect(status.stdout()).toMatch(/backends: .*coder-fallback up/);
      expect(status.stdout()).toMatch(/config drift: none/);
      // A gateway that does not answer is a status too: exit 3, with where to look.
      const down = hub();
      down.env.HUB_URL = `http://127.0.0.1:${await freeLoopbackPort()}/v1`;
      expect(await runHub(["status", "--stack", "hybrid"], down)).toBe(EXIT.unhealthy);
      expect(down.stdout()).toMatch(
        /the gateway is NOT ANSWERING: cannot reach the gateway at http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\)/,
      );
    });
  },
);
