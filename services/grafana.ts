import * as path from "node:path";
import type { HubConfig } from "../stacks/hub-config";
import { CPU_NODE_NAME } from "../stacks/hub-config";
import { GRAFANA_IMAGE } from "./images";
import { CPU_CACHE_MOUNT } from "./node-setup";
import type { ServiceSpec } from "./spec";

/**
 * Grafana OSS on the CPU node, reached only through the gateway at /grafana/ with an `admin` key.
 * Only the image runs: Grafana's Go module is AGPL, so nothing of it is built or vendored here.
 *
 * Login model: auth.proxy keyed on X-Hub-Key-Id. The gatekeeper sets that header on an allowed
 * request to the key's public id, and the gateway deletes any client's own (strip-client-ids), so
 * the one credential is the hub's admin API key: revoking it ends Grafana access at once, every
 * visit is in the gatekeeper's audit log, and there is no second password to keep. Grafana's own
 * login form, basic auth, anonymous access and its initial admin account are all off. Grafana
 * publishes no port: only containers on the CPU node's Docker network can reach it (see docs/monitoring.md
 * for what that leaves open). Option names (GF_<SECTION>_<KEY>): grafana/grafana conf/defaults.ini
 * ([server], [security], [users], [auth], [auth.anonymous], [auth.basic], [auth.proxy],
 * [analytics], [snapshots]) in the search corpus's stored copy (commit 002060fdada8, older than
 * 13.2.3: these keys are long-standing), read 2026-12-02. A Bearer token in Authorization makes
 * Grafana answer "Invalid API key" before auth.proxy is tried (grafana/grafana#27617), hence the
 * route's dropCredentials.
 */
export const GRAFANA_CONTAINER = "grafana";
/** Grafana's default http_port (conf/defaults.ini [server]). */
export const GRAFANA_PORT = 3000;
/** The public prefix; Grafana serves under it itself (serve_from_sub_path), so the gateway passes paths unchanged. */
export const GRAFANA_PATH_PREFIX = "/grafana/";
/** The header Grafana's auth.proxy reads the user from; the gatekeeper is its only writer. */
export const GRAFANA_USER_HEADER = "X-Hub-Key-Id";

/**
 * Prometheus as the monitoring branch runs it: container `prometheus` on the CPU node's Docker
 * network, :9090, route prefix /prometheus (owners.md "Prometheus job names").
 */
export const PROMETHEUS_URL = "http://prometheus:9090/prometheus";
export const DATASOURCE_UID = "hub-prometheus";

const ROOT = `${CPU_CACHE_MOUNT}/grafana`;
/** Host directories on the CPU cache volume: Grafana's database survives a node rebuild. */
export const GRAFANA_DIRS = {
  data: `${ROOT}/data`,
  provisioning: `${ROOT}/provisioning`,
  dashboards: `${ROOT}/dashboards`,
} as const;
/**
 * Paths in Grafana's image (its Dockerfile: GF_PATHS_DATA=/var/lib/grafana,
 * GF_PATHS_PROVISIONING=/etc/grafana/provisioning, whose subdirectories it creates). Only the two
 * subdirectories we fill are mounted, so the image's others (plugins, alerting, ...) stay.
 */
export const IN_CONTAINER = {
  data: "/var/lib/grafana",
  datasources: "/etc/grafana/provisioning/datasources",
  providers: "/etc/grafana/provisioning/dashboards",
  dashboards: "/etc/grafana/dashboards",
} as const;

/** The JSON dashboards in the repository (monitoring/grafana/dashboards). */
export const DASHBOARDS_DIR = path.join(__dirname, "..", "monitoring", "grafana", "dashboards");

/**
 * Grafana's documented minimum: 512 MB of memory, 1 CPU (grafana.com/docs/grafana/latest/setup-grafana/installation/,
 * "Hardware recommendations"; read 2026-12-02). The container is limited to the same.
 */
export const GRAFANA_MEMORY_MIB = 512;

export function grafanaRootUrl(hub: HubConfig): string {
  // Without a domain the browser's host is the reserved IP, known only after deploy: Grafana's
  // %(protocol)s://%(domain)s placeholders keep links relative enough to work (it warns about the mismatch).
  return hub.gateway.domain
    ? `https://${hub.gateway.domain}${GRAFANA_PATH_PREFIX}`
    : `%(protocol)s://%(domain)s${GRAFANA_PATH_PREFIX}`;
}

export function grafanaSpec(hub: HubConfig): ServiceSpec {
  return {
    name: GRAFANA_CONTAINER,
    role: "grafana",
    program: "grafana",
    node: CPU_NODE_NAME,
    image: GRAFANA_IMAGE,
    // The image's own entrypoint (/run.sh) reads GF_* into grafana.ini's settings.
    command: [],
    env: {
      GF_SERVER_HTTP_PORT: String(GRAFANA_PORT),
      GF_SERVER_ROOT_URL: grafanaRootUrl(hub),
      GF_SERVER_SERVE_FROM_SUB_PATH: "true",
      GF_AUTH_PROXY_ENABLED: "true",
      GF_AUTH_PROXY_HEADER_NAME: GRAFANA_USER_HEADER,
      GF_AUTH_PROXY_HEADER_PROPERTY: "username",
      GF_AUTH_PROXY_AUTO_SIGN_UP: "true",
      GF_AUTH_PROXY_ENABLE_LOGIN_TOKEN: "false",
      // Editors may explore and build their own dashboards; the provisioned ones stay read-only.
      GF_USERS_AUTO_ASSIGN_ORG_ROLE: "Editor",
      GF_USERS_ALLOW_SIGN_UP: "false",
      GF_AUTH_ANONYMOUS_ENABLED: "false",
      GF_AUTH_BASIC_ENABLED: "false",
      GF_AUTH_DISABLE_LOGIN_FORM: "true",
      GF_AUTH_DISABLE_SIGNOUT_MENU: "true",
      // No admin/admin account waiting for someone to find a way to the login form.
      GF_SECURITY_DISABLE_INITIAL_ADMIN_CREATION: "true",
      GF_SECURITY_COOKIE_SECURE: hub.gateway.domain ? "true" : "false",
      GF_ANALYTICS_REPORTING_ENABLED: "false",
      GF_ANALYTICS_CHECK_FOR_UPDATES: "false",
      GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES: "false",
      GF_SNAPSHOTS_EXTERNAL_ENABLED: "false",
    },
    secretEnv: {},
    port: GRAFANA_PORT,
    mounts: [
      { hostPath: GRAFANA_DIRS.data, containerPath: IN_CONTAINER.data },
      { hostPath: `${GRAFANA_DIRS.provisioning}/datasources`, containerPath: IN_CONTAINER.datasources, readOnly: true },
      { hostPath: `${GRAFANA_DIRS.provisioning}/dashboards`, containerPath: IN_CONTAINER.providers, readOnly: true },
      { hostPath: GRAFANA_DIRS.dashboards, containerPath: IN_CONTAINER.dashboards, readOnly: true },
    ],
    memoryLimitMiB: GRAFANA_MEMORY_MIB,
    health: {
      path: `${GRAFANA_PATH_PREFIX}api/health`,
      // Grafana's Dockerfile installs curl in both its Alpine and Ubuntu variants.
      test: [
        "CMD",
        "curl",
        "-fsS",
        "-o",
        "/dev/null",
        `http://127.0.0.1:${GRAFANA_PORT}${GRAFANA_PATH_PREFIX}api/health`,
      ],
      intervalSeconds: 15,
      timeoutSeconds: 5,
      startPeriodSeconds: 60,
      retries: 3,
    },
  };
}
