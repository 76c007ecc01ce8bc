/**
 * The allocation request's shape, checked as the server's schema checks it (`src/allocation/schema.ts`,
 * AllocationBody), so the SDK's local mode refuses what the server would refuse: a locally answered decision whose
 * record the server then refused would be lost, and its outcome with it. Pure; the field is named as the server
 * names it (`body/<field>`).
 */

const ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const DECISION_ID = /^[0-9a-z]{6,7}-[A-Za-z0-9_-]{8,56}$/;
const FIELDS = new Set(['pipeline', 'unitKey', 'features', 'totalTokens', 'maxCostUsd', 'strategy', 'decisionId']);

/** The first problem of an allocation request, as `body/<field>: <what>`; undefined when it is well formed. */
export function allocationRequestProblem(req: unknown): string | undefined {
  if (typeof req !== 'object' || req === null || Array.isArray(req)) return 'body: must be an object';
  const r = req as Record<string, unknown>;
  for (const k of Object.keys(r)) if (!FIELDS.has(k) && r[k] !== undefined) return `body/${k}: is not an allowed property`;
  if (typeof r.pipeline !== 'string' || !ID.test(r.pipeline)) return 'body/pipeline: must be an id (letters, digits, _ . -, at most 128, starting with a letter or digit)';
  if (r.unitKey !== undefined && (typeof r.unitKey !== 'string' || r.unitKey.length < 1 || r.unitKey.length > 256)) return 'body/unitKey: must be a string of 1 to 256 characters';
  if (r.totalTokens !== undefined && !(Number.isInteger(r.totalTokens) && (r.totalTokens as number) >= 1 && (r.totalTokens as number) <= 100_000_000)) return 'body/totalTokens: must be an integer from 1 to 100000000';
  if (r.maxCostUsd !== undefined && !(typeof r.maxCostUsd === 'number' && Number.isFinite(r.maxCostUsd) && r.maxCostUsd > 0 && r.maxCostUsd <= 1_000_000)) return 'body/maxCostUsd: must be a number above 0 and at most 1000000';
  if (r.strategy !== undefined && (typeof r.strategy !== 'string' || r.strategy.length < 1 || r.strategy.length > 128)) return 'body/strategy: must be a string of 1 to 128 characters';
  if (r.decisionId !== undefined && (typeof r.decisionId !== 'string' || !DECISION_ID.test(r.decisionId))) return 'body/decisionId: must be <epoch second base 36>-<8 to 56 of A-Z a-z 0-9 _ ->';
  if (r.features !== undefined) {
    const f = r.features;
    if (typeof f !== 'object' || f === null || Array.isArray(f)) return 'body/features: must be an object';
    for (const [k, v] of Object.entries(f)) {
      if (k.length > 128) return `body/features/${k.slice(0, 32)}…: a feature name is at most 128 characters`;
      const ok = v === null || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v)) || (typeof v === 'string' && v.length <= 1_000_000);
      if (!ok) return `body/features/${k}: must be a string (at most 1000000 characters), a finite number, a boolean or null`;
    }
  }
  return undefined;
}
