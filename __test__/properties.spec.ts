// Property tests (fast-check): any string path either locks or is refused with EINVAL; any JSON
// value round-trips through every cache.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { acquireLock, normalizePath, releaseLock } from '../lib/index.js'
import { BACKENDS, cachesOn, useRedis } from './helpers/backends'

describe.each(BACKENDS)('properties on %s', (backend) => {
  useRedis()
  const open = cachesOn(backend)

  it('any string path either locks (and releases) or is refused with EINVAL', async () => {
    const cache = await open()
    const paths = fc.oneof(fc.string({ unit: 'binary', maxLength: 40 }), fc.string({ maxLength: 5000 }), fc.constantFrom('', '/', '.', '..', 'a\0b', '/x/../../y', 'e\u0301'))
    await fc.assert(
      fc.asyncProperty(paths, async (p) => {
        let normalized: string
        try {
          normalized = await acquireLock(p, 'prop', 'prop-session', cache, { baseDir: '/prop' })
        } catch (e: any) {
          expect(e.code, e.message).toBe('EINVAL')
          return
        }
        expect(normalized.startsWith('/')).toBe(true)
        expect(normalized).toBe(normalizePath(p, '/prop'))
        expect(await releaseLock(normalized, 'prop-session', cache)).toBe(true)
      }),
      { numRuns: 200 },
    )
  })

  it('any JSON value round-trips', async () => {
    const cache = await open()
    await fc.assert(
      fc.asyncProperty(fc.string({ minLength: 1, maxLength: 50 }).filter((k) => !k.includes('\0')), fc.jsonValue(), async (key, value) => {
        await cache.set(key, value)
        expect(await cache.get(key)).toEqual(JSON.parse(JSON.stringify(value)))
      }),
      { numRuns: 200 },
    )
  })
})
