import parsePrometheusTextFormat from "parse-prometheus-text-format";

/**
 * The Prometheus text format, parsed by parse-prometheus-text-format (its sample parser is a port of
 * the official Python client's; output shaped like prom2json's), so tests read a scrape the way a
 * Prometheus-compatible reader does rather than with a regex of their own.
 */
export interface PrometheusSample {
  readonly labels?: Record<string, string>;
  readonly value?: string;
  /** Histograms: bucket upper bound → cumulative count. */
  readonly buckets?: Record<string, string>;
  readonly count?: string;
  readonly sum?: string;
}
export interface PrometheusFamily {
  readonly name: string;
  readonly help: string;
  readonly type: "COUNTER" | "GAUGE" | "HISTOGRAM" | "SUMMARY" | "UNTYPED";
  readonly metrics: readonly PrometheusSample[];
}

export function parsePrometheus(text: string): PrometheusFamily[] {
  return (parsePrometheusTextFormat as unknown as (t: string) => PrometheusFamily[])(text);
}
