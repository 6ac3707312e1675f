// The real Claude Code CLI (npm @anthropic-ai/claude-code, pinned) driven by a scripted fake
// Anthropic Messages API on 127.0.0.1 (helpers/claude/fake-anthropic.mjs, from the project's
// reference driver): `claude -p` runs its own Write/Edit/Read/Bash tools, hooks and MCP servers.
// Each run is isolated: its own HOME and CLAUDE_CONFIG_DIR, no inherited ANTHROPIC_*/CLAUDE_* names.
import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { tmpDir } from './tmp'

const ROOT = path.resolve(__dirname, '../..')
export const CLAUDE_BIN = path.join(ROOT, 'node_modules/.bin/claude')
const FAKE = path.join(__dirname, 'claude/fake-anthropic.mjs')

export interface FakeApi {
  port: number
  stop(): void
}

/** The fake Messages API on a free loopback port. */
export function startFakeApi(log?: string): Promise<FakeApi> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [FAKE, '0', ...(log ? [log] : [])], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (d) => {
      out += d
      const m = /LISTENING (\d+)/.exec(out)
      if (m) resolve({ port: Number(m[1]), stop: () => child.kill('SIGKILL') })
    })
    child.once('exit', (c) => reject(new Error(`the fake API exited (${c}) before listening: ${out}`)))
  })
}

/** A script line for the fake model: one tool call. */
export const call = (tool: string, input: Record<string, unknown>) => `CALL ${tool} ${JSON.stringify(input)}`

export interface ClaudeRun {
  rc: number | null
  signal: NodeJS.Signals | null
  events: any[]
  stderr: string
  /** Every tool call and its result, in order. */
  tools: { name: string; input: any; error: boolean; text: string }[]
  sessionId?: string
  ms: number
}

/** The environment a Claude run gets: isolated, talking to `api`, with `extra` on top. */
export function claudeEnv(api: FakeApi, home: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!/^(ANTHROPIC_|CLAUDECODE|CLAUDE_CODE_|CLAUDE_CONFIG_DIR|CLAUDE_AGENT_SDK_)/.test(k)) env[k] = v
  fs.mkdirSync(path.join(home, '.claude'), { recursive: true })
  fs.mkdirSync(path.join(home, 'tmp'), { recursive: true })
  return {
    ...env,
    HOME: home,
    CLAUDE_CONFIG_DIR: path.join(home, '.claude'),
    CLAUDE_CODE_TMPDIR: path.join(home, 'tmp'),
    XDG_RUNTIME_DIR: path.join(home, 'tmp'),
    ANTHROPIC_BASE_URL: `http://127.0.0.1:${api.port}`,
    ANTHROPIC_API_KEY: 'fake-key',
    DISABLE_TELEMETRY: '1',
    DISABLE_AUTOUPDATER: '1',
    DISABLE_ERROR_REPORTING: '1',
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
    IS_SANDBOX: '1',
    ...extra,
  }
}

/** Starts `claude -p` in `project` with `prompt` (the fake model's script) on stdin. */
export function startClaude(project: string, prompt: string, env: NodeJS.ProcessEnv, args: string[] = []): { child: ChildProcess; done: Promise<ClaudeRun> } {
  const started = Date.now()
  const child = spawn(CLAUDE_BIN, ['-p', '--output-format', 'stream-json', '--verbose', '--permission-mode', 'bypassPermissions', ...args], { cwd: project, env, stdio: ['pipe', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout!.on('data', (d) => (out += d))
  child.stderr!.on('data', (d) => (err += d))
  child.stdin!.end(prompt)
  const done = new Promise<ClaudeRun>((resolve) => {
    child.once('exit', (rc, signal) => {
      const events = out
        .split('\n')
        .filter((l) => l.trim())
        .map((l) => {
          try {
            return JSON.parse(l)
          } catch {
            return { raw: l }
          }
        })
      const tools: ClaudeRun['tools'] = []
      const byId = new Map<string, ClaudeRun['tools'][number]>()
      for (const e of events) {
        for (const b of e?.message?.content ?? []) {
          if (e.type === 'assistant' && b?.type === 'tool_use') {
            const t = { name: b.name, input: b.input, error: false, text: '' }
            tools.push(t)
            byId.set(b.id, t)
          }
          if (e.type === 'user' && b?.type === 'tool_result') {
            const t = byId.get(b.tool_use_id)
            if (t) {
              t.error = !!b.is_error
              t.text = typeof b.content === 'string' ? b.content : (b.content ?? []).map((c: any) => c.text ?? '').join('\n')
            }
          }
        }
      }
      const sessionId = events.find((e) => e?.session_id)?.session_id
      resolve({ rc, signal, events, stderr: err, tools, sessionId, ms: Date.now() - started })
    })
  })
  return { child, done }
}

/** One `claude -p` run to its end. */
export async function runClaude(project: string, prompt: string, env: NodeJS.ProcessEnv, args: string[] = []): Promise<ClaudeRun> {
  return startClaude(project, prompt, env, args).done
}

/** A project folder (a git repository, as Claude expects one) with `files`. */
export function claudeProject(files: Record<string, string> = {}): string {
  const dir = fs.realpathSync(tmpDir('ofl-claude-'))
  for (const [f, c] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, f)), { recursive: true })
    fs.writeFileSync(path.join(dir, f), c)
  }
  return dir
}
