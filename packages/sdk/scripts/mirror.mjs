// Copies the server's pure learner files into src/engine/mirror/ unchanged, before the SDK is compiled, so the
// SDK's local evaluation runs the very code the server serves with. The list is explicit: add a file here when
// the mirrored files import a new one (its imports resolve against the hand-written modules beside the copies:
// mirror/strategies/*.ts and mirror/errors/*.ts). test/sdk/mirror.test.ts fails when a copy differs from its source.
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const MIRRORED = ['src/learner/model.ts', 'src/learner/policy.ts', 'src/learner/features.ts', 'src/learner/tiers-policy.ts', 'src/learner/tiers-split.ts'];

const sdk = fileURLToPath(new URL('..', import.meta.url));
const repo = join(sdk, '..', '..');

export function mirror() {
  for (const rel of MIRRORED) {
    const from = join(repo, rel);
    const to = join(sdk, 'src', 'engine', 'mirror', rel.replace(/^src\//, ''));
    if (!existsSync(from)) {
      // Installed from a tarball: the copies shipped with it are what it builds from.
      if (existsSync(to)) continue;
      throw new Error(`mirror: ${from} is missing and no copy exists`);
    }
    mkdirSync(dirname(to), { recursive: true });
    copyFileSync(from, to);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) mirror();
