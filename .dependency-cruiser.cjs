/**
 * Import boundaries of src/ (`npm run lint:deps`, run by `npm run lint` and so by .ci/run). See
 * docs/architecture.md, "Domains and the direction of their imports". Type-only imports count like any other
 * (the swc parser keeps `import type`): a cycle through types is still a cycle.
 * @type {import('dependency-cruiser').IConfiguration}
 */
module.exports = {
  forbidden: [
    {
      name: 'no-folder-cycle',
      severity: 'error',
      comment:
        'Folders of src/ (domains and infrastructure) import each other in one direction only: a folder that is ' +
        'imported by another must not import it back, directly or through others. Move the shared contract to ' +
        'src/kernel/ or ask the other domain through a service it is handed.',
      scope: 'folder',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'no-module-cycle',
      severity: 'error',
      comment: 'No module of src/ reaches itself through its imports.',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'kernel-imports-no-domain',
      severity: 'error',
      comment:
        'src/kernel/ holds the extension points the domains implement; it may name the shared documents ' +
        '(pipelines), the control-plane view, redis keys and the engine types, never a domain service.',
      from: { path: '^src/kernel/' },
      to: { path: '^src/(allocation|budgets|cli|console|costs|feedback|learner|rollout|strategies|sync|tenancy)/|^src/[^/]+\\.ts$' },
    },
    {
      name: 'no-core-locator',
      severity: 'error',
      comment:
        'A domain is given only the shared services it declares (Services, src/kernel/module.ts), built by ' +
        'src/modules.ts; it never names the whole Core (src/kernel/core.ts), so Core cannot become a service ' +
        'locator again. A domain that needs another domain\'s data is handed that domain\'s service.',
      from: { path: '^src/(allocation|budgets|console|costs|feedback|learner|pipelines|rollout|strategies|sync|tenancy)/' },
      to: { path: '^src/kernel/core[.]ts$' },
    },
    {
      name: 'no-foreign-keys',
      severity: 'error',
      comment:
        'A domain\'s key layout (src/<domain>/keys.ts) is its own: another domain asks its service for the data, ' +
        'never builds its Redis keys.',
      from: { path: '^src/([^/]+)/' },
      to: { path: '^src/[^/]+/keys[.]ts$', pathNot: ['^src/$1/', '^src/redis/'] },
    },
    {
      name: 'infrastructure-imports-no-domain',
      severity: 'error',
      comment:
        'Infrastructure folders (config, control, errors, http, observability, redis, stats) sit below every domain.',
      from: { path: '^src/(config|control|errors|http|observability|redis|stats)/' },
      to: { path: '^src/(allocation|budgets|cli|console|costs|feedback|learner|pipelines|rollout|strategies|sync|tenancy|kernel)/|^src/[^/]+\\.ts$' },
    },
    {
      name: 'composition-root-on-top',
      severity: 'error',
      comment:
        'src/app.ts, src/server.ts and src/modules.ts wire every domain together: only the CLI (src/cli/) and ' +
        'each other import them, so no domain depends on the whole.',
      from: { path: '^src/', pathNot: '^src/cli/|^src/(app|server|modules)[.]ts$' },
      to: { path: '^src/(app|server|modules)[.]ts$' },
    },
    {
      name: 'runtime-imports-no-domain',
      severity: 'error',
      comment:
        'src/runtime.ts creates the shared services (Core, src/kernel/core.ts) every domain builds on: it imports ' +
        'infrastructure and the kernel only, and domains register their strategy kinds through ModuleParts.',
      from: { path: '^src/runtime[.]ts$' },
      to: { path: '^src/(allocation|budgets|cli|console|costs|feedback|learner|pipelines|rollout|strategies|sync|tenancy)/' },
    },
  ],
  options: {
    // TypeScript 7 has no compiler API for dependency-cruiser to use: swc parses the sources (it keeps type imports).
    parser: 'swc',
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^src/console/web/' },
  },
};
