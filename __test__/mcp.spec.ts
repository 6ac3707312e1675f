// `opencode-file-lock mcp`, the lock table for any MCP client, driven by the official SDK's client
// over stdio (a real child process) and by the real Claude Code (--mcp-config): claim, list,
// conflict, release, check, bad input; claims live in the same table as every other lock.
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js'
import { acquireLock, getLock, openCache } from '../lib/index.js'
import { call, claudeEnv, claudeProject, runClaude, startFakeApi, type FakeApi } from './helpers/claude'
import { sleep, tmpDir } from './helpers/tmp'

vi.setConfig({ testTimeout: 60_000 })
const BIN = path.resolve(__dirname, '../bin/opencode-file-lock.js')

async function connect(store: string, name = 'test-client', cwd = process.cwd()) {
  const transport = new StdioClientTransport({ command: process.execPath, args: [BIN, 'mcp'], cwd, env: { ...(process.env as Record<string, string>), FILE_LOCK_CACHE_BACKEND: 'sled', FILE_LOCK_PATH: store }, stderr: 'pipe' })
  const client = new Client({ name, version: '1.0.0' })
  await client.connect(transport)
  return client
}
const textOf = (r: any) => (r.content ?? []).map((c: any) => c.text).join('\n')

describe('the MCP server over stdio, from the official SDK client', () => {
  it('lists its tools; claims with a reason and a TTL, shows them to everyone, refuses a conflicting claim naming the holder, releases', async () => {
    const store = tmpDir('ofl-mcp-')
    const dir = fs.realpathSync(tmpDir('ofl-mcp-project-'))
    const a = await connect(store, 'cursor', dir)
    const b = await connect(store, 'gemini-cli', dir)
    try {
      const tools = (await a.listTools()).tools.map((t) => t.name).sort()
      expect(tools).toEqual(['check_file', 'claim_files', 'list_locks', 'release_files'])

      const claimed: any = await a.callTool({ name: 'claim_files', arguments: { paths: ['src/'], reason: 'moving the parser', ttl_minutes: 30 } })
      expect(claimed.isError).toBeFalsy()
      expect(textOf(claimed)).toContain(`Claimed ${dir}/src/ for 30 minutes (reason: “moving the parser”)`)

      const listed: any = await b.callTool({ name: 'list_locks', arguments: {} })
      expect(textOf(listed)).toMatch(new RegExp(`${dir}/src/ \\(claim: the folder and everything in it\\): held by agent cursor@\\S+ \\(session mcp:cursor:[^)]*\\) \\[mcp:cursor\\], for this reason: “moving the parser”`))
      expect(listed.structuredContent.locks[0]).toMatchObject({ kind: 'mcp:cursor', reason: 'moving the parser', claim: true })

      const conflict: any = await b.callTool({ name: 'claim_files', arguments: { paths: ['src/parser.ts'] } })
      expect(conflict.isError).toBe(true)
      expect(textOf(conflict)).toMatch(/locked by another agent/)
      expect(textOf(conflict)).toContain('mcp:cursor')

      const check: any = await b.callTool({ name: 'check_file', arguments: { path: 'src/parser.ts' } })
      expect(textOf(check)).toMatch(/may not be written now: it is held by agent cursor@\S+ .*for this reason: “moving the parser” \(through .*\/src\/\)/)
      expect(check.structuredContent.writable).toBe(false)

      // the same table: a library caller (an opencode session) is refused there too
      const cache = await openCache({ backend: 'sled', path: store })
      try {
        const e: any = await acquireLock(path.join(dir, 'src/parser.ts'), 'opencode', 'ses_oc', cache).catch((e) => e)
        expect(e.code).toBe('ELOCKED')
        expect(e.message).toContain('moving the parser')
      } finally {
        await cache.close()
      }

      const released: any = await a.callTool({ name: 'release_files', arguments: { paths: ['src/'] } })
      expect(textOf(released)).toContain(`Released ${dir}/src/.`)
      const free: any = await b.callTool({ name: 'check_file', arguments: { path: 'src/parser.ts' } })
      expect(free.structuredContent.writable).toBe(true)
    } finally {
      await a.close()
      await b.close()
    }
  })

  it('bad input is a tool error with a clear message, and the server goes on serving', async () => {
    const store = tmpDir('ofl-mcp-')
    const c = await connect(store)
    try {
      const cases: [string, Record<string, unknown>][] = [
        ['claim_files', { paths: [] }],
        ['claim_files', { paths: 'src/' }],
        ['claim_files', { paths: ['a'], ttl_minutes: -5 }],
        ['claim_files', { paths: ['a\u0000b'] }],
        ['check_file', {}],
        ['release_files', { paths: [42] }],
      ]
      for (const [name, args] of cases) {
        const r: any = await c.callTool({ name, arguments: args }).catch((e) => ({ isError: true, content: [{ text: String(e?.message ?? e) }] }))
        expect(r.isError, `${name} ${JSON.stringify(args)}`).toBe(true)
        expect(textOf(r).length).toBeGreaterThan(0)
      }
      const unknown: any = await c.callTool({ name: 'no_such_tool', arguments: {} }).catch((e) => ({ isError: true, content: [{ text: String(e?.message ?? e) }] }))
      expect(unknown.isError).toBe(true)
      const ok: any = await c.callTool({ name: 'list_locks', arguments: {} })
      expect(textOf(ok)).toBe('No locks are held.')
    } finally {
      await c.close()
    }
  })

  it('a client that goes away takes its claims with it', async () => {
    const store = tmpDir('ofl-mcp-')
    const dir = fs.realpathSync(tmpDir('ofl-mcp-project-'))
    const c = await connect(store, 'codex', dir)
    await c.callTool({ name: 'claim_files', arguments: { paths: ['x.ts'], reason: 'r' } })
    await c.close()
    const cache = await openCache({ backend: 'sled', path: store })
    try {
      let left: unknown = true
      for (let i = 0; i < 50 && left; i++) {
        left = await getLock(path.join(dir, 'x.ts'), cache)
        if (left) await sleep(100)
      }
      expect(left).toBeUndefined()
    } finally {
      await cache.close()
    }
  })
})

describe('the MCP server from the real Claude Code', () => {
  let api: FakeApi
  beforeAll(async () => {
    api = await startFakeApi()
  })
  afterAll(() => api?.stop())

  it('claude --mcp-config: claim_files and list_locks run, and a claim another session holds is refused naming it', async () => {
    const store = tmpDir('ofl-mcp-claude-')
    const project = claudeProject({ 'a.ts': 'a\n' })
    const cache = await openCache({ backend: 'sled', path: store })
    await acquireLock(path.join(project, 'b.ts'), 'opencode', 'ses_other', cache, { title: 'Refactor b', kind: 'opencode' } as any)
    await cache.close()
    const config = path.join(tmpDir('ofl-mcp-config-'), 'mcp.json')
    fs.writeFileSync(config, JSON.stringify({ mcpServers: { locks: { type: 'stdio', command: process.execPath, args: [BIN, 'mcp'], env: { FILE_LOCK_CACHE_BACKEND: 'sled', FILE_LOCK_PATH: store } } } }))
    const env = claudeEnv(api, tmpDir('ofl-mcp-home-'), { FILE_LOCK_CACHE_BACKEND: 'sled', FILE_LOCK_PATH: store })
    const run = await runClaude(project, [call('mcp__locks__claim_files', { paths: ['a.ts'], reason: 'claude claims a' }), call('mcp__locks__list_locks', {}), call('mcp__locks__claim_files', { paths: ['b.ts'] }), 'FINAL done'].join('\n'), env, ['--mcp-config', config, '--strict-mcp-config'])
    expect(run.tools.map((t) => t.name)).toEqual(['mcp__locks__claim_files', 'mcp__locks__list_locks', 'mcp__locks__claim_files'])
    expect(run.tools[0].error, run.tools[0].text).toBe(false)
    expect(run.tools[0].text).toContain(`Claimed ${project}/a.ts`)
    expect(run.tools[1].text).toMatch(/a\.ts: held by agent claude-code@\S+ \(session mcp:claude-code:[^)]*\) \[mcp:claude-code\], for this reason: “claude claims a”/)
    expect(run.tools[1].text).toMatch(/b\.ts: held by agent opencode \(session ses_other, “Refactor b”\)/)
    expect(run.tools[2].error).toBe(true)
    expect(run.tools[2].text).toContain('ses_other')
  })
})

