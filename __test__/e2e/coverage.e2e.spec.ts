// End to end in the real opencode 1.18.33: every way a file is written is locked, or refused, or
// reported. apply_patch headers with odd spacing, a subagent writing its parent's file in turn
// scope, an MCP server's write_file (directly and through code mode), a tool that writes without
// naming a file, a bash command that rewrites a held file, background subagents, and the toasts
// the person at the keyboard sees.
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { acquireLock, releaseLock, SledCache, type Cache } from '../../lib/index.js'
import { tmpDir } from '../helpers/tmp'
import { makeProject, run, serve, startHarness, toolResults, waitForGate, type Harness } from './opencode'

vi.setConfig({ testTimeout: 120_000, hookTimeout: 180_000 })

const script = (...lines: string[]) => ['scripted turn', ...lines].join('\n')
const call = (tool: string, args: unknown) => `CALL ${tool} ${JSON.stringify(args)}`
const read = (dir: string, file: string) => (fs.existsSync(path.join(dir, file)) ? fs.readFileSync(path.join(dir, file), 'utf8') : undefined)
const NO_WAIT = { FILE_LOCK_WAIT_MS: '0' }

let h: Harness
let folder: string // the sled folder these scenarios share with the test
let store: Cache // the test's own view of it: "another agent" holds files through it
const env = () => ({ FILE_LOCK_PATH: folder })

/** An MCP server (stdio) with a write_file tool, as filesystem servers have. */
const MCP_SERVER = `
import readline from 'node:readline'; import fs from 'node:fs'; import path from 'node:path'
const out = (o) => process.stdout.write(JSON.stringify(o) + '\\n')
readline.createInterface({ input: process.stdin }).on('line', (l) => {
  let m; try { m = JSON.parse(l) } catch { return }
  if (m.id === undefined) return
  if (m.method === 'initialize') return out({ jsonrpc: '2.0', id: m.id, result: { protocolVersion: m.params?.protocolVersion ?? '2025-06-18', capabilities: { tools: {} }, serverInfo: { name: 'demo', version: '1' } } })
  if (m.method === 'tools/list') return out({ jsonrpc: '2.0', id: m.id, result: { tools: [
    { name: 'write_file', description: 'Write a file', inputSchema: { type: 'object', properties: { path: { type: 'string' }, content: { type: 'string' } }, required: ['path', 'content'] } },
    { name: 'read_file', description: 'Read a file', inputSchema: { type: 'object', properties: { path: { type: 'string' } }, required: ['path'] } } ] } })
  if (m.method === 'tools/call') {
    const a = m.params.arguments ?? {}
    if (m.params.name === 'write_file') fs.writeFileSync(path.resolve(process.cwd(), a.path), a.content)
    return out({ jsonrpc: '2.0', id: m.id, result: { content: [{ type: 'text', text: m.params.name + ' ok' }] } })
  }
  out({ jsonrpc: '2.0', id: m.id, result: {} })
})
`

/** A custom tool whose name says it writes, with no argument naming a file. */
const UPDATE_NOTES_TOOL = `
import { tool } from '@opencode-ai/plugin'
import fs from 'node:fs'
import path from 'node:path'
export default tool({
  description: 'Append to the project notes (test tool)',
  args: { text: tool.schema.string() },
  async execute(args, ctx) {
    fs.appendFileSync(path.join(ctx.directory, 'NOTES.md'), args.text + '\\n')
    return 'noted'
  },
})
`

/** A project with the MCP demo server and the update_notes tool. */
function project(name: string): string {
  const dir = makeProject(h, name)
  fs.writeFileSync(path.join(dir, 'mcp-demo.mjs'), MCP_SERVER)
  fs.writeFileSync(path.join(dir, '.opencode/tool/update_notes.ts'), UPDATE_NOTES_TOOL)
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'opencode.json'), 'utf8'))
  cfg.mcp = { demo: { type: 'local', command: [process.execPath, path.join(dir, 'mcp-demo.mjs')] } }
  fs.writeFileSync(path.join(dir, 'opencode.json'), JSON.stringify(cfg))
  return dir
}

beforeAll(async () => {
  h = await startHarness()
  folder = path.join(tmpDir('ofl-cov-'), 'locks')
  store = await SledCache.open({ path: folder, namespace: 'locks' })
}, 180_000)

afterAll(async () => {
  await store?.close()
  await h?.stop()
})

describe('apply_patch: every header opencode accepts is locked, with its spacing', () => {
  it('Add with tabs, Update without a space, Delete with two, a Move: each file is locked (a held one refuses the patch), and with none held the patch applies', async () => {
    const dir = project('patch-spacing')
    const real = fs.realpathSync(dir)
    fs.mkdirSync(path.join(dir, 'src'))
    fs.writeFileSync(path.join(dir, 'src/a.ts'), 'old a\n')
    fs.writeFileSync(path.join(dir, 'del.txt'), 'delete me\n')
    fs.writeFileSync(path.join(dir, 'mv.txt'), 'move me\n')
    const patch = [
      '*** Begin Patch',
      '*** Add File:\tadded.txt \t',
      '+added',
      '*** Update File:src/a.ts',
      '@@',
      '-old a',
      '+new a',
      '*** Delete File:  del.txt',
      '*** Update File: mv.txt',
      '*** Move to:moved.txt  ',
      '@@',
      '-move me',
      '+moved',
      '*** End Patch',
    ].join('\n')
    const apply = () => run(h, dir, script(call('apply_patch', { patchText: patch }), 'FINAL patched'), { model: 'mock/gpt-5-mock', env: { ...env(), ...NO_WAIT } })
    for (const file of ['added.txt', 'src/a.ts', 'del.txt', 'mv.txt', 'moved.txt']) {
      const held = await acquireLock(path.join(real, file), 'someone-else', 'ses_other', store)
      const [r] = toolResults(await apply())
      expect(r, file).toMatchObject({ tool: 'apply_patch', status: 'error' })
      expect(r.text, file).toContain(`File ${held} is locked by another agent: agent someone-else (session ses_other)`)
      expect([read(dir, 'added.txt'), read(dir, 'src/a.ts'), read(dir, 'moved.txt')], file).toEqual([undefined, 'old a\n', undefined])
      await releaseLock(held, 'ses_other', store)
    }
    const [ok] = toolResults(await apply())
    expect(ok).toMatchObject({ tool: 'apply_patch', status: 'completed' })
    expect([read(dir, 'added.txt'), read(dir, 'src/a.ts'), read(dir, 'del.txt'), read(dir, 'moved.txt'), read(dir, 'mv.txt')]).toEqual(['added\n', 'new a\n', undefined, 'moved\n', undefined])
  })
})

describe('tools from elsewhere', () => {
  it("an MCP server's write_file is locked, directly and from code mode's execute; a tool that writes without naming a file is refused, saying how to configure it", async () => {
    const dir = project('mcp')
    const held = await acquireLock(path.join(fs.realpathSync(dir), 'm.txt'), 'someone-else', 'ses_other', store)
    try {
      const direct = await run(h, dir, script(call('demo_write_file', { path: 'm.txt', content: 'direct' }), call('demo_write_file', { path: 'free.txt', content: 'free' }), 'FINAL done'), { env: { ...env(), ...NO_WAIT } })
      const [refused, free] = toolResults(direct)
      expect(refused).toMatchObject({ tool: 'demo_write_file', status: 'error' })
      expect(refused.text).toMatch(/File .*m\.txt is locked by another agent: agent someone-else \(session ses_other\)/)
      expect(free).toMatchObject({ tool: 'demo_write_file', status: 'completed' })
      expect([read(dir, 'm.txt'), read(dir, 'free.txt')]).toEqual([undefined, 'free'])

      const code = "const r = await tools.demo.write_file({ path: 'm.txt', content: 'code mode' }); return r"
      const viaCode = await run(h, dir, script(call('execute', { code }), 'FINAL done'), { env: { ...env(), ...NO_WAIT, OPENCODE_EXPERIMENTAL_CODE_MODE: 'true' } })
      const [ex] = toolResults(viaCode)
      expect(ex.tool).toBe('execute')
      expect(ex.text).toMatch(/locked by another agent/)
      expect(read(dir, 'm.txt')).toBeUndefined()

      const notes = await run(h, dir, script(call('update_notes', { text: 'hello' }), 'FINAL done'), { env: { ...env(), ...NO_WAIT } })
      const [n] = toolResults(notes)
      expect(n).toMatchObject({ tool: 'update_notes', status: 'error' })
      expect(n.text).toContain('opencode-file-lock refused this update_notes call: it is a tool that writes files, but none of its arguments (text) names a file it can lock')
      expect(n.text).toContain('FILE_LOCK_TOOLS="-update_notes"')
      expect(read(dir, 'NOTES.md')).toBeUndefined()
      // configured as not writing files, it runs
      const allowed = await run(h, dir, script(call('update_notes', { text: 'hello' }), 'FINAL done'), { env: { ...env(), ...NO_WAIT, FILE_LOCK_TOOLS: '-update_notes' } })
      expect(toolResults(allowed)).toMatchObject([{ tool: 'update_notes', status: 'completed' }])
    } finally {
      await releaseLock(held, 'ses_other', store)
    }
  })
})

describe('opencode serve: task trees, bash, toasts', () => {
  it("turn scope: a subagent writes the file its parent holds; another session is refused, naming the parent's session as opencode knows it", async () => {
    const dir = project('subagent')
    const oc = await serve(h, dir, { ...env(), ...NO_WAIT, FILE_LOCK_SCOPE: 'turn' })
    try {
      const parent = (await oc.client.session.create({ body: { title: 'Parent task' } })).data!.id
      const other = (await oc.client.session.create({ body: { title: 'Unrelated' } })).data!.id
      const sub = { description: 'child writes', prompt: script(call('write', { filePath: 'shared.txt', content: 'from the subagent\n' }), 'FINAL child done'), subagent_type: 'general' }
      await oc.prompt(parent, script(call('write', { filePath: 'shared.txt', content: 'from the parent\n' }), call('task', sub), call('slow_write', { filePath: 'gate.txt', content: 'g' }), 'FINAL parent done'))
      const openGate = await waitForGate(dir, 'gate.txt') // the parent's turn goes on
      expect(read(dir, 'shared.txt')).toBe('from the subagent\n')
      await oc.prompt(other, script(call('write', { filePath: 'shared.txt', content: 'from elsewhere\n' }), 'FINAL other done'))
      await oc.idle(other)
      const [refused] = await oc.tools(other)
      expect(refused).toMatchObject({ tool: 'write', status: 'error' })
      expect(refused.text).toContain(`(session ${parent})`)
      expect(refused.text).toContain('It is held by the session “Parent task”')
      expect(oc.toasts()).toContainEqual(expect.objectContaining({ title: 'Write blocked', message: expect.stringContaining('the session “Parent task”') }))
      openGate()
      await oc.idle(parent)
      await oc.prompt(other, script(call('read', { filePath: 'shared.txt' }), call('write', { filePath: 'shared.txt', content: 'from elsewhere\n' }), 'FINAL other done'))
      await oc.idle(other)
      expect((await oc.tools(other)).pop()).toMatchObject({ tool: 'write', status: 'completed' })
      expect(read(dir, 'shared.txt')).toBe('from elsewhere\n')
    } finally {
      await oc.stop()
    }
  })

  it('a bash command that rewrites a file another session holds: the model is told in the tool output, and so is the person', async () => {
    const dir = project('bash')
    fs.writeFileSync(path.join(dir, 'theirs.txt'), 'original\n')
    const oc = await serve(h, dir, { ...env(), ...NO_WAIT })
    try {
      const holder = (await oc.client.session.create({ body: { title: 'Holder' } })).data!.id
      const clobber = (await oc.client.session.create({ body: { title: 'Clobberer' } })).data!.id
      await oc.prompt(holder, script(call('read', { filePath: 'theirs.txt' }), call('slow_write', { filePath: 'theirs.txt', content: 'holder\n' }), 'FINAL holder done'))
      const openGate = await waitForGate(dir, 'theirs.txt')
      await oc.prompt(clobber, script(call('bash', { command: 'echo clobbered > theirs.txt', description: 'clobber' }), 'FINAL done'))
      await oc.idle(clobber)
      const [b] = await oc.tools(clobber)
      expect(b).toMatchObject({ tool: 'bash', status: 'completed' })
      expect(b.text).toContain('[opencode-file-lock] This command changed a file that another agent holds a lock on:')
      expect(b.text).toMatch(/theirs\.txt \(modified\), which the session “Holder”/)
      expect(oc.stderr()).toMatch(/a bash command of session \S+ changed \S*theirs\.txt/)
      expect(oc.toasts()).toContainEqual(expect.objectContaining({ title: 'A command changed a locked file' }))
      openGate()
      await oc.idle(holder)
    } finally {
      await oc.stop()
    }
  })

  it('background subagents (OPENCODE_EXPERIMENTAL_BACKGROUND_SUBAGENTS): the child’s writes go through the lock too', async () => {
    const dir = project('background')
    const held = await acquireLock(path.join(fs.realpathSync(dir), 'bg.txt'), 'someone-else', 'ses_other', store)
    const oc = await serve(h, dir, { ...env(), ...NO_WAIT, OPENCODE_EXPERIMENTAL_BACKGROUND_SUBAGENTS: 'true' })
    try {
      const parent = (await oc.client.session.create({ body: { title: 'Background parent' } })).data!.id
      const sub = { description: 'bg child', prompt: script(call('write', { filePath: 'bg.txt', content: 'from the background\n' }), 'FINAL child done'), subagent_type: 'general', background: true }
      await oc.prompt(parent, script(call('task', sub), 'FINAL parent done'))
      await oc.idle(parent)
      // the child runs on after its parent's turn: wait for its write to be decided
      const deadline = Date.now() + 30_000
      let child: any
      while (Date.now() < deadline) {
        const children = ((await oc.client.session.children({ path: { id: parent } })).data ?? []) as any[]
        const tools = children.length ? await oc.tools(children[0].id) : []
        child = tools.find((t) => t.tool === 'write' && (t.status === 'error' || t.status === 'completed'))
        if (child) break
        await new Promise((r) => setTimeout(r, 200))
      }
      expect(child).toMatchObject({ tool: 'write', status: 'error' })
      expect(child.text).toMatch(/bg\.txt is locked by another agent: agent someone-else/)
      expect(read(dir, 'bg.txt')).toBeUndefined()
    } finally {
      await oc.stop()
      await releaseLock(held, 'ses_other', store)
    }
  })
})
