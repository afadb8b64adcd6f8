import * as fs from "node:fs";
import { randomBytes } from "node:crypto";
import { parseWindows } from "../../../stacks/windows";
import { decide, initialState } from "../decision";
import type { AutoscalerState, Decision, PolicyConfig } from "../types";
import { Actuator, ActuatorState, asActuatorState, DispatchRequest, emptyActuatorState, Pipeline, WantOutcome } from "./actuator";
import type { BillingReader } from "./billing";
import { ControllerFile, parseControllerFile } from "./contract";
import { budgetReplicaCap } from "../budget-cap";
import { type HostResolver, withPresentReplicas } from "./kubernetes";
import { asLedger, emptyLedger, LedgerState, monthNodeSeconds, monthToDateUsd, observeDroplets, recoveredLedger } from "./ledger";
import { errorText, Logger } from "./log";
import { ControllerMetrics } from "./metrics";
import { offAnswer, OffAnswer } from "./off-answer";
import { coderDemandCounters, CounterDeltas, Fetcher, healthy, ReplicaReading, replicaReading, scrape } from "./signals";
import { JsonStore } from "./store";

/**
 * The controller: every tick it reads the config file the deploy rendered (which GPU replicas the
 * stack has, the policy, the pin), the gateway's coder counts and each replica's queue, keeps the
 * ledger, calls the pure decision, and asks the pipeline for the wanted node count. Its view is
 * rebuilt from that file and live metrics on every tick; only the learned traffic, the ledger and
 * the actuator's last request are kept on disk, so a restart resumes them and sends no duplicate.
 */

export const STATE_FILE = "state.json";
export const LEDGER_FILE = "ledger.json";
/** How often the optional billing cross-check asks DigitalOcean. */
const BILLING_CHECK_MS = 10 * 60_000;

export interface PersistedState {
  readonly version: 1;
  readonly decision: AutoscalerState;
  readonly actuator: ActuatorState;
  /** When the wake now under way was asked for (the wake → ready histogram). */
  readonly wakeSinceMs: number | null;
}

export interface ControllerDeps {
  readonly configFile: string;
  readonly store: JsonStore;
  readonly fetcher: Fetcher;
  readonly clock: () => number;
  readonly log: Logger;
  /** Undefined: advice mode. */
  readonly pipeline?: Pipeline;
  readonly billing?: BillingReader;
  readonly random?: () => number;
  readonly backoff?: { readonly baseMs: number; readonly maxMs: number };
  /** k8s tier: whether a replica slot's pod exists (its name resolves). @default - DNS */
  readonly resolveHost?: HostResolver;
}

export interface ReplicaStatus {
  readonly node: string;
  readonly healthy: boolean;
  readonly reading?: ReplicaReading;
}

/** What /status reports, and what `npm run hub -- autoscale` reads from it. */
export interface ControllerStatus {
  readonly stack: string;
  readonly mode: "act" | "advice";
  readonly atMs: number;
  readonly deployedNodes: number;
  readonly nodes: { readonly ready: number; readonly starting: number; readonly draining: number };
  readonly replicas: readonly ReplicaStatus[];
  readonly coderRequests?: number;
  readonly signalsUp: boolean;
  readonly decision?: { readonly wantedNodes: number; readonly reason: string; readonly message: string; readonly numbers: Readonly<Record<string, number>> };
  readonly dispatch: ActuatorState & { readonly lastOutcome?: WantOutcome };
  readonly ledger: { readonly month: string; readonly monthToDateUsd: number; readonly nodeSeconds: number; readonly gpuBudgetUsd: number; readonly floorReason?: string; readonly accountMonthToDateUsd?: number };
  readonly pin?: { readonly nodes: number; readonly untilMs: number };
  readonly wakeSinceMs?: number;
}

function asPersisted(v: unknown): PersistedState | undefined {
  if (typeof v !== "object" || v === null) return undefined;
  const s = v as Record<string, unknown>;
  const decision = s.decision as AutoscalerState | undefined;
  const actuator = asActuatorState(s.actuator);
  if (s.version !== 1 || !decision || decision.version !== 1 || typeof decision.wantedNodes !== "number" || !Array.isArray(decision.learned?.startBySlot) || !actuator) return undefined;
  if (s.wakeSinceMs !== null && typeof s.wakeSinceMs !== "number") return undefined;
  return { version: 1, decision, actuator, wakeSinceMs: s.wakeSinceMs as number | null };
}

export const policyFromFile = (file: ControllerFile): PolicyConfig => {
  const { gpuWindows, ...rest } = file.policy;
  return { ...rest, windows: parseWindows(gpuWindows).windows };
};

export class Controller {
  readonly metrics = new ControllerMetrics();
  private file: ControllerFile;
  private state: AutoscalerState;
  private ledger: LedgerState;
  private readonly actuator: Actuator;
  private readonly deltas = new CounterDeltas();
  private wakeSinceMs: number | null;
  private offAnswered = 0;
  private last?: ControllerStatus;
  private lastDecision?: Decision;
  private billingCheckedMs = -Infinity;
  private accountMonthToDateUsd?: number;
  private ticking: Promise<ControllerStatus | undefined> | undefined;
  private tickAgain = false;

  private constructor(
    private readonly deps: ControllerDeps,
    file: ControllerFile,
    persisted: PersistedState | undefined,
    ledger: LedgerState,
  ) {
    this.file = file;
    // A fresh start has no request history: its idle clock starts now, or a running GPU would look idle forever and be let go on the first tick.
    this.state = persisted?.decision ?? { ...initialState(file.replicas.length), lastRequestMs: deps.clock() };
    this.wakeSinceMs = persisted?.wakeSinceMs ?? null;
    this.ledger = ledger;
    this.actuator = new Actuator(deps.pipeline, {
      // A wake's pipeline run holds until vLLM answers; past twice a cold start (and 10 min) the stack is taken not to be coming, and the count may be asked for again.
      catchUpMs: (2 * file.policy.coldStartSeconds + 600) * 1000,
      backoff: deps.backoff,
      random: deps.random,
      events: {
        onAttempt: (request, result, next) => {
          if (result.ok) deps.log.info("dispatch accepted", { nodes: request.nodes, reason: request.reason, decisionId: request.decisionId, status: result.status });
          else {
            this.metrics.dispatchFailures.inc();
            deps.log.warn("dispatch failed; will retry", { nodes: request.nodes, decisionId: request.decisionId, status: result.status, error: result.message, retryAtMs: next, retryInSeconds: next === undefined ? undefined : Math.round((next - deps.clock()) / 1000) });
          }
        },
      },
    }, persisted?.actuator ?? emptyActuatorState());
  }

  /** Reads the config file (required) and what was persisted; a corrupt state or ledger is logged and started afresh, the ledger never below what may have been spent. */
  static async start(deps: ControllerDeps): Promise<Controller> {
    const file = parseControllerFile(fs.readFileSync(deps.configFile, "utf8"));
    const now = deps.clock();
    const stateRead = deps.store.read(STATE_FILE, asPersisted);
    let persisted: PersistedState | undefined;
    if (stateRead.kind === "ok") {
      persisted = stateRead.value;
      if (stateRead.from === "previous") deps.log.warn("state file unreadable; resumed from its previous copy", { problem: stateRead.problem });
    } else if (stateRead.kind === "corrupt") {
      deps.log.error("state file unreadable: learned traffic starts afresh, the view is rebuilt from the config file and live metrics", { problem: stateRead.problem });
      deps.store.quarantine(STATE_FILE, now);
    }
    const ledgerRead = deps.store.read(LEDGER_FILE, asLedger);
    let ledger: LedgerState;
    if (ledgerRead.kind === "ok") {
      ledger = ledgerRead.value;
      // The copy is one tick older: the droplets open in it stay open, so nothing is lost but a tick, which the next observation counts again.
      if (ledgerRead.from === "previous") deps.log.warn("ledger unreadable; resumed from its previous copy (one tick older)", { problem: ledgerRead.problem });
    } else if (ledgerRead.kind === "missing") {
      ledger = emptyLedger(now);
    } else {
      const account = deps.billing ? await deps.billing.monthToDateUsd() : undefined;
      ledger = recoveredLedger(now, ledgerRead.problem, { accountMonthToDateUsd: account, maxNodes: file.policy.maxNodes, nodeHourlyUsd: file.policy.nodeHourlyUsd });
      deps.log.error("ledger unreadable: started again from a bound, so spend is never under-counted", { problem: ledgerRead.problem, floorUsd: ledger.floorUsd, reason: ledger.floorReason });
      deps.store.quarantine(LEDGER_FILE, now);
    }
    const controller = new Controller(deps, file, persisted, ledger);
    controller.metrics.gpuBudget.set(file.policy.gpuBudgetUsd);
    return controller;
  }

  get acting(): boolean {
    return this.actuator.acting;
  }

  status(): ControllerStatus | undefined {
    return this.last;
  }

  /** A request met the off state: answer it, count it as demand, and tick now so it wakes the GPU. */
  answerOff(): OffAnswer {
    this.offAnswered++;
    this.requestTick().catch((err: unknown) => this.deps.log.error("tick failed", { error: errorText(err) }));
    const now = this.deps.clock();
    return offAnswer({
      nowMs: now,
      acting: this.actuator.acting,
      lastReason: this.lastDecision?.reason,
      pin: this.file.pin ?? undefined,
      wakeSinceMs: this.wakeSinceMs ?? this.actuator.outstanding(now, this.file.replicas.length)?.sinceMs,
      coldStartSeconds: this.file.policy.coldStartSeconds,
      monthToDateUsd: monthToDateUsd(this.ledger, now, this.file.policy.nodeHourlyUsd),
      gpuBudgetUsd: this.file.policy.gpuBudgetUsd,
    });
  }

  /** Runs a tick unless one runs already (then one more follows it). */
  requestTick(): Promise<ControllerStatus | undefined> {
    if (this.ticking) {
      this.tickAgain = true;
      return this.ticking;
    }
    this.ticking = (async () => {
      let status: ControllerStatus | undefined;
      try {
        do {
          this.tickAgain = false;
          status = await this.tick();
        } while (this.tickAgain);
      } finally {
        this.ticking = undefined;
      }
      return status;
    })();
    return this.ticking;
  }

  get tickSeconds(): number {
    return this.file.tickSeconds;
  }

  private readFile(): ControllerFile {
    try {
      this.file = parseControllerFile(fs.readFileSync(this.deps.configFile, "utf8"));
      this.metrics.gpuBudget.set(this.file.policy.gpuBudgetUsd);
    } catch (err) {
      // A half-written or bad file: keep the last good one (the deploy writes it whole, so this is rare).
      this.deps.log.error("config file unreadable; keeping the last good one", { file: this.deps.configFile, error: errorText(err) });
    }
    return this.file;
  }

  private async tick(): Promise<ControllerStatus> {
    const { fetcher, clock, log } = this.deps;
    // In the k8s tier only the StatefulSet slots whose pods exist are deployed.
    const file = await withPresentReplicas(this.readFile(), this.deps.resolveHost);
    const policy = policyFromFile(file);
    const now = clock();

    // The gateway's coder counts; requests this controller answered while off are demand too (they cover the first tick after a restart).
    const gateway = await scrape(fetcher, file.gateway.metricsUrl);
    const answered = this.offAnswered;
    this.offAnswered = 0;
    const coderRequests = gateway ? Math.max(this.deltas.next(coderDemandCounters(gateway, file.gateway.coderRouter)), answered) : undefined;

    const replicas: ReplicaStatus[] = await Promise.all(
      file.replicas.map(async (r) => {
        if (!(await healthy(fetcher, r.healthUrl))) return { node: r.node, healthy: false };
        const families = await scrape(fetcher, r.metricsUrl);
        return { node: r.node, healthy: true, reading: families ? replicaReading(families) : undefined };
      }),
    );
    const ready = replicas.filter((r) => r.healthy);
    const readings = ready.every((r) => r.reading) ? ready.map((r) => r.reading!) : undefined;

    // Nodes the deploy dropped but that still answer: draining (they left the routes first).
    const named = new Set(file.replicas.map((r) => r.node));
    const leaving = Object.entries(this.ledger.open).filter(([node]) => !named.has(node));
    const stillAnswering = new Set<string>();
    await Promise.all(leaving.map(async ([node, d]) => (await healthy(fetcher, d.healthUrl)) && stillAnswering.add(node)));

    const deployed = file.replicas.length;
    const outstanding = this.actuator.outstanding(now, deployed);
    // The accepted request that brought the stack to its count, even once the deploy caught up (this tick is when new nodes appear).
    const accepted = this.actuator.snapshot().accepted;
    this.ledger = observeDroplets(this.ledger, {
      nowMs: now,
      deployed: file.replicas.map((r) => ({ node: r.node, healthUrl: r.healthUrl })),
      stillAnswering,
      wakeAcceptedMs: accepted && accepted.request.nodes > 0 && accepted.request.nodes >= deployed ? accepted.acceptedMs : undefined,
      createSeconds: file.timing.createSeconds,
      destroySeconds: file.timing.destroySeconds,
    });
    const spend = monthToDateUsd(this.ledger, now, policy.nodeHourlyUsd);

    const starting = deployed - ready.length + (outstanding && outstanding.nodes > deployed ? outstanding.nodes - deployed : 0);
    const nodes = { ready: ready.length, starting, draining: stillAnswering.size };
    const pin = file.pin ?? undefined;
    const decision = decide(policy, { nowMs: now, nodes, coderRequests, replicas: readings, monthToDateUsd: spend, pin }, this.state);
    this.state = decision.state;
    this.lastDecision = decision;

    if (ready.length > 0 && this.wakeSinceMs !== null) {
      const seconds = (now - this.wakeSinceMs) / 1000;
      this.metrics.wakeReady.observe(seconds);
      log.info("GPU replica ready after wake", { seconds: Math.round(seconds) });
      this.wakeSinceMs = null;
    }

    // A blind tick holds: nothing is asked of the pipeline on metrics that could not be read.
    let outcome: WantOutcome | undefined;
    if (decision.reason !== "hold-metrics-missing") {
      const request: DispatchRequest = { stack: file.stack, nodes: decision.wantedNodes, reason: decision.reason, decisionId: `${new Date(now).toISOString().replace(/[-:.]/g, "")}-${decision.wantedNodes}-${randomBytes(3).toString("hex")}` };
      outcome = this.actuator.want(request, deployed, now);
      if ((outcome === "queued" || outcome === "replaced") && deployed === 0 && ready.length === 0 && decision.wantedNodes > 0) this.wakeSinceMs ??= now;
      if (decision.wantedNodes === 0 && ready.length === 0) this.wakeSinceMs = null;
    }
    await this.actuator.step(clock(), clock);

    const signalsUp = coderRequests !== undefined && (ready.length === 0 || readings !== undefined);
    await this.checkBilling(now, spend);
    this.persist();

    const m = this.metrics;
    m.wantedNodes.set(decision.wantedNodes);
    m.nodes.set({ state: "ready" }, nodes.ready);
    m.nodes.set({ state: "starting" }, nodes.starting);
    m.nodes.set({ state: "draining" }, nodes.draining);
    m.decided(decision.reason);
    m.monthSpend.set(spend);
    m.budgetMaxReplicas.set(budgetReplicaCap(policy, spend));
    m.signalsUp.set(signalsUp ? 1 : 0);
    const snapshot = this.actuator.snapshot();
    m.dispatchPending.set(snapshot.pending && snapshot.pending.failures > 0 ? 1 : 0);

    log.info("decision", {
      stack: file.stack,
      reason: decision.reason,
      wantedNodes: decision.wantedNodes,
      message: decision.message,
      numbers: decision.numbers,
      mode: this.actuator.acting ? "act" : "advice",
      dispatch: outcome ?? "held",
      ...(outcome === "advice" ? { advice: `would ask the pipeline for ${decision.wantedNodes} GPU node(s); no dispatch token is set` } : {}),
    });

    this.last = {
      stack: file.stack,
      mode: this.actuator.acting ? "act" : "advice",
      atMs: now,
      deployedNodes: deployed,
      nodes,
      replicas,
      coderRequests,
      signalsUp,
      decision: { wantedNodes: decision.wantedNodes, reason: decision.reason, message: decision.message, numbers: decision.numbers },
      dispatch: { ...snapshot, lastOutcome: outcome },
      ledger: { month: this.ledger.month, monthToDateUsd: spend, nodeSeconds: monthNodeSeconds(this.ledger, now), gpuBudgetUsd: policy.gpuBudgetUsd, floorReason: this.ledger.floorReason, accountMonthToDateUsd: this.accountMonthToDateUsd },
      pin,
      wakeSinceMs: this.wakeSinceMs ?? undefined,
    };
    return this.last;
  }

  private async checkBilling(now: number, ledgerUsd: number): Promise<void> {
    if (!this.deps.billing || now - this.billingCheckedMs < BILLING_CHECK_MS) return;
    this.billingCheckedMs = now;
    const account = await this.deps.billing.monthToDateUsd();
    if (account === undefined) {
      this.deps.log.warn("billing cross-check: DigitalOcean's month-to-date usage could not be read");
      return;
    }
    this.accountMonthToDateUsd = account;
    // The account's usage includes everything, so it can only be above the GPU's share; below it means the ledger counts more than was billed (it errs that way on purpose).
    this.deps.log.info("billing cross-check", { ledgerGpuUsd: Math.round(ledgerUsd * 100) / 100, accountMonthToDateUsd: account, ledgerAboveAccount: ledgerUsd > account });
  }

  private persist(): void {
    const state: PersistedState = { version: 1, decision: this.state, actuator: this.actuator.snapshot(), wakeSinceMs: this.wakeSinceMs };
    try {
      this.deps.store.write(STATE_FILE, state);
      this.deps.store.write(LEDGER_FILE, this.ledger);
    } catch (err) {
      // A full or read-only disk: keep deciding from memory; the next tick tries again.
      this.deps.log.error("could not persist state and ledger", { dir: this.deps.store.dir, error: errorText(err) });
    }
  }

  /** For tests and /status: the decision input's last reading of the ledger. */
  ledgerSnapshot(): LedgerState {
    return this.ledger;
  }
}
