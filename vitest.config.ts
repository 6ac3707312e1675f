import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['__test__/**/*.spec.ts'],
    setupFiles: ['__test__/helpers/setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Native addons and child processes: separate processes per file are the safe choice.
    pool: 'forks',
  },
})
