/** Reading the README's commands and the answers it quotes (for test/integration/readme.test.ts). */

export interface ReadmeCommand {
  readonly text: string;
  /** The `# → …` comment after it: values the README says the answer holds. */
  readonly expect?: string;
}

/** The README's commands between two headings, in document order. */
export function readmeCommands(readme: string, from = '## Walk-through', to = '## Configuration'): ReadmeCommand[] {
  const body = readme.slice(readme.indexOf(from), readme.indexOf(to));
  const found: { at: number; cmd: ReadmeCommand }[] = [];
  for (const block of body.matchAll(/```sh\n([\s\S]*?)```/g)) {
    const lines = block[1]!.split('\n');
    let cur: string[] = [];
    let last: { text: string; expect?: string } | undefined;
    for (const line of lines) {
      if (cur.length === 0) {
        if (line.trim() === '') continue;
        if (line.startsWith('#')) {
          if (last && (line.startsWith('# →') || last.expect !== undefined)) last.expect = `${last.expect ?? ''}${line.replace(/^#\s?(→)?/, '')}\n`;
          continue;
        }
      }
      cur.push(line);
      const text = cur.join('\n');
      if ((text.match(/'/g) ?? []).length % 2 === 0 && !line.endsWith('\\')) {
        last = { text };
        found.push({ at: block.index! + found.length, cmd: last });
        cur = [];
      }
    }
  }
  // CLI commands named in the prose (runnable ones: no placeholder such as FILE, <id> or alternatives a|b).
  const prose = body.replace(/```sh\n[\s\S]*?```/g, (m) => ' '.repeat(m.length));
  for (const m of prose.matchAll(/`(npx apportion [^`]+)`/g)) {
    if (/FILE|<|…|\|/.test(m[1]!)) continue;
    found.push({ at: m.index!, cmd: { text: m[1]! } });
  }
  return found.sort((a, b) => a.at - b.at).map((f) => f.cmd);
}

/** `"key": value` pairs with a concrete value in a quoted answer (`…` and nested objects are skipped). */
export function quotedValues(expect: string): [string, string | number][] {
  const out: [string, string | number][] = [];
  for (const m of expect.matchAll(/"(\w+)":\s*("[^"…]*"|-?\d+(?:\.\d+)?)(?=\s*[,}\s])/g)) {
    out.push([m[1]!, m[2]!.startsWith('"') ? m[2]!.slice(1, -1) : Number(m[2])]);
  }
  return out;
}

function decimals(n: number): number {
  const s = String(n);
  return s.includes('.') ? s.length - s.indexOf('.') - 1 : 0;
}

/** Does the answer hold `key` with `value` somewhere (numbers compared at the README's precision)? */
export function holds(answer: unknown, key: string, value: string | number): boolean {
  if (Array.isArray(answer)) return answer.some((a) => holds(a, key, value));
  if (answer === null || typeof answer !== 'object') return false;
  for (const [k, v] of Object.entries(answer)) {
    if (k === key && (typeof value === 'number' ? typeof v === 'number' && Number(v.toFixed(decimals(value))) === value : v === value)) return true;
    if (holds(v, key, value)) return true;
  }
  return false;
}

