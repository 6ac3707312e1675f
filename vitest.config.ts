import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['__test__/**/*.spec.ts'],
    setupFiles: ['__test__/helpers/setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Native addons and child processes: separate processes per file are the safe choice.
    pool: 'forks',
    // Most files spend their time waiting on real servers and opencode processes, not on a core:
    // three at once on two cores (vitest's default there is one). OFL_TEST_FORKS overrides it.
    poolOptions: { forks: { maxForks: Number(process.env.OFL_TEST_FORKS ?? 3), minForks: 1 } },
  },
})
