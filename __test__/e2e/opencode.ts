// Drives the real opencode binary (npm opencode-ai, pinned) against a scripted fake model on
// 127.0.0.1, with this package installed into the project's .opencode the way users install it.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import readline from 'node:readline'
import { createOpencodeClient } from '@opencode-ai/sdk'
import { freePort } from '../helpers/redis-server'
import { tmpDir } from '../helpers/tmp'

const REPO = path.resolve(__dirname, '../..')
/** The opencode the e2e suites drive: the pinned opencode 1 (npm opencode-ai), or OPENCODE_E2E_BIN (see docs/testing.md). */
export const OPENCODE_BIN = process.env.OPENCODE_E2E_BIN || path.join(REPO, 'node_modules/opencode-linux-x64/bin/opencode')

const children = new Set<ChildProcess>()
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null) try { process.kill(c.pid!, 'SIGKILL') } catch {}
})

function track(c: ChildProcess) {
  children.add(c)
  c.once('exit', () => children.delete(c))
  return c
}

function waitLine(c: ChildProcess, re: RegExp, what: string, ms = 60_000): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    let buf = ''
    const timer = setTimeout(() => reject(new Error(`${what}: no ${re} within ${ms} ms: ${buf.slice(-2000)}`)), ms)
    const on = (d: Buffer) => {
      buf += d
      const m = buf.match(re)
      if (m) {
        clearTimeout(timer)
        resolve(m)
      }
    }
    c.stdout!.on('data', on)
    c.stderr!.on('data', on)
    c.once('exit', (code) => { clearTimeout(timer); reject(new Error(`${what} exited ${code}: ${buf.slice(-2000)}`)) })
  })
}

/**
 * opencode 2 names some tools and arguments differently (shell, subagent, patch; `path` for
 * `filePath`). When OPENCODE_E2E_BIN is an opencode 2, the scenarios' scripts (written in opencode
 * 1's names) are translated on the way in and tool names translated back in results, so the same
 * suites run against either.
 */
const V2_TOOLS: Record<string, string> = { bash: 'shell', task: 'subagent', apply_patch: 'patch' }
let hostMajor: number | undefined
function isV2(): boolean {
  hostMajor ??= Number(spawnSync(OPENCODE_BIN, ['--version'], { encoding: 'utf8' }).stdout?.match(/(\d+)\./)?.[1] ?? 1)
  return hostMajor >= 2
}
export function forHost(script: string): string {
  if (!isV2()) return script
  return script
    .split('\n')
    .map((line) => {
      const m = line.match(/^(CALL|PAR)\s+(\S+)\s+(\{.*\})\s*$/)
      if (!m) return line
      const args = JSON.parse(m[3])
      if ('filePath' in args) {
        args.path = args.filePath
        delete args.filePath
      }
      return `${m[1]} ${V2_TOOLS[m[2]] ?? m[2]} ${JSON.stringify(args)}`
    })
    .join('\n')
}
const fromHost = (tool: string) => (isV2() ? Object.entries(V2_TOOLS).find(([, v]) => v === tool)?.[0] ?? tool : tool)

/** A scripted turn for the fake model: one directive a line (CALL tool {args}, FINAL text, ...). */
export const script = (...lines: string[]) => ['scripted turn', ...lines].join('\n')
/** A model call of `tool` with `args`. */
export const call = (tool: string, args: unknown) => `CALL ${tool} ${JSON.stringify(args)}`
/** The model reads a file (a whole-file write of an existing file needs its task to have read it). */
export const readFile = (file: string) => call('read', { filePath: file })

export interface Harness {
  root: string
  llmPort: number
  env: Record<string, string>
  stop(): Promise<void>
}

/** One fake model and isolated opencode folders (XDG_*), with `env` added to opencode's environment. */
export async function startModel(env: Record<string, string> = {}): Promise<Harness> {
  const root = tmpDir('ofl-e2e-')
  const fake = track(spawn(process.execPath, [path.join(__dirname, 'fake-llm.mjs'), '0', path.join(root, 'fake.log')], { stdio: ['ignore', 'pipe', 'pipe'] }))
  const [, port] = await waitLine(fake, /LISTENING (\d+)/, 'fake llm', 10_000)
  return {
    root,
    llmPort: Number(port),
    env: {
      ...(process.env as Record<string, string>),
      XDG_CONFIG_HOME: path.join(root, 'home/config'),
      XDG_DATA_HOME: path.join(root, 'home/data'),
      XDG_CACHE_HOME: path.join(root, 'home/cache'),
      XDG_STATE_HOME: path.join(root, 'home/state'),
      OPENCODE_DISABLE_AUTOUPDATE: '1',
      OPENCODE_DISABLE_MODELS_FETCH: '1',
      OPENCODE_DISABLE_SHARE: '1',
      OPENCODE_DISABLE_LSP_DOWNLOAD: '1',
      DEBUG_FILE_LOCK_CACHE: 'true',
      ...env,
    },
    stop: async () => void fake.kill('SIGTERM'),
  }
}

/**
 * What a user does: `install` writes .opencode/package.json and the plugin file into the template
 * project (by default the installer of this checkout, --no-npm), and opencode installs the
 * package at start, as it installs @opencode-ai/plugin there. Done once; projects copy the
 * installed .opencode.
 */
export async function startHarness(opts: { env?: Record<string, string>; install?: (template: string) => void } = {}): Promise<Harness> {
  const h = await startModel(opts.env)
  const template = path.join(h.root, 'template')
  const install =
    opts.install ??
    ((dir: string) => {
      const installer = spawnSync(process.execPath, [path.join(REPO, 'bin/opencode-file-lock.js'), 'install-plugin', '--project', dir, '--no-npm', '--opencode', OPENCODE_BIN], { encoding: 'utf8' })
      if (installer.status !== 0) throw new Error(`install-plugin failed: ${installer.stderr}`)
    })
  install(template)
  writeProjectFiles(h, template)
  const warm = await run(h, template, 'warm up\nFINAL ready')
  if (warm.code !== 0 || !fs.existsSync(path.join(template, '.opencode/node_modules/opencode-file-lock'))) {
    throw new Error(`opencode did not install the plugin's package into .opencode (exit ${warm.code}): ${warm.stderr.slice(-2000)}`)
  }
  return h
}

function writeProjectFiles(h: Harness, dir: string) {
  fs.mkdirSync(path.join(dir, '.opencode/tool'), { recursive: true })
  fs.copyFileSync(path.join(__dirname, 'slow_write.tool.ts'), path.join(dir, '.opencode/tool/slow_write.ts'))
  fs.writeFileSync(
    path.join(dir, 'opencode.json'),
    JSON.stringify({
      $schema: 'https://opencode.ai/config.json',
      provider: {
        mock: {
          npm: '@ai-sdk/openai-compatible',
          name: 'Mock',
          options: { baseURL: `http://127.0.0.1:${h.llmPort}/v1`, apiKey: 'x' },
          models: { 'mock-model': { name: 'Mock', tool_call: true }, 'gpt-5-mock': { name: 'Mock GPT', tool_call: true } },
        },
      },
      model: 'mock/mock-model',
      small_model: 'mock/mock-model',
      permission: { edit: 'allow', bash: 'allow', external_directory: 'allow' },
    }),
  )
  spawnSync('git', ['init', '-q'], { cwd: dir })
}

/** A project wired to the fake model, with the installed plugin and the slow_write test tool. */
export function makeProject(h: Harness, name: string): string {
  const dir = path.join(h.root, name) // same depth as the template: its relative links stay valid
  fs.mkdirSync(dir, { recursive: true })
  fs.cpSync(path.join(h.root, 'template/.opencode'), path.join(dir, '.opencode'), { recursive: true, verbatimSymlinks: true })
  writeProjectFiles(h, dir)
  return dir
}
/** Waits until the slow_write tool in `dir` holds its lock on `file`, then returns a function that lets it write. */
export async function waitForGate(dir: string, file: string, ms = 60_000): Promise<() => void> {
  const gates = path.join(dir, '.gates')
  const deadline = Date.now() + ms
  while (!fs.existsSync(path.join(gates, `${file}.holding`))) {
    if (Date.now() > deadline) throw new Error(`slow_write never started on ${file}`)
    await new Promise((r) => setTimeout(r, 50))
  }
  return () => fs.writeFileSync(path.join(gates, `${file}.open`), '')
}

export interface RunResult {
  code: number | null
  events: any[]
  stderr: string
}

/** One `opencode run` (the prompt script goes on stdin: argv quoting mangles JSON). */
export function run(h: Harness, dir: string, script: string, opts: { model?: string; env?: Record<string, string>; session?: string } = {}): Promise<RunResult> {
  const args = ['run', '--format', 'json', '--model', opts.model ?? 'mock/mock-model', ...(opts.session ? ['--session', opts.session] : [])]
  const c = track(spawn(OPENCODE_BIN, args, { cwd: dir, env: { ...h.env, ...opts.env, PWD: dir }, stdio: ['pipe', 'pipe', 'pipe'] }))
  c.stdin!.end(forHost(script))
  const events: any[] = []
  let stderr = ''
  readline.createInterface({ input: c.stdout! }).on('line', (l) => {
    try {
      events.push(JSON.parse(l))
    } catch {}
  })
  c.stderr!.on('data', (d) => (stderr += d))
  const timer = setTimeout(() => c.kill('SIGKILL'), 120_000)
  return new Promise((resolve) => c.once('exit', (code) => { clearTimeout(timer); resolve({ code, events, stderr }) }))
}

/** The session a run worked in (to continue it with `--session`). */
export function sessionOf(r: RunResult): string {
  const id = r.events.map((e) => e.sessionID ?? e.part?.sessionID).find((x) => typeof x === 'string')
  if (!id) throw new Error(`no session id in the run's events: ${r.stderr.slice(-2000)}`)
  return id
}

/** Tool results of a run: [{tool, status, text}] where text is the output or the error. */
export function toolResults(r: RunResult) {
  return r.events
    .filter((e) => e.type === 'tool_use')
    .map((e) => ({ tool: fromHost(e.part.tool as string), status: e.part.state.status as string, text: String(e.part.state.output ?? e.part.state.error ?? '') }))
}

export interface Serve {
  client: ReturnType<typeof createOpencodeClient>
  stderr: () => string
  /** Prompts without waiting for the answer. */
  prompt(sessionID: string, script: string): Promise<unknown>
  /** Resolves when the session has no assistant message still running. */
  idle(sessionID: string, ms?: number): Promise<void>
  tools(sessionID: string): Promise<{ tool: string; status: string; text: string }[]>
  /** The toasts plugins asked the TUI to show (tui.toast.show events). */
  toasts: () => { title?: string; message: string; variant: string }[]
  /** Sends the opencode process a signal (SIGKILL: it dies without disposing anything). */
  kill(signal: NodeJS.Signals): void
  stop(): Promise<void>
}

/** `opencode serve` on a free loopback port, with an SDK client for `dir`. */
export async function serve(h: Harness, dir: string, env: Record<string, string> = {}): Promise<Serve> {
  const port = await freePort()
  const c = track(spawn(OPENCODE_BIN, ['serve', '--hostname', '127.0.0.1', '--port', String(port)], { cwd: dir, env: { ...h.env, ...env, PWD: dir }, stdio: ['ignore', 'pipe', 'pipe'] }))
  let stderr = ''
  c.stderr!.on('data', (d) => (stderr += d))
  const [, baseUrl] = await waitLine(c, /opencode server listening on (http:\/\/\S+)/, 'opencode serve')
  const client = createOpencodeClient({ baseUrl, directory: dir })
  const model = { providerID: 'mock', modelID: 'mock-model' }
  const messages = async (id: string) => ((await client.session.messages({ path: { id } })).data ?? []) as any[]
  // session.idle events, counted per session: a prompt is done when its session's count catches up
  const idles = new Map<string, number>()
  const prompted = new Map<string, number>()
  const toasts: { title?: string; message: string; variant: string }[] = []
  const events = await client.event.subscribe()
  ;(async () => {
    for await (const ev of events.stream as AsyncIterable<any>) {
      if (ev.type === 'session.idle') idles.set(ev.properties.sessionID, (idles.get(ev.properties.sessionID) ?? 0) + 1)
      if (ev.type === 'tui.toast.show') toasts.push(ev.properties)
    }
  })().catch(() => {})
  return {
    client,
    stderr: () => stderr,
    prompt: (id, script) => {
      prompted.set(id, (prompted.get(id) ?? 0) + 1)
      return client.session.promptAsync({ path: { id }, body: { model, parts: [{ type: 'text', text: forHost(script) }] } })
    },
    async idle(id, ms = 60_000) {
      const deadline = Date.now() + ms
      while ((idles.get(id) ?? 0) < (prompted.get(id) ?? 0)) {
        if (Date.now() > deadline) throw new Error(`session ${id} did not go idle within ${ms} ms`)
        await new Promise((r) => setTimeout(r, 50))
      }
    },
    toasts: () => toasts,
    async tools(id) {
      return (await messages(id)).flatMap((m) =>
        m.parts.filter((p: any) => p.type === 'tool').map((p: any) => ({ tool: fromHost(p.tool), status: p.state.status, text: String(p.state.output ?? p.state.error ?? '') })),
      )
    },
    kill: (signal) => void c.kill(signal),
    async stop() {
      await client.instance.dispose({ query: { directory: dir } }).catch(() => {})
      c.kill('SIGTERM')
      await new Promise((r) => { if (c.exitCode !== null) r(null); else { c.once('exit', r); setTimeout(r, 8000) } })
      if (c.exitCode === null) c.kill('SIGKILL')
    },
  }
}
