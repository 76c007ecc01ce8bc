import type { Core } from '../runtime.js';
import { controlStrategyDef } from './control-arm.js';
import { rewardOf, type LoggedEvent } from './events.js';
import { addReward, EMPTY_ARM, GUARD_DEFAULTS, guardVerdict, lastGoodVersion, type ArmSums, type GuardRevert, type GuardVerdict } from './guard.js';
import { servingModel, type LearnedParams } from './kind.js';
import { learnerKeys } from './keys.js';
import type { ModelRegistry } from './registry.js';
import { learnedStrategies } from './training.js';

/** Buffer entries read per page, and at most this many per check (the first check of a version reads back this far). */
const PAGE = 500;
const MAX_SCAN = 20_000;

export interface GuardCheck {
  readonly pipeline: string;
  readonly version: number;
  readonly verdict: GuardVerdict;
  /** Set when this check reverted the version. */
  readonly revert?: GuardRevert;
}

interface State {
  readonly v: number;
  readonly since: number;
  readonly marker: string;
  readonly learned: ArmSums;
  readonly control: ArmSums;
}

/**
 * The runtime guard's loop (runs in the worker's learner tick, after ingest): for the serving model version,
 * sums the realised rewards of the learned and control arms of its decisions made since it (last) became the
 * serving version, from the training buffer's new entries (outcomes and default rewards alike), and reverts
 * it when guard.ts says it is worse. State per pipeline in a hash of its slot; a new serving version starts
 * from zero. Checks of one pipeline must not run concurrently (the tick job runs one at a time).
 */
export class GuardMonitor {
  constructor(
    private readonly core: Core,
    private readonly registry: ModelRegistry,
  ) {}

  private key(pipeline: string): string {
    return this.core.keys.pipeline(pipeline, 'learner', 'guard');
  }

  async check(pipelineId: string): Promise<GuardCheck | undefined> {
    const view = this.core.view();
    const pipeline = view.pipelines.get(pipelineId);
    if (!pipeline) return undefined;
    const strategies = learnedStrategies(view, pipeline);
    const first = strategies[0];
    if (!first) return undefined;
    const params = first.params as LearnedParams;
    const doc = this.registry.doc(pipelineId);
    const active = doc?.active ?? 0;
    // Version 0 is not a trained model (the prior, or the control after a revert to it): nothing to guard.
    if (!doc || active === 0 || servingModel(view, pipeline).version !== active) return undefined;
    const learnedIds = new Set(strategies.map((s) => s.id));
    const costWeight = params.costWeight ?? 0;

    let st = await this.load(pipelineId);
    if (st.v !== active || st.since !== doc.activatedAt) st = { v: active, since: doc.activatedAt, marker: '', learned: EMPTY_ARM, control: EMPTY_ARM };
    const buffer = learnerKeys(this.core.keys, pipelineId).buffer;
    let newest = '';
    let { learned, control } = st;
    scan: for (let off = 0; off < MAX_SCAN; off += PAGE) {
      const page = await this.core.redis.lrange(buffer, off, off + PAGE - 1);
      for (const raw of page) {
        const e = JSON.parse(raw) as LoggedEvent;
        if (!newest) newest = e.id;
        if (e.id === st.marker) break scan;
        if (e.m !== active || e.a === undefined || e.t < doc.activatedAt || !learnedIds.has(e.s)) continue;
        const r = rewardOf(e, costWeight);
        if (e.a === 1) control = addReward(control, r);
        else learned = addReward(learned, r);
      }
      if (page.length < PAGE) break;
    }
    const verdict = guardVerdict(learned, control, { alpha: params.guardAlpha ?? GUARD_DEFAULTS.alpha, margin: params.guardMargin ?? GUARD_DEFAULTS.margin });
    await this.save(pipelineId, { ...st, marker: newest || st.marker, learned, control });
    if (verdict.status !== 'worse') return { pipeline: pipelineId, version: active, verdict };

    // Revert: to the newest earlier version that served and was never reverted, if it fits the current
    // features and agents; else to the control strategy.
    const signature = servingModel(view, pipeline).encoder.signature;
    const agents = pipeline.agents.map((a) => a.name).join(',');
    const to = lastGoodVersion(
      doc.versions.filter((v) => v.signature === signature && v.agents.join(',') === agents),
      active,
    );
    const record: GuardRevert = {
      from: active,
      to,
      at: Date.now(),
      diff: verdict.diff!,
      ci: verdict.ci!,
      learned: verdict.learned,
      control: { ...verdict.control, strategy: controlStrategyDef(view, pipeline).id },
    };
    const outcomes = Number((await this.core.redis.hget(learnerKeys(this.core.keys, pipelineId).counters, 'outcomes')) ?? 0);
    const done = await this.registry.revert(pipelineId, record, outcomes + (params.guardHoldOutcomes ?? GUARD_DEFAULTS.holdOutcomes));
    if (!done) return { pipeline: pipelineId, version: active, verdict };
    this.core.metrics.learnerGuardReverts.inc({ to: to > 0 ? 'version' : 'control' });
    this.core.log.warn({ pipeline: pipelineId, ...record }, `learner guard: model ${active} is worse than the control strategy; reverted to ${to > 0 ? `version ${to}` : 'the control strategy'}`);
    await this.core.redis.del(this.key(pipelineId));
    return { pipeline: pipelineId, version: active, verdict, revert: record };
  }

  private async load(pipeline: string): Promise<State> {
    const h = await this.core.redis.hgetall(this.key(pipeline));
    const n = (k: string) => Number(h[k] ?? 0);
    return {
      v: n('v'),
      since: n('since'),
      marker: h.marker ?? '',
      learned: { n: n('ln'), sum: n('ls'), sumSq: n('lss') },
      control: { n: n('cn'), sum: n('cs'), sumSq: n('css') },
    };
  }

  private async save(pipeline: string, s: State): Promise<void> {
    await this.core.redis.hset(this.key(pipeline), {
      v: s.v,
      since: s.since,
      marker: s.marker,
      ln: s.learned.n,
      ls: s.learned.sum,
      lss: s.learned.sumSq,
      cn: s.control.n,
      cs: s.control.sum,
      css: s.control.sumSq,
    });
  }
}
