import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';

/**
 * The SDK's local mode runs the server's learner files (model, policy, features, and the tier learner's policy and split) as copies made when the SDK is
 * built (packages/sdk/scripts/mirror.mjs). A copy that differs from its source means the SDK was not rebuilt
 * after a change: local and server answers could then differ.
 */
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

describe('the SDK mirror of the learner files', () => {
  it('holds every listed file, byte for byte as in src/', async () => {
    const { MIRRORED } = (await import(pathToFileURL(join(ROOT, 'packages/sdk/scripts/mirror.mjs')).href)) as { MIRRORED: string[] };
    assert.deepEqual([...MIRRORED].sort(), ['src/learner/features.ts', 'src/learner/model.ts', 'src/learner/policy.ts', 'src/learner/tiers-policy.ts', 'src/learner/tiers-split.ts']);
    for (const rel of MIRRORED) {
      const source = readFileSync(join(ROOT, rel), 'utf8');
      const copy = readFileSync(join(ROOT, 'packages/sdk/src/engine/mirror', rel.replace(/^src\//, '')), 'utf8');
      assert.ok(copy === source, `${rel} differs from its copy in packages/sdk/src/engine/mirror: run npm run build -w @apportion/sdk`);
    }
  });

});
