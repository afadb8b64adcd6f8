import type { Fetcher } from "./signals";

/**
 * DigitalOcean's own figure for the month so far: GET /v2/customers/my/balance answers
 * `month_to_date_usage` (a decimal string, USD, the whole account; FACTS.md "Autoscaling").
 * Read with an optional read-only token, it cross-checks the ledger and bounds a lost one. It is
 * not the GPU's share alone (the CPU node, volumes and anything else on the account are in it),
 * so it never replaces the ledger in the decision.
 */
export interface BillingReader {
  monthToDateUsd(): Promise<number | undefined>;
}

export class DigitalOceanBilling implements BillingReader {
  constructor(
    private readonly api: string,
    private readonly token: string,
    private readonly fetcher: Fetcher,
  ) {}

  async monthToDateUsd(): Promise<number | undefined> {
    try {
      const res = await this.fetcher(`${this.api.replace(/\/$/, "")}/v2/customers/my/balance`, {
        headers: { authorization: `Bearer ${this.token}`, accept: "application/json" },
        timeoutMs: 10_000,
      });
      if (res.status !== 200) return undefined;
      const value = Number((JSON.parse(res.text) as { month_to_date_usage?: unknown }).month_to_date_usage);
      return Number.isFinite(value) && value >= 0 ? value : undefined;
    } catch {
      return undefined;
    }
  }
}
