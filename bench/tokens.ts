/**
 * `<x>Text` token counts (packages/sdk/src/engine/tokens.ts): accuracy against the exact o200k_base count, and the
 * time of a count, for generated texts of several families, with the encoding's pre-tokenization pattern installed
 * (the product: only pre-tokens longer than MAX_RUN are cut) against the same encoder without it (the baseline,
 * measured in the same run: runs of non-space characters longer than MAX_RUN cut, as before).
 *
 *   node --import tsx bench/tokens.ts [--texts 40] [--chars 4000] [--seed 1]
 *
 * Prints per family: exact tokens, error of each rule (mean |count − exact| ÷ exact), and the time per count of each
 * rule with their ratio (pattern ÷ runs; > 1 = slower).
 */
import { Tiktoken } from 'js-tiktoken/lite';
import o200kBase from 'js-tiktoken/ranks/o200k_base';
import { countTokens, setTokenEncoder } from '@apportion/sdk/engine';
import { mulberry32 } from '../src/learner/rng.js';
import { flag } from './lib.js';

const texts = Number(flag('texts', '40'));
const chars = Number(flag('chars', '4000'));
const rng = mulberry32(Number(flag('seed', '1')));
const enc = new Tiktoken(o200kBase);
const encode = (s: string) => enc.encode(s).length;
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)]!;
const word = () => pick(['refund', 'invoice', 'customer_id', 'getUser', 'résumé', 'order', '42', 'pipeline', 'orchestrator', 'x']);
const JP = ['吾輩は猫である。', '名前はまだ無い。', 'どこで生れたかとんと見当がつかぬ。', '何でも薄暗いじめじめした所でニャーニャー泣いていた事だけは記憶している。', '注文の返金について問い合わせがありました。'];
const families: Record<string, () => string> = {
  prose: () => Array.from({ length: 12 }, word).join(' ') + '. ',
  url: () => `https://${word()}.example.com/api/v2/${word()}/${Math.floor(rng() * 1e6)}?q=${word()}&page=${Math.floor(rng() * 99)} `,
  code: () => `function ${word()}(a,b){return a.map(x=>x*b+${Math.floor(rng() * 99)}).filter(y=>y%2===0).reduce((s,v)=>s+v,0)};`,
  json: () => JSON.stringify({ id: Math.floor(rng() * 1e9), name: word(), tags: [word(), word()], nested: { ok: rng() < 0.5, score: rng() } }),
  base64: () => Buffer.from(Array.from({ length: 60 }, () => Math.floor(rng() * 256))).toString('base64') + ' ',
  cjk: () => pick(JP),
};

function measure(list: readonly string[], exact: readonly number[]): { err: number; ms: number } {
  let err = 0;
  const t0 = performance.now();
  list.forEach((t, i) => (err += Math.abs(countTokens(t, Number.MAX_SAFE_INTEGER) - exact[i]!) / exact[i]!));
  return { err: err / list.length, ms: (performance.now() - t0) / list.length };
}

console.log(`bench/tokens: ${texts} texts of about ${chars} characters per family; error = mean |count − exact| ÷ exact (o200k_base)`);
console.log('family   exact tokens  error (runs cut)  error (pre-tokens cut)  ms/count runs  ms/count pre-tokens  time ratio');
for (const [name, gen] of Object.entries(families)) {
  const list = Array.from({ length: texts }, () => {
    let s = '';
    while (s.length < chars) s += gen();
    return s;
  });
  const exact = list.map(encode);
  setTokenEncoder(encode); // the baseline: runs of non-space characters cut
  measure(list.slice(0, 3), exact); // warm up
  const runs = measure(list, exact);
  setTokenEncoder(encode, o200kBase.pat_str); // the product
  measure(list.slice(0, 3), exact);
  const pre = measure(list, exact);
  const mean = exact.reduce((s, v) => s + v, 0) / exact.length;
  console.log(
    `${name.padEnd(8)} ${mean.toFixed(0).padStart(12)}  ${(100 * runs.err).toFixed(2).padStart(14)} %  ${(100 * pre.err).toFixed(2).padStart(20)} %  ${runs.ms.toFixed(2).padStart(13)}  ${pre.ms.toFixed(2).padStart(19)}  ${(pre.ms / runs.ms).toFixed(2).padStart(10)}`,
  );
}
