import parsePrometheusTextFormat from "parse-prometheus-text-format";

/**
 * The Prometheus text format, parsed by parse-prometheus-text-format (its sample parser is a port of
 * the official Python client's; output shaped like prom2json's), so tests read a scrape the way a
 * Prometheus-compatible reader does rather than with a regex of their own. Its types are declared
 * once, beside the controller that reads it too (programs/autoscaler/controller/*.d.ts).
 */
export type PrometheusFamily = ReturnType<typeof parsePrometheusTextFormat>[number];

export const parsePrometheus = (text: string): PrometheusFamily[] => parsePrometheusTextFormat(text);
