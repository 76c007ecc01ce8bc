/**
 * The `<x>Text` encoder the server installs (gpt-tokenizer's o200k_base, `src/strategies/tokens.ts`) against the
 * one it installed before and the SDK's local mode still uses (js-tiktoken's o200k_base), each in fresh child
 * processes, alternating, measured in the same run:
 *
 *   node --import tsx bench/tokenizer.ts [--rounds 3] [--docs 2000] [--chars 4000] [--seed 1]
 *
 * Per round and encoder, a fresh process: the time from the first import to the first count (what the first
 * allocation with a text feature waits for, on the event loop), RSS before and after, then `--docs` distinct generated
 * documents of about `--chars` characters counted through the engine's countTokens (pre-tokens cut, as served):
 * time per count and RSS after them (the merge cache filled with distinct pieces). The counts of both encoders are
 * compared document by document (they must be equal). Prints medians and the ratio server ÷ before (< 1 = less).
 */
import { execFileSync } from 'node:child_process';
import { flag, median, ROOT } from './lib.js';

type Kind = 'gpt-tokenizer' | 'js-tiktoken';
interface ChildResult {
  loadMs: number;
  rssLoadMb: number;
  rssAfterMb: number;
  msPerCount: number;
  counts: number[];
}

async function child(kind: Kind, docs: number, chars: number, seed: number): Promise<void> {
  const { countTokens, setTokenEncoder } = await import('@apportion/sdk/engine');
  const { mulberry32 } = await import('../src/learner/rng.js');
  const rss0 = process.memoryUsage().rss;
  const t0 = performance.now();
  if (kind === 'gpt-tokenizer') {
    // Exactly what the server installs.
    const { loadTokenizer } = await import('../src/strategies/tokens.js');
    await loadTokenizer();
  } else {
    const [{ Tiktoken }, ranks] = await Promise.all([import('js-tiktoken/lite'), import('js-tiktoken/ranks/o200k_base')]);
    const enc = new Tiktoken(ranks.default);
    setTokenEncoder((text) => enc.encode(text, [], []).length, ranks.default.pat_str);
  }
  countTokens('warm up');
  const loadMs = performance.now() - t0;
  const rssLoad = process.memoryUsage().rss;
  const rng = mulberry32(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)]!;
  const word = () => `${pick(['refund', 'invoice', 'customer_id', 'getUser', 'résumé', 'order', 'pipeline', 'x', '数学', 'データ', '<|endoftext|>'])}${Math.floor(rng() * 1e5)}`;
  const texts = Array.from({ length: docs }, () => {
    let s = '';
    while (s.length < chars) s += `${word()}${pick([' ', ', ', '. ', '\n', '/', '(', ') '])}`;
    return s;
  });
  const t1 = performance.now();
  const counts = texts.map((t) => countTokens(t, Number.MAX_SAFE_INTEGER));
  const msPerCount = (performance.now() - t1) / docs;
  global.gc?.();
  const out: ChildResult = {
    loadMs,
    rssLoadMb: (rssLoad - rss0) / 2 ** 20,
    rssAfterMb: (process.memoryUsage().rss - rss0) / 2 ** 20,
    msPerCount,
    counts,
  };
  process.stdout.write(JSON.stringify(out));
}

const kindArg = flag('child', '');
const docs = Number(flag('docs', '2000'));
const chars = Number(flag('chars', '4000'));
const seed = Number(flag('seed', '1'));
if (kindArg) {
  await child(kindArg as Kind, docs, chars, seed);
} else {
  const rounds = Number(flag('rounds', '3'));
  const runs: Record<Kind, ChildResult[]> = { 'gpt-tokenizer': [], 'js-tiktoken': [] };
  let mismatches = 0;
  for (let r = 0; r < rounds; r++) {
    const order: Kind[] = r % 2 === 0 ? ['gpt-tokenizer', 'js-tiktoken'] : ['js-tiktoken', 'gpt-tokenizer'];
    for (const kind of order) {
      const out = execFileSync(
        process.execPath,
        ['--expose-gc', '--import', 'tsx', 'bench/tokenizer.ts', '--child', kind, '--docs', String(docs), '--chars', String(chars), '--seed', String(seed + r)],
        { cwd: ROOT, maxBuffer: 64 * 2 ** 20 },
      );
      runs[kind].push(JSON.parse(out.toString()) as ChildResult);
    }
    const a = runs['gpt-tokenizer'][r]!.counts;
    const b = runs['js-tiktoken'][r]!.counts;
    mismatches += a.filter((n, i) => n !== b[i]).length;
  }
  console.log(`bench/tokenizer: ${rounds} rounds, fresh process per encoder and round; ${docs} distinct documents of ~${chars} characters each`);
  console.log('measure                         gpt-tokenizer (server)   js-tiktoken (before)   ratio');
  const row = (label: string, key: keyof Omit<ChildResult, 'counts'>, unit: string) => {
    const g = median(runs['gpt-tokenizer'].map((x) => x[key]));
    const t = median(runs['js-tiktoken'].map((x) => x[key]));
    console.log(`${label.padEnd(31)} ${`${g.toFixed(2)} ${unit}`.padStart(22)}   ${`${t.toFixed(2)} ${unit}`.padStart(20)}   ${(g / t).toFixed(2).padStart(5)}`);
  };
  row('first count (load + build)', 'loadMs', 'ms');
  row('RSS after load', 'rssLoadMb', 'MB');
  row('RSS after the documents', 'rssAfterMb', 'MB');
  row('time per document', 'msPerCount', 'ms');
  console.log(`counts that differ: ${mismatches} of ${rounds * docs}`);
}
