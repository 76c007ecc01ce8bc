/**
 * `npm run docs:cli`: writes docs/cli.md, the CLI reference, from the CLI's own commander definitions
 * (src/cli/program.ts `fullProgram`, rendered by src/cli/reference.ts). `--check`: writes nothing, exits 1 when
 * docs/cli.md differs from what the CLI would give (test/cli/cli-docs.test.ts checks the same).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { fullProgram } from '../src/cli/program.js';
import { renderCliReference } from '../src/cli/reference.js';

const file = fileURLToPath(new URL('../docs/cli.md', import.meta.url));
const text = renderCliReference(await fullProgram());
if (process.argv.includes('--check')) {
  let current = '';
  try {
    current = readFileSync(file, 'utf8');
  } catch {
    // Missing: out of date.
  }
  if (current !== text) {
    process.stderr.write('docs/cli.md is out of date with the CLI: run npm run docs:cli\n');
    process.exit(1);
  }
  process.stdout.write('docs/cli.md is up to date\n');
} else {
  writeFileSync(file, text);
  process.stdout.write('wrote docs/cli.md\n');
}
// The learner's modules (TensorFlow.js) may keep handles open: nothing else is left to do.
process.exit(0);
