import { expect, it } from "vitest";
import { ALERTMANAGER_IMAGE, PROMETHEUS_IMAGE } from "../services/images";
import { AMTOOL, builtToolVersion, PROMTOOL, prometheusModuleVersion } from "../tools/prometheus-tools";
import { AMTOOL_BINARY, PROMTOOL_BINARY, runToolAsync, toolsMissing } from "./helpers/prometheus-tools";

const missing = toolsMissing();
if (missing) console.warn(`promtool/amtool tests skipped: ${missing}`);

// In CI a missing tool is a failure: the monitoring checks would otherwise vanish silently.
it.runIf(Boolean(missing) && process.env.CI === "true")("promtool and amtool are built (required in CI)", async () => {
  expect.fail(missing);
});

it("maps Prometheus 3.x image tags to the Go module's v0.3xx.y tags", () => {
  // Prometheus tags its Go module v0.<major><minor>.<patch> since 3.0: 3.16.0 is v0.316.0, 3.5.0 is v0.305.0.
  expect(prometheusModuleVersion("v3.16.0")).toBe("v0.316.0");
  expect(prometheusModuleVersion("v3.5.2")).toBe("v0.305.2");
  expect(() => prometheusModuleVersion("v2.53.0")).toThrow(/PROMETHEUS_IMAGE tag v2\.53\.0/);
  expect(() => prometheusModuleVersion("latest")).toThrow(/not v3/);
});

it.runIf(Boolean(PROMTOOL_BINARY) || process.env.CI === "true")(
  "promtool --version is the pinned Prometheus image's version",
  async () => {
    expect(builtToolVersion(PROMTOOL)).toBe(PROMETHEUS_IMAGE.tag.replace(/^v/, ""));
    expect((await runToolAsync(PROMTOOL_BINARY!, ["--version"])).output).toMatch(
      new RegExp(`^promtool, version ${PROMETHEUS_IMAGE.tag.slice(1).replace(/\./g, "\\.")} `),
    );
  },
);

it.runIf(Boolean(AMTOOL_BINARY) || process.env.CI === "true")(
  "amtool --version is the pinned Alertmanager image's version",
  async () => {
    expect(builtToolVersion(AMTOOL)).toBe(ALERTMANAGER_IMAGE.tag.replace(/^v/, ""));
    expect((await runToolAsync(AMTOOL_BINARY!, ["--version"])).output).toMatch(
      new RegExp(`^amtool, version ${ALERTMANAGER_IMAGE.tag.slice(1).replace(/\./g, "\\.")} `),
    );
  },
);
