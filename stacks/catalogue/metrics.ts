/**
 * Every metric name the dashboards (and alert rules) may use, per scraped program, as that
 * program exports it at the version the hub pins, with where it was read. Nothing here is
 * guessed: a name is listed only when it was read in the program's source (or, for the hub's own
 * programs, in the shared contract in /work/prompts/owners.md, which programs/ implement).
 *
 * `name` is the family name as it appears on /metrics: counters with their `_total` (Python's
 * prometheus_client adds it to vLLM's counters; Go's client does not, so Traefik's carry it in
 * the name itself). Histograms are listed by base name; queries use `<name>_bucket|_sum|_count`.
 */

export const METRICS_READ = "2026-12-02";

/** The Prometheus job names the monitoring branch scrapes (owners.md "Prometheus job names"). */
export const SCRAPE_JOBS = [
  "traefik",
  "gatekeeper",
  "autoscaler",
  "vllm",
  "llamacpp",
  "node",
  "dcgm",
  "prometheus",
  "alertmanager",
] as const;
export type ScrapeJob = (typeof SCRAPE_JOBS)[number];

export type MetricType = "counter" | "gauge" | "histogram";

export interface MetricFamily {
  readonly name: string;
  readonly type: MetricType;
  /** Labels the program itself sets (Prometheus adds job, instance and the scrape config's own). */
  readonly labels: readonly string[];
}

export interface ProgramMetrics {
  readonly job: ScrapeJob;
  readonly program: string;
  /** The version the names were read at: the pinned image's. */
  readonly version: string;
  readonly source: string;
  readonly read: string;
  /** ⚠ where the source could not be read at exactly the pinned version. */
  readonly caveat?: string;
  readonly families: readonly MetricFamily[];
}

const f = (name: string, type: MetricType, labels: readonly string[] = []): MetricFamily => ({ name, type, labels });

/** Traefik v3.7.13 (the gateway image): the module the rig's binary is built from. */
const TRAEFIK_ROUTER = ["code", "method", "protocol", "router", "service"];
const TRAEFIK_SERVICE = ["code", "method", "protocol", "service"];
const TRAEFIK_ENTRY = ["code", "method", "protocol", "entrypoint"];
export const TRAEFIK_METRICS: ProgramMetrics = {
  job: "traefik",
  program: "traefik",
  version: "v3.7.13",
  source:
    "github.com/traefik/traefik/v3@v3.7.13 pkg/observability/metrics/prometheus.go (initStandardRegistry; Go module proxy copy)",
  read: METRICS_READ,
  families: [
    f("traefik_config_reloads_total", "counter"),
    f("traefik_config_last_reload_success", "gauge"),
    f("traefik_tls_certs_not_after", "gauge", ["cn", "serial", "sans"]),
    f("traefik_open_connections", "gauge", ["entrypoint", "protocol"]),
    f("traefik_entrypoint_requests_total", "counter", TRAEFIK_ENTRY),
    f("traefik_entrypoint_requests_tls_total", "counter", ["tls_version", "tls_cipher", "entrypoint"]),
    f("traefik_entrypoint_request_duration_seconds", "histogram", TRAEFIK_ENTRY),
    f("traefik_entrypoint_requests_bytes_total", "counter", TRAEFIK_ENTRY),
    f("traefik_entrypoint_responses_bytes_total", "counter", TRAEFIK_ENTRY),
    f("traefik_router_requests_total", "counter", TRAEFIK_ROUTER),
    f("traefik_router_requests_tls_total", "counter", ["tls_version", "tls_cipher", "router", "service"]),
    f("traefik_router_request_duration_seconds", "histogram", TRAEFIK_ROUTER),
    f("traefik_router_requests_bytes_total", "counter", TRAEFIK_ROUTER),
    f("traefik_router_responses_bytes_total", "counter", TRAEFIK_ROUTER),
    f("traefik_service_requests_total", "counter", TRAEFIK_SERVICE),
    f("traefik_service_requests_tls_total", "counter", ["tls_version", "tls_cipher", "service"]),
    f("traefik_service_request_duration_seconds", "histogram", TRAEFIK_SERVICE),
    f("traefik_service_retries_total", "counter", ["service"]),
    f("traefik_service_server_up", "gauge", ["service", "url"]),
    f("traefik_service_requests_bytes_total", "counter", TRAEFIK_SERVICE),
    f("traefik_service_responses_bytes_total", "counter", TRAEFIK_SERVICE),
  ],
};

/** vLLM v0.24.0 = commit ee0da84ab9e04ac7610e28580af62c365e898389 (see ../shared/reference/README.md). */
const VLLM = ["model_name", "engine"];
export const VLLM_METRICS: ProgramMetrics = {
  job: "vllm",
  program: "vllm",
  version: "0.24.0",
  source:
    "vllm-project/vllm v0.24.0 (commit ee0da84ab9e04ac7610e28580af62c365e898389, read from the neuralmagic/vllm snapshot that holds it) vllm/v1/metrics/loggers.py PrometheusStatLogger; prometheus_client appends _total to counters",
  read: METRICS_READ,
  families: [
    f("vllm:num_requests_running", "gauge", VLLM),
    f("vllm:num_requests_waiting", "gauge", VLLM),
    f("vllm:num_requests_waiting_by_reason", "gauge", [...VLLM, "reason"]),
    f("vllm:engine_sleep_state", "gauge", [...VLLM, "sleep_state"]),
    f("vllm:kv_cache_usage_perc", "gauge", VLLM),
    f("vllm:prefix_cache_queries_total", "counter", VLLM),
    f("vllm:prefix_cache_hits_total", "counter", VLLM),
    f("vllm:num_preemptions_total", "counter", VLLM),
    f("vllm:prompt_tokens_total", "counter", VLLM),
    f("vllm:prompt_tokens_by_source_total", "counter", [...VLLM, "source"]),
    f("vllm:prompt_tokens_cached_total", "counter", VLLM),
    f("vllm:generation_tokens_total", "counter", VLLM),
    f("vllm:request_success_total", "counter", [...VLLM, "finished_reason"]),
    f("vllm:request_prompt_tokens", "histogram", VLLM),
    f("vllm:request_generation_tokens", "histogram", VLLM),
    f("vllm:iteration_tokens_total", "histogram", VLLM),
    f("vllm:time_to_first_token_seconds", "histogram", VLLM),
    f("vllm:inter_token_latency_seconds", "histogram", VLLM),
    f("vllm:request_time_per_output_token_seconds", "histogram", VLLM),
    f("vllm:e2e_request_latency_seconds", "histogram", VLLM),
    f("vllm:request_queue_time_seconds", "histogram", VLLM),
    f("vllm:request_inference_time_seconds", "histogram", VLLM),
    f("vllm:request_prefill_time_seconds", "histogram", VLLM),
    f("vllm:request_decode_time_seconds", "histogram", VLLM),
  ],
};

/** llama.cpp's server (server-b11176 image), started with --metrics. */
export const LLAMACPP_METRICS: ProgramMetrics = {
  job: "llamacpp",
  program: "llama.cpp",
  version: "b11176",
  source:
    "ggml-org/llama.cpp tools/server/server.cpp handle_metrics (all_metrics_def: every name gets the llamacpp: prefix), stored copy in the search corpus",
  read: METRICS_READ,
  caveat:
    "⚠ read in a stored server.cpp of late 2025, not at tag b11176 (whose commit could not be resolved here, and the repository is too large to fetch); the 2026 server-context.cpp still answers /metrics only with --metrics. Dashboards do not use these yet.",
  families: [
    f("llamacpp:prompt_tokens_total", "counter"),
    f("llamacpp:prompt_seconds_total", "counter"),
    f("llamacpp:tokens_predicted_total", "counter"),
    f("llamacpp:tokens_predicted_seconds_total", "counter"),
    f("llamacpp:n_decode_total", "counter"),
    f("llamacpp:n_busy_slots_per_decode", "counter"),
    f("llamacpp:prompt_tokens_seconds", "gauge"),
    f("llamacpp:predicted_tokens_seconds", "gauge"),
    f("llamacpp:requests_processing", "gauge"),
    f("llamacpp:requests_deferred", "gauge"),
  ],
};

/**
 * NVIDIA dcgm-exporter 4.4.2-4.7.0 (the monitoring branch's image tag, minus its -ubuntu22.04 base): the counters its default CSV enables (commented lines are
 * off). Every series carries the labels render_metrics.go writes.
 */
const DCGM = ["gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname", "DCGM_FI_DRIVER_VERSION"];
export const DCGM_METRICS: ProgramMetrics = {
  job: "dcgm",
  program: "dcgm-exporter",
  version: "4.4.2-4.7.0",
  source:
    "NVIDIA/dcgm-exporter tag 4.4.2-4.7.0 (commit 54267f29ee8037d15fdd55e9c0c65f99577d9990) etc/default-counters.csv; labels from internal/pkg/rendermetrics/render_metrics.go (DCGM_FI_DRIVER_VERSION is a `label` row of the CSV). The enabled rows and the label template are the same at 4.5.3-4.8.2.",
  read: METRICS_READ,
  families: [
    f("DCGM_FI_DEV_SM_CLOCK", "gauge", DCGM),
    f("DCGM_FI_DEV_MEM_CLOCK", "gauge", DCGM),
    f("DCGM_FI_DEV_MEMORY_TEMP", "gauge", DCGM),
    f("DCGM_FI_DEV_GPU_TEMP", "gauge", DCGM),
    f("DCGM_FI_DEV_POWER_USAGE", "gauge", DCGM),
    f("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter", DCGM),
    f("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "counter", DCGM),
    f("DCGM_FI_DEV_GPU_UTIL", "gauge", DCGM),
    f("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", DCGM),
    f("DCGM_FI_DEV_ENC_UTIL", "gauge", DCGM),
    f("DCGM_FI_DEV_DEC_UTIL", "gauge", DCGM),
    f("DCGM_FI_DEV_XID_ERRORS", "gauge", DCGM),
    f("DCGM_FI_DEV_FB_FREE", "gauge", DCGM),
    f("DCGM_FI_DEV_FB_USED", "gauge", DCGM),
    f("DCGM_FI_DEV_FB_RESERVED", "gauge", DCGM),
    f("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", "counter", DCGM),
    f("DCGM_FI_DEV_VGPU_LICENSE_STATUS", "gauge", DCGM),
    f("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "counter", DCGM),
    f("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", "counter", DCGM),
    f("DCGM_FI_DEV_ROW_REMAP_FAILURE", "gauge", DCGM),
    f("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "gauge", DCGM),
    f("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "gauge", DCGM),
    f("DCGM_FI_PROF_DRAM_ACTIVE", "gauge", DCGM),
    f("DCGM_FI_PROF_PCIE_TX_BYTES", "gauge", DCGM),
    f("DCGM_FI_PROF_PCIE_RX_BYTES", "gauge", DCGM),
  ],
};

/** node_exporter: the few collectors the dashboards and alerts use. */
export const NODE_METRICS: ProgramMetrics = {
  job: "node",
  program: "node_exporter",
  version: "v1.12.1",
  source:
    "github.com/prometheus/node_exporter@v1.12.1 (Go module proxy) collector/cpu_common.go (nodeCPUSecondsDesc), collector/meminfo.go + meminfo_linux.go (node_memory_<field>), collector/filesystem_common.go (filesystemLabelNames), collector/collector.go (scrapeSuccessDesc), collector/systemd_linux.go (NewSystemdCollector: unit_state for states active|activating|deactivating|inactive|failed; service_restart_total only with --collector.systemd.enable-restarts-metrics; the collector is off by default, on only on the sandbox node)",
  read: METRICS_READ,
  families: [
    f("node_cpu_seconds_total", "counter", ["cpu", "mode"]),
    f("node_memory_MemAvailable_bytes", "gauge"),
    f("node_memory_MemTotal_bytes", "gauge"),
    f("node_filesystem_avail_bytes", "gauge", ["device", "mountpoint", "fstype", "device_error"]),
    f("node_filesystem_size_bytes", "gauge", ["device", "mountpoint", "fstype", "device_error"]),
    f("node_scrape_collector_success", "gauge", ["collector"]),
    f("node_systemd_unit_state", "gauge", ["name", "state", "type"]),
    f("node_systemd_service_restart_total", "counter", ["name"]),
  ],
};

/** The gatekeeper's own metrics: the owners.md contract (hops implements it in programs/gatekeeper). */
export const GATEKEEPER_METRICS: ProgramMetrics = {
  job: "gatekeeper",
  program: "gatekeeper",
  version: "this repository",
  source: "/work/prompts/owners.md 'Gatekeeper metrics' (the contract programs/gatekeeper implements with prom-client)",
  read: METRICS_READ,
  families: [
    f("hub_gatekeeper_requests_total", "counter", ["scope", "key_id", "outcome"]),
    f("hub_gatekeeper_decision_duration_seconds", "histogram", ["outcome"]),
    f("hub_gatekeeper_spool_pending_records", "gauge"),
    f("hub_gatekeeper_spool_oldest_pending_age_seconds", "gauge"),
    f("hub_gatekeeper_ship_failures_total", "counter"),
    f("hub_gatekeeper_disk_full", "gauge"),
  ],
};

/** The autoscaling controller's metrics: the owners.md contract (programs/autoscaler/controller). */
export const AUTOSCALER_METRICS: ProgramMetrics = {
  job: "autoscaler",
  program: "autoscaler",
  version: "this repository",
  source:
    "/work/prompts/owners.md 'Controller metrics' (the contract programs/autoscaler/controller implements with prom-client)",
  read: METRICS_READ,
  families: [
    f("hub_autoscaler_wanted_nodes", "gauge"),
    f("hub_autoscaler_nodes", "gauge", ["state"]),
    f("hub_autoscaler_decisions_total", "counter", ["reason"]),
    f("hub_autoscaler_month_spend_usd", "gauge"),
    f("hub_autoscaler_gpu_budget_usd", "gauge"),
    f("hub_autoscaler_signals_up", "gauge"),
    f("hub_autoscaler_dispatch_failures_total", "counter"),
    f("hub_autoscaler_dispatch_pending", "gauge"),
    f("hub_autoscaler_wake_ready_seconds", "histogram"),
  ],
};

/** Prometheus 3.15.0 (module v0.315.0): a few of its own metrics. */
export const PROMETHEUS_METRICS: ProgramMetrics = {
  job: "prometheus",
  program: "prometheus",
  version: "v3.15.0",
  source:
    "github.com/prometheus/prometheus@v0.315.0 (Go module proxy) tsdb/head.go (prometheus_tsdb_head_series), cmd/prometheus/main.go (prometheus_config_last_reload_successful)",
  read: METRICS_READ,
  families: [f("prometheus_tsdb_head_series", "gauge"), f("prometheus_config_last_reload_successful", "gauge")],
};

/**
 * Series Prometheus writes for every target it scrapes, whatever the program
 * (scrape/scrape.go at v0.315.0: up, scrape_duration_seconds, scrape_samples_scraped).
 */
export const SCRAPE_SERIES: readonly MetricFamily[] = [
  f("up", "gauge"),
  f("scrape_duration_seconds", "gauge"),
  f("scrape_samples_scraped", "gauge"),
];

export const PROGRAM_METRICS: readonly ProgramMetrics[] = [
  TRAEFIK_METRICS,
  GATEKEEPER_METRICS,
  AUTOSCALER_METRICS,
  VLLM_METRICS,
  LLAMACPP_METRICS,
  NODE_METRICS,
  DCGM_METRICS,
  PROMETHEUS_METRICS,
];

/** The sample names a family puts on /metrics: a histogram's three series, otherwise its name. */
export function seriesNames(family: MetricFamily): string[] {
  return family.type === "histogram"
    ? [`${family.name}_bucket`, `${family.name}_sum`, `${family.name}_count`]
    : [family.name];
}

/** Every series name to the job exporting it, the first program in PROGRAM_METRICS order; built on first use. */
let exporters: Map<string, ScrapeJob | "scrape"> | undefined;

/** Which job exports a series name, or "scrape" for the series Prometheus adds to every target; undefined if none does. */
export function jobExporting(series: string): ScrapeJob | "scrape" | undefined {
  // Each dashboard query asks for several names: one index instead of a scan of the catalogue per name.
  if (!exporters) {
    exporters = new Map(SCRAPE_SERIES.map((s) => [s.name, "scrape" as const]));
    for (const p of PROGRAM_METRICS)
      for (const fam of p.families)
        for (const name of seriesNames(fam)) if (!exporters.has(name)) exporters.set(name, p.job);
  }
  return exporters.get(series);
}
