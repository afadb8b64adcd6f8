import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import * as ts from "typescript";
import { afterAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { AUTH_RESPONSE_HEADERS } from "../programs/gatekeeper/protocol";
import { AUTH_ASSIGNED_HEADERS } from "../services/gateway";
import { DATASOURCE_UID, grafanaSpec, GRAFANA_PORT, GRAFANA_USER_HEADER } from "../services/grafana";
import {
  dashboardQueries,
  fixedMonthlyUsd,
  metricNamesIn,
  provisionedDashboards,
  repositoryDashboards,
  scrapedJobs,
  stackConstants,
  withConstants,
  type GrafanaDashboard,
  type GrafanaPanel,
} from "../services/grafana-provisioning";
import { GRAFANA_IMAGE, LLAMA_CPP_SERVER_IMAGE, TRAEFIK_IMAGE } from "../services/images";
import type { ImageRef } from "../services/spec";
import { VLLM_VERSION } from "../services/vllm";
import { hubServiceSpecs } from "../services/index";
import { routeTable } from "../services/routes";
import { gatewayPorts } from "../infra/services";
import { jobExporting, PROGRAM_METRICS, SCRAPE_SERIES, seriesNames } from "../stacks/catalogue/metrics";
import { VOLUME_PRICE_PER_GIB_MONTH } from "../stacks/catalogue/storage";
import type { HubConfig } from "../stacks/hub-config";
import { SETTINGS, TIERS } from "../stacks/settings";
import { planFromText } from "../cli/plan/runner";
import { loadSettings, mustLoad, ROOT } from "./helpers/load";
import { PROMTOOL_BINARY, runTool } from "./helpers/prometheus-tools";

/**
 * The dashboards and Grafana's provisioning. Schema: @grafana/schema 13.2.3 (npm, Apache-2.0),
 * the TypeScript types Grafana 13.2.3 generates from its dashboard kind, the release the image
 * pins; the TypeScript compiler checks every dashboard against its `Dashboard` type (unknown keys
 * and wrong types fail). Queries: the real promtool at the pinned Prometheus version.
 */

const TIER_HUBS = TIERS.map((tier) => ({ tier, hub: mustLoad({ tier }) }));
const DASHBOARDS = repositoryDashboards();

function allPanels(panels: readonly GrafanaPanel[] | undefined): GrafanaPanel[] {
  return (panels ?? []).flatMap((p) => [p, ...allPanels(p.panels)]);
}

/** Type-checks dashboards (as object literals) against @grafana/schema's Dashboard; the errors, by dashboard. */
function schemaErrors(dashboards: readonly { readonly name: string; readonly json: unknown }[]): string[] {
  const file = path.join(ROOT, "test", "__grafana_schema_check__.ts");
  // JSON spells enum members by value ("absolute", 2): JsonOf<Dashboard> is the same shape with each
  // string enum widened to its values (numeric enums already accept their numbers).
  const jsonOf =
    "type JsonOf<T> = T extends string ? `${T}` : T extends number | boolean | null | undefined ? T : T extends readonly (infer U)[] ? JsonOf<U>[] : T extends object ? { [K in keyof T]: JsonOf<T[K]> } : T;";
  const source = [
    `import type { Dashboard } from "@grafana/schema";`,
    jsonOf,
    ...dashboards.map((d, i) => `// ${d.name}\nexport const d${i}: JsonOf<Dashboard> = ${JSON.stringify(d.json)};`),
  ].join("\n");
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    module: ts.ModuleKind.CommonJS,
    moduleResolution: ts.ModuleResolutionKind.Node10,
    target: ts.ScriptTarget.ES2022,
    skipLibCheck: true,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const read = host.readFile.bind(host);
  host.readFile = (name) => (path.resolve(name) === file ? source : read(name));
  const exists = host.fileExists.bind(host);
  host.fileExists = (name) => path.resolve(name) === file || exists(name);
  const getSource = host.getSourceFile.bind(host);
  host.getSourceFile = (name, lang, onError) =>
    path.resolve(name) === file ? ts.createSourceFile(name, source, lang) : getSource(name, lang, onError);
  const program = ts.createProgram([file], options, host);
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const where = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start) : undefined;
    const line = where ? source.split("\n")[where.line - 1] : "";
    return `${line.startsWith("//") ? line.slice(3) : "?"}: ${ts.flattenDiagnosticMessageText(d.messageText, "\n")}`;
  });
}

describe("dashboard JSON", () => {
  it("the repository has the dashboards the issue asks for, and one for the nodes", () => {
    expect(DASHBOARDS.map((d) => d.file)).toEqual([
      "hub-gateway.json",
      "hub-gpu.json",
      "hub-nodes.json",
      "hub-spend.json",
      "hub-vllm.json",
    ]);
  });

  it("every dashboard type-checks against Grafana 13.2.3's Dashboard schema (@grafana/schema)", () => {
    const pkg = JSON.parse(readFileSync(path.join(ROOT, "node_modules/@grafana/schema/package.json"), "utf8")) as {
      version: string;
    };
    // The schema's version is the image's: a bump of one without the other fails here.
    expect(pkg.version).toBe(GRAFANA_IMAGE.tag);
    expect(schemaErrors(DASHBOARDS.map((d) => ({ name: d.file, json: d.dashboard })))).toEqual([]);
  }, 60_000);

  it("the schema check refuses a dashboard with a wrong type or an unknown key (so it can fail)", () => {
    const base = DASHBOARDS[0].dashboard;
    const errors = schemaErrors([
      { name: "tooltip-as-text", json: { ...base, graphTooltip: "shared" } },
      { name: "unknown-key", json: { ...base, refreshEvery: "30s" } },
      { name: "no-schema-version", json: { ...base, schemaVersion: undefined } },
      {
        name: "threshold-mode-typo",
        json: {
          ...base,
          panels: [
            { type: "stat", fieldConfig: { defaults: { thresholds: { mode: "absolut", steps: [] } }, overrides: [] } },
          ],
        },
      },
    ]);
    expect(errors.some((e) => e.startsWith("tooltip-as-text"))).toBe(true);
    expect(errors.some((e) => e.startsWith("unknown-key") && e.includes("refreshEvery"))).toBe(true);
    expect(errors.some((e) => e.startsWith("no-schema-version"))).toBe(true);
    expect(errors.some((e) => e.startsWith("threshold-mode-typo") && e.includes("absolut"))).toBe(true);
  }, 60_000);

  it.each(DASHBOARDS.map((d) => [d.file, d.dashboard] as const))(
    "%s has what file provisioning needs: a stable uid, unique panel ids and refIds, our datasource",
    (_file, dashboard) => {
      // Grafana keys a provisioned dashboard by uid (at most 40 characters) and assigns id itself.
      expect(dashboard.uid).toMatch(/^[a-z0-9-]{1,40}$/);
      expect(dashboard.id ?? null).toBeNull();
      expect(dashboard.title.length).toBeGreaterThan(0);
      const panels = allPanels(dashboard.panels);
      const ids = panels.map((p) => p.id);
      expect(new Set(ids).size).toBe(ids.length);
      for (const p of panels.filter((x) => x.type !== "row")) {
        expect(p.datasource, p.title).toEqual({ type: "prometheus", uid: DATASOURCE_UID });
        const refIds = (p.targets ?? []).map((t) => t.refId);
        expect(refIds.length, p.title).toBeGreaterThan(0);
        expect(new Set(refIds).size, p.title).toBe(refIds.length);
        const grid = p.gridPos as { x: number; w: number };
        expect(grid.x + grid.w, p.title).toBeLessThanOrEqual(24);
      }
    },
  );

  it("every dashboard uid and title is distinct", () => {
    expect(new Set(DASHBOARDS.map((d) => d.dashboard.uid)).size).toBe(DASHBOARDS.length);
    expect(new Set(DASHBOARDS.map((d) => d.dashboard.title)).size).toBe(DASHBOARDS.length);
  });
});

describe("metric names", () => {
  it("reads the metric names out of a PromQL expression, and nothing else", () => {
    expect(
      metricNamesIn(
        'histogram_quantile(0.95, sum by (router, le) (rate(traefik_router_request_duration_seconds_bucket{router=~"$router", code!="5.."}[$__rate_interval])))',
      ).sort(),
    ).toEqual(["traefik_router_request_duration_seconds_bucket"]);
    expect(
      metricNamesIn(
        "sum(vllm:num_requests_waiting) / on (replica) group_left max(up) + $fixed_monthly_usd * scalar(day_of_month() - 1)",
      ).sort(),
    ).toEqual(["up", "vllm:num_requests_waiting"]);
  });

  it("every name a dashboard queries is in the catalogue", () => {
    const unknown = DASHBOARDS.flatMap((d) =>
      dashboardQueries(d.dashboard).flatMap((q) =>
        metricNamesIn(q.expr)
          .filter((n) => jobExporting(n) === undefined)
          .map((n) => `${d.file} ${q.panel}: ${n}`),
      ),
    );
    expect(unknown).toEqual([]);
  });

  it("the catalogue names each family once, and every program names its source and version", () => {
    const all = [
      ...PROGRAM_METRICS.flatMap((p) => p.families.flatMap(seriesNames)),
      ...SCRAPE_SERIES.map((s) => s.name),
    ];
    expect(new Set(all).size).toBe(all.length);
    for (const p of PROGRAM_METRICS) {
      expect(p.source.length, p.job).toBeGreaterThan(20);
      expect(p.version, p.job).not.toBe("");
      expect(p.read).toBe("2026-12-02");
    }
    // Spot checks against the programs' own spelling (vLLM's prometheus_client counters end in _total).
    expect(jobExporting("vllm:generation_tokens_total")).toBe("vllm");
    expect(jobExporting("vllm:generation_tokens")).toBeUndefined();
    expect(jobExporting("vllm:gpu_cache_usage_perc")).toBeUndefined(); // removed in vLLM 0.12 (FACTS.md)
    expect(jobExporting("DCGM_FI_DEV_GPU_UTIL")).toBe("dcgm");
    expect(jobExporting("traefik_router_request_duration_seconds_bucket")).toBe("traefik");
  });

  it("the catalogue was read at the versions the images pin", async () => {
    const images = (await import("../services/images")) as unknown as Record<string, ImageRef | undefined>;
    const version = (job: string) => PROGRAM_METRICS.find((p) => p.job === job)!.version;
    expect(version("traefik")).toBe(TRAEFIK_IMAGE.tag);
    expect(version("vllm")).toBe(VLLM_VERSION);
    expect(`server-${version("llamacpp")}`).toBe(LLAMA_CPP_SERVER_IMAGE.tag);
    expect(version("prometheus")).toBe(images.PROMETHEUS_IMAGE!.tag);
    // The exporters' images come with the monitoring branch; checked once they are there.
    if (images.NODE_EXPORTER_IMAGE) expect(version("node")).toBe(images.NODE_EXPORTER_IMAGE.tag);
    if (images.DCGM_EXPORTER_IMAGE) expect(images.DCGM_EXPORTER_IMAGE.tag.startsWith(`${version("dcgm")}-`)).toBe(true);
  });

  it.each(TIER_HUBS.map((t) => [t.tier, t.hub] as const))(
    "%s: every metric a provisioned dashboard queries comes from a job this tier scrapes",
    (_tier, hub) => {
      const scraped = scrapedJobs(hub);
      for (const { file, dashboard } of provisionedDashboards(hub)) {
        for (const q of dashboardQueries(dashboard)) {
          for (const name of metricNamesIn(q.expr)) {
            const job = jobExporting(name);
            expect(
              job === "scrape" || (job !== undefined && scraped.has(job)),
              `${file} ${q.panel}: ${name} (job ${job})`,
            ).toBe(true);
          }
        }
      }
    },
  );

  it("each tier gets the dashboards its programs can fill", () => {
    const files = (hub: HubConfig) => provisionedDashboards(hub).map((d) => d.file);
    // The spend dashboard needs the controller's metrics: there once prometheus.yml scrapes it.
    const spend = (hub: HubConfig) => (scrapedJobs(hub).has("autoscaler") ? ["hub-spend.json"] : []);
    // No GPU, no vLLM, no controller on the CPU-only tiers; GPU and vLLM on the NVIDIA GPU tiers;
    // node_exporter on droplets only (not on a laptop's Docker).
    expect(files(mustLoad({ tier: "cpu" }))).toEqual(["hub-gateway.json", "hub-nodes.json"]);
    expect(files(mustLoad({ tier: "local" }))).toEqual(["hub-gateway.json"]);
    for (const tier of ["gpu", "hybrid", "multigpu"]) {
      const hub = mustLoad({ tier });
      expect(files(hub)).toEqual([
        "hub-gateway.json",
        "hub-gpu.json",
        "hub-nodes.json",
        ...spend(hub),
        "hub-vllm.json",
      ]);
    }
    // AMD GPUs have no DCGM exporter: the GPU dashboard goes, the vLLM one stays.
    const amd = mustLoad({
      tier: "gpu",
      region: "atl1",
      gpuSize: "gpu-mi300x1-192gb",
      ocrEngine: "docling",
      cpuSize: "c-8",
    });
    expect(files(amd)).toEqual(["hub-gateway.json", "hub-nodes.json", ...spend(amd), "hub-vllm.json"]);
    // Without Prometheus there is nothing to show, and no Grafana either.
    expect(files(mustLoad({ tier: "hybrid", monitoring: false }))).toEqual([]);
  });
});

/** Grafana template variables as promtool should see them: a duration, a number, or a match-all regex. */
function substituteVariables(
  expr: string,
  numbers: Readonly<Record<string, string>>,
  regexVariables: ReadonlySet<string>,
): string {
  return expr.replace(/\$\{?(\w+)\}?/g, (whole, name: string) => {
    if (name === "__rate_interval" || name === "__interval" || name === "__range") return "5m";
    if (Object.hasOwn(numbers, name)) return numbers[name];
    if (regexVariables.has(name)) return ".*";
    throw new Error(`${whole} is not a variable this test knows: add it to the dashboard's templating and here`);
  });
}

function constantsOf(dashboard: GrafanaDashboard): { numbers: Record<string, string>; regex: Set<string> } {
  const list = dashboard.templating?.list ?? [];
  return {
    numbers: Object.fromEntries(list.filter((v) => v.type === "constant").map((v) => [v.name, String(v.query)])),
    regex: new Set(list.filter((v) => v.type === "query").map((v) => v.name)),
  };
}

describe.skipIf(!PROMTOOL_BINARY && process.env.CI !== "true")(
  "every panel query parses with the real promtool",
  () => {
    const dir = mkdtempSync(path.join(tmpdir(), "hub-dashboards-"));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    const check = (name: string, rules: { record: string; expr: string }[]) => {
      const file = path.join(dir, `${name}.yml`);
      writeFileSync(file, JSON.stringify({ groups: [{ name, rules }] }));
      return runTool(PROMTOOL_BINARY!, ["check", "rules", file]);
    };

    it.each(TIER_HUBS.map((t) => [t.tier, t.hub] as const))(
      "%s: promtool check rules accepts every query of its dashboards, constants filled in",
      (tier, hub) => {
        const rules = provisionedDashboards(hub).flatMap(({ file, dashboard }) => {
          const { numbers, regex } = constantsOf(dashboard);
          return dashboardQueries(dashboard).map((q, i) => ({
            record: `hub:dashboard_${file.replace(/\W/g, "_")}_${i}`,
            expr: substituteVariables(q.expr, numbers, regex),
          }));
        });
        expect(rules.length).toBeGreaterThan(5);
        const result = check(`tier-${tier}`, rules);
        expect(result.output).toContain(`SUCCESS: ${rules.length} rules found`);
        expect(result.status).toBe(0);
      },
    );

    it("promtool check rules accepts every query of every dashboard in the repository (provisioned on some tier or not yet)", () => {
      const hub = mustLoad({ tier: "hybrid" });
      const rules = DASHBOARDS.flatMap(({ file, dashboard }) => {
        const { numbers, regex } = constantsOf(withConstants(dashboard, stackConstants(hub)));
        return dashboardQueries(dashboard).map((q, i) => ({
          record: `hub:dashboard_${file.replace(/\W/g, "_")}_${i}`,
          expr: substituteVariables(q.expr, numbers, regex),
        }));
      });
      const result = check("repository", rules);
      expect(result.output).toContain(`SUCCESS: ${rules.length} rules found`);
      expect(result.status).toBe(0);
    });

    it("promtool refuses a query that does not parse (so the check can fail)", () => {
      const result = check("broken", [
        { record: "hub:broken", expr: "sum by (router (rate(traefik_router_requests_total[5m]))" },
      ]);
      expect(result.status).not.toBe(0);
    });
  },
);

describe("Grafana's provisioning, per tier", () => {
  const plans = new Map<string, Awaited<ReturnType<typeof planFromText>>>();
  const plan = async (tier: string) => {
    if (!plans.has(tier))
      plans.set(
        tier,
        await planFromText(`dash-${tier}`, `Pulumi.dash-${tier}.yaml`, `config:\n  inference-hub:tier: ${tier}\n`),
      );
    return plans.get(tier)!;
  };

  it.each(TIERS.map((t) => [t]))(
    "%s: the plan renders the datasource, the dashboards provider and the tier's dashboards",
    async (tier) => {
      const result = await plan(tier);
      if (!result.ok) throw new Error(`the ${tier} preset was refused: ${JSON.stringify(result.document.problems)}`);
      const grafana = result.artifacts.filter((a) => a.kind === "grafana");
      const byPath = new Map(grafana.map((a) => [a.path, a.content]));
      const datasources = parse(byPath.get("cpu/grafana/provisioning/datasources/hub.yaml")!) as {
        apiVersion: number;
        datasources: Record<string, unknown>[];
      };
      expect(datasources.apiVersion).toBe(1);
      // owners.md: Prometheus on the CPU node at :9090 under /prometheus.
      expect(datasources.datasources).toEqual([
        expect.objectContaining({
          uid: DATASOURCE_UID,
          type: "prometheus",
          access: "proxy",
          url: "http://prometheus:9090/prometheus",
          isDefault: true,
        }),
      ]);
      const providers = parse(byPath.get("cpu/grafana/provisioning/dashboards/hub.yaml")!) as {
        apiVersion: number;
        providers: { type: string; options: { path: string } }[];
      };
      expect(providers.apiVersion).toBe(1);
      // The provider reads the directory the container mounts the dashboards at.
      const hub = mustLoad({ tier });
      const mount = grafanaSpec(hub).mounts.find((m) => m.containerPath === providers.providers[0].options.path);
      expect(mount?.readOnly).toBe(true);
      expect(mount?.hostPath).toMatch(/\/dashboards$/);
      const dashboards = grafana
        .filter((a) => a.path.startsWith("cpu/grafana/dashboards/"))
        .map((a) => JSON.parse(a.content) as GrafanaDashboard);
      expect(dashboards.map((d) => d.uid).sort()).toEqual(
        provisionedDashboards(hub)
          .map((d) => d.dashboard.uid)
          .sort(),
      );
    },
    120_000,
  );

  it("the spend dashboard carries the stack's always-on cost and budget", () => {
    const hub = mustLoad({ tier: "hybrid" });
    // Independently of services/grafana.ts: the CPU droplet's price plus every volume's.
    const volumesGiB = hub.modelCache.sizeGiB * hub.modelCache.volumes + hub.cpuNode.cacheGiB;
    const expected = hub.cpuNode.size.pricePerMonth + volumesGiB * VOLUME_PRICE_PER_GIB_MONTH;
    expect(fixedMonthlyUsd(hub)).toBeCloseTo(expected, 2);
    const spend = withConstants(DASHBOARDS.find((d) => d.file === "hub-spend.json")!.dashboard, stackConstants(hub));
    const constants = Object.fromEntries(
      (spend.templating?.list ?? []).filter((v) => v.type === "constant").map((v) => [v.name, v.query]),
    );
    expect(Number(constants.fixed_monthly_usd)).toBeCloseTo(expected, 2);
    expect(Number(constants.budget_usd)).toBe(hub.budgetUsd);
    // The repository's file keeps the placeholder: the numbers are the stack's, not the repo's.
    const raw = DASHBOARDS.find((d) => d.file === "hub-spend.json")!.dashboard;
    expect(raw.templating?.list?.find((v) => v.name === "fixed_monthly_usd")?.query).toBe("0");
  });
});

describe("Grafana's container and route", () => {
  const hub = mustLoad({ tier: "hybrid" });
  const spec = grafanaSpec(hub);

  it("is never open: anonymous access, the login form, basic auth and the initial admin account are off; the user comes from the gatekeeper's header", () => {
    expect(spec.env).toMatchObject({
      GF_AUTH_ANONYMOUS_ENABLED: "false",
      GF_AUTH_DISABLE_LOGIN_FORM: "true",
      GF_AUTH_BASIC_ENABLED: "false",
      GF_SECURITY_DISABLE_INITIAL_ADMIN_CREATION: "true",
      GF_AUTH_PROXY_ENABLED: "true",
      GF_SERVER_SERVE_FROM_SUB_PATH: "true",
    });
    // The header Grafana trusts is one the gatekeeper sets on allowed requests and the gateway strips from clients.
    expect(spec.env.GF_AUTH_PROXY_HEADER_NAME).toBe(GRAFANA_USER_HEADER);
    expect(AUTH_RESPONSE_HEADERS).toContain(GRAFANA_USER_HEADER);
    expect(AUTH_ASSIGNED_HEADERS).toContain(GRAFANA_USER_HEADER);
    expect(Object.keys(spec.secretEnv)).toEqual([]);
    expect(spec.image).toBe(GRAFANA_IMAGE);
  });

  it("keeps its database on the CPU cache volume and publishes no port", () => {
    expect(spec.mounts.find((m) => m.containerPath === "/var/lib/grafana")?.hostPath).toMatch(/^\/mnt\/cpu-cache\//);
    for (const kind of ["droplet", "local"] as const)
      expect(gatewayPorts(kind).some((p) => p.container === "grafana" || p.port === GRAFANA_PORT)).toBe(false);
    expect(spec.publishOnPrivateIp).toBeUndefined();
  });

  it("is reached only through an admin-scoped route under /grafana/, with the credentials dropped before Grafana", () => {
    const route = routeTable(hub).find((r) => r.primary.some((b) => b.service === "grafana"));
    expect(route).toMatchObject({ scope: "admin", paths: ["/grafana/"], prefix: true, dropCredentials: true });
    expect(route?.rewritePrefix).toBeUndefined();
  });

  // Active once the monitoring branch's `monitoring` setting exists (Grafana follows it unless set).
  it.runIf(Object.hasOwn(SETTINGS, "monitoring"))(
    "follows monitoring when unset, and is refused on when monitoring is off",
    () => {
      expect(mustLoad({ tier: "hybrid", monitoring: false }).grafana).toBe(false);
      const refused = loadSettings({ tier: "hybrid", monitoring: false, grafana: true });
      expect(refused.ok).toBe(false);
      if (!refused.ok) expect(refused.problems.map((p) => p.keys)).toContainEqual(["grafana", "monitoring"]);
    },
  );

  it("counts its RAM in the CPU node's fit, and goes away with grafana: false", () => {
    const on = hub.nodes.find((n) => n.kind === "cpu")!;
    expect(on.workloads.find((w) => w.program === "grafana")?.ramGiB).toBe(0.5);
    const off = mustLoad({ tier: "hybrid", grafana: false });
    expect(off.grafana).toBe(false);
    expect(off.nodes.find((n) => n.kind === "cpu")!.ramNeededGiB).toBeCloseTo(on.ramNeededGiB! - 0.5, 5);
    expect(hubServiceSpecs(off).some((s) => s.program === "grafana")).toBe(false);
    expect(routeTable(off).some((r) => r.paths.includes("/grafana/"))).toBe(false);
    expect(hubServiceSpecs(hub).filter((s) => s.program === "grafana")).toHaveLength(1);
  });
});
