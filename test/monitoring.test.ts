import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { ALERTMANAGER_IMAGE, PROMETHEUS_IMAGE } from "../services/images";
import { monitoringSpecs } from "../services/monitoring";
import { mustLoad, loadSettings } from "./helpers/load";
import { runProgram, type ProgramRun } from "./helpers/mock-run";
import { AMTOOL_BINARY, PROMTOOL_BINARY, runToolAsync } from "./helpers/prometheus-tools";

/**
 * Every shipped tier's rendered monitoring files, from the real program under Pulumi's mocks:
 * prometheus.yml and the rules through `promtool check config` / `check rules`, alertmanager.yml
 * through `amtool check-config` (both built at the pinned images' versions), and the targets
 * against the nodes and routes that exist.
 */

interface Case {
  readonly label: string;
  readonly settings: Record<string, unknown>;
  readonly secrets?: Record<string, string>;
}

const WEBHOOK = "https://hooks.example.com/services/T0K3N-in-the-url";
const SMTP_PASSWORD = "smtp-pa55word-never-shown";

const CASES: Case[] = [
  { label: "cpu", settings: { tier: "cpu" } },
  { label: "gpu", settings: { tier: "gpu" } },
  { label: "hybrid, GPU off", settings: { tier: "hybrid" } },
  {
    label: "hybrid, GPU on, windows",
    settings: { tier: "hybrid", gpuEnabled: true, gpuWindows: ["mon,thu 09:00-13:00 Europe/Berlin"] },
  },
  { label: "multigpu", settings: { tier: "multigpu" } },
  { label: "local", settings: { tier: "local" } },
  { label: "cpu, sandbox on", settings: { tier: "cpu", sandbox: "on" } },
  { label: "gpu, two replicas", settings: { tier: "gpu", gpuCount: 2, gpuMaxNodes: 2, budgetUsd: 6000 } },
  {
    label: "AMD MI300X",
    settings: { tier: "gpu", region: "atl1", gpuSize: "gpu-mi300x1-192gb", ocrEngine: "docling", cpuSize: "c-8" },
  },
  {
    label: "gpu, e-mail and webhook",
    settings: {
      tier: "gpu",
      alertEmail: "ops@example.com",
      alertSmtpSmarthost: "smtp.example.com:587",
      alertSmtpFrom: "hub@example.com",
      alertSmtpUser: "hub",
    },
    secrets: { alertWebhookUrl: WEBHOOK, alertSmtpPassword: SMTP_PASSWORD },
  },
];

const work = mkdtempSync(path.join(tmpdir(), "hub-monitoring-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const runs = new Map<string, ProgramRun>();
beforeAll(async () => {
  for (const c of CASES) runs.set(c.label, await runProgram(c.settings, { secrets: c.secrets }));
}, 240_000);

const artifact = (run: ProgramRun, kind: string, p?: string) => {
  const found = run.artifacts.find((a) => a.kind === kind && (p === undefined || a.path.endsWith(p)));
  if (!found) throw new Error(`no ${kind} artifact${p ? ` ${p}` : ""}: ${run.artifacts.map((a) => a.path).join(", ")}`);
  return found.content;
};
const targetsOf = (run: ProgramRun, job: string) =>
  JSON.parse(artifact(run, "prometheus-targets", `targets/${job}.json`)) as {
    targets: string[];
    labels: Record<string, string>;
  }[];
const jobsOf = (run: ProgramRun) =>
  (parse(artifact(run, "prometheus-config")) as { scrape_configs: { job_name: string }[] }).scrape_configs.map(
    (s) => s.job_name,
  );
const privateIp = (run: ProgramRun, node: string) =>
  (run.outputs.nodeAddresses as Record<string, { private: string }>)[node].private;

/**
 * The rendered files laid out as on the node, under a temporary root: only the in-container
 * directories (/etc/prometheus, /etc/alertmanager) are moved, so the checks read exactly the
 * files the plan renders.
 */
function layOut(run: ProgramRun, label: string): { prometheus: string; alertmanager: string } {
  const root = path.join(work, label.replace(/[^a-z0-9]+/gi, "-"));
  const prom = path.join(root, "etc-prometheus");
  const am = path.join(root, "etc-alertmanager");
  for (const d of [prom, path.join(prom, "targets"), path.join(prom, "secrets"), am, path.join(am, "secrets")])
    mkdirSync(d, { recursive: true });
  const move = (text: string) => text.replaceAll("/etc/prometheus", prom).replaceAll("/etc/alertmanager", am);
  writeFileSync(path.join(prom, "prometheus.yml"), move(artifact(run, "prometheus-config")));
  writeFileSync(path.join(prom, "hub-rules.yml"), artifact(run, "prometheus-rules"));
  for (const a of run.artifacts.filter((x) => x.kind === "prometheus-targets"))
    writeFileSync(path.join(prom, "targets", path.basename(a.path)), a.content);
  // The secret files exist on the node (written from Pulumi secrets); stand-in contents here.
  writeFileSync(path.join(prom, "secrets", "llamacpp-key"), "stand-in\n");
  writeFileSync(path.join(am, "secrets", "smtp-password"), "stand-in\n");
  writeFileSync(path.join(am, "secrets", "webhook-url"), "https://hooks.example.com/stand-in\n");
  writeFileSync(path.join(am, "alertmanager.yml"), move(artifact(run, "alertmanager")));
  return { prometheus: path.join(prom, "prometheus.yml"), alertmanager: path.join(am, "alertmanager.yml") };
}

describe.each(CASES)("monitoring: $label", ({ label, settings }) => {
  const run = () => runs.get(label)!;

  it.runIf(Boolean(PROMTOOL_BINARY) || process.env.CI === "true")(
    "prometheus.yml and its rules pass promtool check config (rules, file_sd files and credentials files included)",
    async () => {
      const files = layOut(run(), label);
      const result = await runToolAsync(PROMTOOL_BINARY!, ["check", "config", files.prometheus]);
      expect(result.status, result.output).toBe(0);
      // check config also checks the rule files it names: the rules were read, not skipped.
      expect(result.output).toMatch(/SUCCESS: \d+ rules found/);
      const rules = await runToolAsync(PROMTOOL_BINARY!, [
        "check",
        "rules",
        path.join(path.dirname(files.prometheus), "hub-rules.yml"),
      ]);
      expect(rules.status, rules.output).toBe(0);
    },
  );

  it.runIf(Boolean(AMTOOL_BINARY) || process.env.CI === "true")(
    "alertmanager.yml passes amtool check-config",
    async () => {
      const files = layOut(run(), label);
      const result = await runToolAsync(AMTOOL_BINARY!, ["check-config", files.alertmanager]);
      expect(result.status, result.output).toBe(0);
      expect(result.output).toContain("SUCCESS");
    },
  );

  it("scrapes only what exists: GPU jobs only in GPU tiers, vLLM targets only for replicas the route table names", async () => {
    const r = run();
    const hub = mustLoad(settings);
    const jobs = jobsOf(r);
    expect(jobs).toEqual(expect.arrayContaining(["prometheus", "alertmanager", "traefik", "gatekeeper"]));
    if (!hub.gpu) {
      for (const job of ["vllm", "dcgm", "amdgpu"]) expect(jobs).not.toContain(job);
      expect(r.artifacts.some((a) => a.path.endsWith("targets/vllm.json"))).toBe(false);
    } else {
      expect(jobs).toContain("vllm");
      const vllm = targetsOf(r, "vllm");
      const gpuNodes = hub.gpu.on ? hub.gpu.count : 0;
      // One coder per GPU node, plus DeepSeek-OCR where it shares the GPU.
      const perNode = hub.ocr.engine === "deepseek-ocr" ? 2 : 1;
      expect(vllm).toHaveLength(gpuNodes * perNode);
      for (let i = 0; i < gpuNodes; i++) {
        const ip = privateIp(r, `gpu-${i}`);
        const mine = vllm.filter((t) => t.labels.replica === `gpu-${i}`);
        expect(mine.map((t) => t.targets[0]).sort()).toEqual(
          perNode === 2 ? [`${ip}:8000`, `${ip}:8001`] : [`${ip}:8000`],
        );
        expect(mine.map((t) => t.labels.model).sort()).toEqual(perNode === 2 ? ["coder", "deepseek-ocr"] : ["coder"]);
      }
      const gpuJob = hub.gpu.size.vendor === "amd" ? "amdgpu" : "dcgm";
      expect(jobs).toContain(gpuJob);
      expect(targetsOf(r, gpuJob).map((t) => t.labels.node)).toEqual(
        Array.from({ length: gpuNodes }, (_, i) => `gpu-${i}`),
      );
    }
    if (hub.tier === "local") {
      expect(jobs).not.toContain("node");
    } else {
      const nodes = targetsOf(r, "node");
      expect(nodes.map((t) => t.labels.node)).toEqual([
        "cpu",
        ...Array.from({ length: hub.gpu?.on ? hub.gpu.count : 0 }, (_, i) => `gpu-${i}`),
      ]);
      expect(nodes[0].targets).toEqual([`${privateIp(r, "cpu")}:9100`]);
      // The sandbox node's exporter: a file of its own in the same job, so the node alerts and dashboard cover it.
      const nodeJob = (
        parse(artifact(r, "prometheus-config")) as {
          scrape_configs: { job_name: string; file_sd_configs?: { files: string[] }[] }[];
        }
      ).scrape_configs.find((j) => j.job_name === "node")!;
      const sandboxFile = "/etc/prometheus/targets/node-sandbox.json";
      expect(nodeJob.file_sd_configs![0].files.includes(sandboxFile)).toBe(Boolean(hub.sandbox));
      if (hub.sandbox)
        expect(targetsOf(r, "node-sandbox")).toEqual([
          { targets: [`${privateIp(r, "sandbox")}:9100`], labels: { node: "sandbox" } },
        ]);
      else expect(r.artifacts.some((a) => a.path.endsWith("targets/node-sandbox.json"))).toBe(false);
    }
    // llama.cpp is scraped where it runs (the cpu tier's coder, hybrid's fallback), with --metrics on.
    const llama = hub.nodes.some((n) => n.workloads.some((w) => w.program === "llama.cpp"));
    expect(jobs.includes("llamacpp")).toBe(llama);
    for (const a of r.artifacts.filter(
      (x) => x.kind === "container-spec" && /coder(-fallback)?\.json$/.test(x.path) && x.node === "cpu",
    ))
      expect((JSON.parse(a.content) as { command: string[] }).command).toContain("--metrics");
  });

  it("Prometheus listens under /prometheus on the CPU node's private address, its data on the CPU cache volume", async () => {
    const spec = JSON.parse(artifact(run(), "container-spec", "cpu/containers/prometheus.json")) as {
      command: string[];
      publishOnPrivateIp?: boolean;
      mounts: { hostPath: string; containerPath: string; readOnly?: boolean }[];
      image: { repo: string; tag: string };
    };
    expect(spec.command).toContain("--web.route-prefix=/prometheus");
    expect(spec.command).toContain("--web.listen-address=:9090");
    expect(spec.publishOnPrivateIp).toBe(true);
    const data = spec.mounts.find((m) => m.containerPath === "/prometheus");
    expect(data?.hostPath.startsWith("/mnt/cpu-cache/")).toBe(true);
    expect(data?.readOnly).toBeFalsy();
    expect(`${spec.image.repo}:${spec.image.tag}`).toBe(`${PROMETHEUS_IMAGE.repo}:${PROMETHEUS_IMAGE.tag}`);
    const retention = (
      parse(artifact(run(), "prometheus-config")) as {
        storage: { tsdb: { retention: { time: string; size: string } } };
      }
    ).storage.tsdb.retention;
    expect(retention.time).toBe(`${mustLoad(settings).settings.prometheusRetentionDays}d`);
  });
});

describe("monitoring: secrets and receivers", () => {
  it("the webhook URL and SMTP password never reach a rendered file or a plain resource input; they reach their files as secrets", async () => {
    const r = runs.get("gpu, e-mail and webhook")!;
    for (const a of r.artifacts) {
      expect(a.content, a.path).not.toContain("T0K3N");
      expect(a.content, a.path).not.toContain(SMTP_PASSWORD);
    }
    for (const res of r.resources) {
      const text = JSON.stringify(res.inputs);
      expect(text, res.name).not.toContain("T0K3N");
      expect(text, res.name).not.toContain(SMTP_PASSWORD);
    }
    const writes = r
      .byType("command:remote:Command")
      .filter((c) => /secrets-(webhook-url|smtp-password)$/.test(c.name));
    expect(writes.map((w) => w.name).sort()).toEqual([
      "cpu-containers-file-secrets-smtp-password",
      "cpu-containers-file-secrets-webhook-url",
    ]);
    for (const w of writes) expect(w.inputs.stdin, w.name).toBe("[secret]");
    const am = parse(artifact(r, "alertmanager")) as {
      global: Record<string, unknown>;
      route: { receiver: string };
      receivers: { name: string; email_configs?: { to: string }[]; webhook_configs?: { url_file: string }[] }[];
    };
    expect(am.global.smtp_auth_password_file).toBe("/etc/alertmanager/secrets/smtp-password");
    const receiver = am.receivers.find((x) => x.name === am.route.receiver)!;
    expect(receiver.email_configs?.[0].to).toBe("ops@example.com");
    expect(receiver.webhook_configs?.[0].url_file).toBe("/etc/alertmanager/secrets/webhook-url");
  });

  it("no receiver: alerts stay in the UIs, the program says so, and nothing is sent", async () => {
    const r = runs.get("gpu")!;
    const am = parse(artifact(r, "alertmanager")) as {
      route: { receiver: string };
      receivers: Record<string, unknown>[];
    };
    const receiver = am.receivers.find((x) => x.name === am.route.receiver)!;
    expect(Object.keys(receiver)).toEqual(["name"]);
    expect(r.engineLog.join("\n")).toMatch(/alertEmail and alertWebhookUrl are unset/);
    expect(runs.get("gpu, e-mail and webhook")!.engineLog.join("\n")).not.toMatch(
      /alertEmail and alertWebhookUrl are unset/,
    );
  });

  it("alert e-mail without an SMTP server, SMTP settings without alertEmail, or alerts with monitoring off are refused, naming the settings", async () => {
    const noServer = loadSettings({ tier: "gpu", alertEmail: "ops@example.com" });
    expect(noServer.ok).toBe(false);
    if (!noServer.ok)
      expect(noServer.problems.map((p) => p.keys.join(","))).toContain("alertEmail,alertSmtpSmarthost,alertSmtpFrom");
    const noTo = loadSettings({ tier: "gpu", alertSmtpSmarthost: "smtp.example.com:587" });
    expect(noTo.ok).toBe(false);
    if (!noTo.ok) expect(noTo.problems[0].fix).toMatch(/Set alertEmail/);
    const off = loadSettings({
      tier: "gpu",
      monitoring: false,
      alertEmail: "ops@example.com",
      alertSmtpSmarthost: "smtp.example.com:587",
      alertSmtpFrom: "hub@example.com",
    });
    expect(off.ok).toBe(false);
    const badHost = loadSettings({ tier: "gpu", alertSmtpSmarthost: "smtp.example.com" });
    expect(badHost.ok).toBe(false);
    if (!badHost.ok) expect(badHost.problems[0].message).toMatch(/host:port/);
  });

  it("monitoring off: no monitoring container, file or RAM", async () => {
    const on = mustLoad({ tier: "hybrid" });
    const off = mustLoad({ tier: "hybrid", monitoring: false });
    expect(monitoringSpecs(off)).toEqual([]);
    expect(off.nodes[0].ramNeededGiB!).toBeLessThan(on.nodes[0].ramNeededGiB!);
    const r = await runProgram({ tier: "hybrid", monitoring: false });
    expect(r.artifacts.filter((a) => /prometheus|alertmanager/.test(a.kind))).toEqual([]);
    expect(
      r
        .byType("docker:index/container:Container")
        .map((c) => c.name)
        .filter((n) => /prometheus|alertmanager|exporter/.test(n)),
    ).toEqual([]);
  });

  it("every droplet tier's CPU node still fits with monitoring on (the plan would refuse it otherwise)", async () => {
    for (const tier of ["cpu", "gpu", "hybrid", "multigpu"]) {
      const hub = mustLoad({ tier });
      const cpu = hub.nodes.find((n) => n.name === "cpu")!;
      expect(cpu.workloads.map((w) => w.role)).toEqual(
        expect.arrayContaining(["prometheus", "alertmanager", "node-exporter"]),
      );
      expect(cpu.ramNeededGiB!).toBeLessThanOrEqual(cpu.ramGiB!);
    }
  });

  it("the node_exporter container runs as its README says: host network and PID, / read-only at /host (rslave)", async () => {
    const r = runs.get("hybrid, GPU on, windows")!;
    for (const node of ["cpu", "gpu-0"]) {
      const c = r
        .byType("docker:index/container:Container")
        .find((x) => x.name === `${node === "cpu" ? "cpu" : node}-containers-node-exporter`)!;
      expect(c.inputs.networkMode).toBe("host");
      expect(c.inputs.pidMode).toBe("host");
      expect(c.inputs.networksAdvanced).toBeUndefined();
      expect(c.inputs.mounts).toEqual([
        { type: "bind", source: "/", target: "/host", readOnly: true, bindOptions: { propagation: "rslave" } },
      ]);
      expect(c.inputs.command).toContain("--path.rootfs=/host");
      // Every host path it reads lies under the /host mount; udev's data is not moved by --path.rootfs.
      const paths = (c.inputs.command as string[]).filter((a) => a.startsWith("--path."));
      expect(paths.map((a) => a.split("=")[0]).sort()).toEqual(["--path.rootfs", "--path.udev.data"]);
      for (const a of paths) expect(a.split("=")[1].startsWith("/host")).toBe(true);
    }
    const dcgm = r.byType("docker:index/container:Container").find((x) => x.name === "gpu-0-containers-gpu-exporter")!;
    expect(dcgm.inputs.gpus).toBe("all");
    expect(dcgm.inputs.capabilities).toEqual({ adds: ["SYS_ADMIN"] });
  });

  it("the pinned images' flags exist in their programs' sources at those versions", async () => {
    // cmd/prometheus/main.go and cmd/alertmanager/main.go from the Go module cache the tools were built from.
    const gopath = process.env.GOPATH || path.join(process.env.HOME ?? "/root", "go");
    const promMain = path.join(gopath, "pkg/mod/github.com/prometheus/prometheus@v0.315.0/cmd/prometheus/main.go");
    const amMain = path.join(
      gopath,
      `pkg/mod/github.com/prometheus/alertmanager@${ALERTMANAGER_IMAGE.tag}/cmd/alertmanager/main.go`,
    );
    if (!existsSync(promMain) || !existsSync(amMain)) {
      if (process.env.CI === "true") expect.fail(`no module sources at ${promMain} / ${amMain}: build the tools first`);
      return;
    }
    const hub = mustLoad({ tier: "gpu" });
    const flags = (spec: { command: readonly string[] }) =>
      spec.command.map((a) => /^--([a-z.-]+)=/.exec(a)?.[1]).filter((f): f is string => Boolean(f));
    const [prom, am] = monitoringSpecs(hub);
    // The web.listen-address flag is declared by exporter-toolkit's kingpinflag in Alertmanager.
    for (const f of flags(prom))
      expect(readFileSync(promMain, "utf8"), f).toMatch(new RegExp(`"${f.replace(/\./g, "\\.")}"`));
    for (const f of flags(am).filter((f) => f !== "web.listen-address"))
      expect(readFileSync(amMain, "utf8"), f).toMatch(new RegExp(`"${f.replace(/\./g, "\\.")}"`));
  });
});
