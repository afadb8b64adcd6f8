import { Client, type Pool } from "pg";
import type { RuntimeRecord } from "./key-merge";
import type { KeyUsage, RuntimeKeyStore } from "./key-store";
import { parseRecords } from "./key-store";
import type { Logger } from "./log";
import { errorText } from "./log";
import { API_KEYS_TABLE, applyMigrations, KEY_USAGE_TABLE, KEYS_CHANNEL } from "./migrations";

/**
 * The runtime keys in the audit PostgreSQL, shared by every gatekeeper that uses it. A write
 * commits with a NOTIFY on `gatekeeper_keys`; each gatekeeper LISTENs on a connection of its own
 * and reloads at once. A replica whose listening connection broke (or missed a notification)
 * still sees the change within `pollMs` by polling the largest change number.
 */
export class PostgresKeyStore implements RuntimeKeyStore {
  readonly kind = "postgresql" as const;
  private listener: Client | undefined;
  private poll: NodeJS.Timeout | undefined;
  private reconnect: NodeJS.Timeout | undefined;
  private lastSeq: string | undefined;
  private closed = false;
  private migrated = false;

  constructor(
    private readonly pool: Pool,
    private readonly connectionString: string,
    private readonly log: Logger,
    /** @default 500: with the NOTIFY lost, a change is still seen within a second. */
    private readonly pollMs = 500,
  ) {}

  private async ready(): Promise<void> {
    if (this.migrated) return;
    const client = await this.pool.connect();
    try {
      await applyMigrations(client);
      this.migrated = true;
    } finally {
      client.release();
    }
  }

  async load(): Promise<RuntimeRecord[]> {
    await this.ready();
    const { rows } = await this.pool.query<{ record: unknown }>(`SELECT record FROM ${API_KEYS_TABLE} ORDER BY id`);
    return parseRecords(
      rows.map((r) => r.record),
      this.log,
      API_KEYS_TABLE,
    );
  }

  async modify(
    id: string,
    change: (current: RuntimeRecord | undefined) => RuntimeRecord | undefined,
  ): Promise<RuntimeRecord | undefined> {
    await this.ready();
    const client = await this.pool.connect();
    try {
      await client.query("BEGIN");
      const { rows } = await client.query<{ record: unknown }>(
        `SELECT record FROM ${API_KEYS_TABLE} WHERE id = $1 FOR UPDATE`,
        [id],
      );
      const current = parseRecords(
        rows.map((r) => r.record),
        this.log,
        API_KEYS_TABLE,
      )[0];
      const next = change(current);
      if (!next) {
        await client.query("ROLLBACK");
        return undefined;
      }
      const sha256 = next.kind === "key" ? next.entry.sha256.toLowerCase() : null;
      await client.query(
        `INSERT INTO ${API_KEYS_TABLE} (id, sha256, record) VALUES ($1, $2, $3)
         ON CONFLICT (id) DO UPDATE SET sha256 = EXCLUDED.sha256, record = EXCLUDED.record, change_seq = nextval('${API_KEYS_TABLE}_change_seq'), updated_at = now()`,
        [id, sha256, JSON.stringify(next)],
      );
      // Delivered to every listener when the transaction commits, not before.
      await client.query(`NOTIFY ${KEYS_CHANNEL}`);
      await client.query("COMMIT");
      return next;
    } catch (error) {
      await client.query("ROLLBACK").catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  }

  async addUsage(day: string, deltas: ReadonlyMap<string, KeyUsage>): Promise<Map<string, KeyUsage>> {
    await this.ready();
    if (deltas.size > 0) {
      const rows = [...deltas].map(([key_id, d]) => ({
        key_id,
        day,
        requests: d.requests,
        last_used_at: new Date(d.lastUsedMs).toISOString(),
      }));
      await this.pool.query(
        `INSERT INTO ${KEY_USAGE_TABLE} (key_id, day, requests, last_used_at)
         SELECT key_id, day, requests, last_used_at FROM json_populate_recordset(NULL::${KEY_USAGE_TABLE}, $1::json)
         ON CONFLICT (key_id, day) DO UPDATE SET requests = ${KEY_USAGE_TABLE}.requests + EXCLUDED.requests, last_used_at = greatest(${KEY_USAGE_TABLE}.last_used_at, EXCLUDED.last_used_at)`,
        [JSON.stringify(rows)],
      );
    }
    const { rows } = await this.pool.query<{ key_id: string; requests: string; last_used_at: Date }>(
      `SELECT key_id, requests, last_used_at FROM ${KEY_USAGE_TABLE} WHERE day = $1`,
      [day],
    );
    return new Map(rows.map((r) => [r.key_id, { requests: Number(r.requests), lastUsedMs: r.last_used_at.getTime() }]));
  }

  async lastUsed(): Promise<Map<string, number>> {
    await this.ready();
    const { rows } = await this.pool.query<{ key_id: string; last: Date }>(
      `SELECT key_id, max(last_used_at) AS last FROM ${KEY_USAGE_TABLE} GROUP BY key_id`,
    );
    return new Map(rows.map((r) => [r.key_id, r.last.getTime()]));
  }

  watch(onChange: () => void): void {
    const listen = async () => {
      if (this.closed) return;
      const client = new Client({
        connectionString: this.connectionString,
        connectionTimeoutMillis: 3000,
        keepAlive: true,
        application_name: "inference-hub-gatekeeper-keys",
      });
      const retry = (error: unknown) => {
        if (this.listener !== client || this.closed) return;
        this.listener = undefined;
        this.log.warn("key change listener lost; polling until it is back", { error: errorText(error) });
        client.end().catch(() => undefined);
        this.reconnect = setTimeout(() => void listen(), 1000);
        this.reconnect.unref();
      };
      this.listener = client;
      client.on("error", retry);
      client.on("end", () => retry(new Error("connection ended")));
      client.on("notification", () => onChange());
      try {
        await client.connect();
        await client.query(`LISTEN ${KEYS_CHANNEL}`);
        // Whatever changed while nobody listened.
        onChange();
      } catch (error) {
        retry(error);
      }
    };
    void listen();
    const check = async () => {
      try {
        const { rows } = await this.pool.query<{ seq: string | null }>(
          `SELECT max(change_seq)::text AS seq FROM ${API_KEYS_TABLE}`,
        );
        const seq = rows[0]?.seq ?? "0";
        if (this.lastSeq !== undefined && seq !== this.lastSeq) onChange();
        this.lastSeq = seq;
      } catch {
        // The pool's own error listener logs a lost database; the next poll tries again.
      }
    };
    this.poll = setInterval(() => void check(), this.pollMs);
    this.poll.unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.poll);
    clearTimeout(this.reconnect);
    const listener = this.listener;
    this.listener = undefined;
    await listener?.end().catch(() => undefined);
  }
}
