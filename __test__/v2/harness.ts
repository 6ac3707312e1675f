// A conformance harness for opencode 2's plugin API, written from opencode's source (GitHub
// anomalyco/opencode: packages/core/src/plugin/module.ts, packages/plugin/src/promise/*,
// packages/core/src/tool.ts, packages/schema/src/session-event.ts), since no opencode 2 binary
// installs here. It loads a package's plugin as opencode 2's loader does (exports["./server"],
// then the root; only the namespace's `default` counts, and it must be {id, setup} or {id, effect}),
// gives it a context whose undeclared parts throw on any use, and runs tool calls as opencode 2's
// tool runner does: before-hooks in order (a throw blocks the call and skips every after-hook),
// the tool, after-hooks with `status`, then `session.tool.success|failed` on the event stream.
import fs from 'node:fs'
import path from 'node:path'
import { pathToFileURL } from 'node:url'

/** opencode 2's loader: the package's `exports["./server"]`, else its root; the module's default must be a plugin definition. */
export async function loadAsV2(packageRoot: string): Promise<{ plugin: any; file: string }> {
  const pkg = JSON.parse(fs.readFileSync(path.join(packageRoot, 'package.json'), 'utf8'))
  const pick = (e: any): string | undefined => (typeof e === 'string' ? e : e?.import ?? e?.default)
  const target = pick(pkg.exports?.['./server']) ?? pick(pkg.exports?.['.']) ?? pkg.module ?? pkg.main
  if (!target) throw new Error(`${pkg.name} has no ./server export, root export, module or main`)
  const file = path.join(packageRoot, target)
  const mod = await import(pathToFileURL(file).href)
  const d = mod.default
  const ok = d !== null && typeof d === 'object' && typeof d.id === 'string' && (typeof d.effect === 'function' || typeof d.setup === 'function')
  if (!ok) throw new Error('Plugin must export a default definition with an id and an effect or setup function.')
  return { plugin: d, file }
}

/** opencode 1's view of the same module: a default object with `id` uses only its `server` function. */
export function v1View(plugin: any): (input: any, options?: any) => Promise<any> {
  if (typeof plugin?.id !== 'string' || plugin.id === '') throw new Error('a local plugin file must have a non-empty string id')
  if (typeof plugin.server !== 'function') throw new Error('must default export an object with server()')
  return plugin.server
}

const TOOL_NAME = /^[A-Za-z0-9_-]{1,64}$/

/** A context whose declared domains work and whose other domains throw on any use. */
function strict(declared: Record<string, unknown>): any {
  return new Proxy(declared, {
    get(target, key) {
      if (typeof key === 'symbol' || key === 'then') return (target as any)[key]
      if (key in target) return (target as any)[key]
      throw new Error(`unexpected ctx.${String(key)}: the plugin used a part of the context this harness does not declare`)
    },
  })
}

/** A push queue behind `event.subscribe`: the iterator ends on abort or at unload. */
function eventStream() {
  const subscribers = new Set<{ push: (e: any) => void; end: () => void }>()
  let closedIterators = 0
  return {
    subscribe({ signal }: { signal?: AbortSignal } = {}): AsyncIterable<any> {
      const queue: any[] = []
      let wake: (() => void) | undefined
      let done = false
      const sub = {
        push: (e: any) => {
          queue.push(e)
          wake?.()
        },
        end: () => {
          done = true
          wake?.()
        },
      }
      subscribers.add(sub)
      signal?.addEventListener('abort', () => sub.end(), { once: true })
      return {
        [Symbol.asyncIterator]() {
          return {
            async next() {
              for (;;) {
                if (queue.length) return { value: queue.shift(), done: false }
                if (done) {
                  subscribers.delete(sub)
                  return { value: undefined, done: true }
                }
                await new Promise<void>((r) => (wake = r))
                wake = undefined
              }
            },
            async return() {
              closedIterators++
              sub.end()
              subscribers.delete(sub)
              return { value: undefined, done: true }
            },
          }
        },
      }
    },
    emit(e: any) {
      for (const s of subscribers) s.push(e)
    },
    endAll() {
      for (const s of subscribers) s.end()
    },
    get open() {
      return subscribers.size
    },
    get closedIterators() {
      return closedIterators
    },
  }
}

export interface ToolSpec {
  /** What the tool does when it runs (opencode's own tool, simulated): a string result, or throws a Tool.Error. */
  run?: (input: any) => Promise<string> | string
  /** How the call ends besides succeeding or failing: no after-hook at all. */
  outcome?: 'declined' | 'aborted' | 'defect'
  /** The tool succeeds but no after-hook runs (a runner that settles the call on the stream only):
   *  `session.tool.success` is all the plugin gets. */
  noAfterHook?: boolean
}

export interface CallResult {
  status: 'completed' | 'error' | 'blocked' | 'declined' | 'aborted' | 'defect'
  /** The tool result's text (completed), or the error the model reads. */
  text: string
}

let evtSeq = 0
let callSeq = 0

/** One opencode 2 location (a project folder) with its plugin context. */
export function makeLocation(directory: string, o: { options?: Record<string, unknown>; version?: string } = {}) {
  const before: ((e: any) => any)[] = []
  const after: ((e: any) => any)[] = []
  let transform: ((editor: any) => void) | undefined
  let registered = new Map<string, any>()
  let replays = 0
  const sessions = new Map<string, { id: string; parentID?: string; title?: string; agent?: string }>()
  const synthetic: { sessionID: string; text: string }[] = []
  const events = eventStream()
  let disposedHooks = 0

  const editor = () => {
    const tools = new Map<string, any>()
    let ns = ''
    const e = {
      add(def: any) {
        const name = (def.options?.namespace ?? ns) ? `${def.options?.namespace ?? ns}_${def.name}` : def.name
        if (!TOOL_NAME.test(name)) return // "Skipping invalid tool registration"
        tools.set(name, def)
      },
      update(name: string, fn: (d: any) => any) {
        if (tools.has(name)) tools.set(name, fn(tools.get(name)))
      },
      remove: (name: string) => void tools.delete(name),
      get: (name: string) => tools.get(name),
      list: () => [...tools.keys()],
      namespace(n: string) {
        ns = n
        return e
      },
    }
    return { e, tools }
  }

  const rebuild = () => {
    if (!transform) return
    // the registry re-runs every transform on each rebuild: run it twice, keep the last
    for (let i = 0; i < 2; i++) {
      const { e, tools } = editor()
      transform(e)
      registered = tools
      replays++
    }
  }

  const hook = (list: ((e: any) => any)[], cb: (e: any) => any) => {
    list.push(cb)
    return Promise.resolve({
      dispose: async () => {
        const i = list.indexOf(cb)
        if (i >= 0) list.splice(i, 1)
        disposedHooks++
      },
    })
  }

  const ctx = strict({
    app: { name: 'opencode', version: o.version ?? '2.3.0', channel: 'latest' },
    location: { directory, project: { id: 'prj_test', directory, canonical: directory } },
    options: o.options ?? {},
    tool: strict({
      hook: (name: string, cb: (e: any) => any) => {
        if (name === 'execute.before') return hook(before, cb)
        if (name === 'execute.after') return hook(after, cb)
        throw new Error(`unknown tool hook ${name}`)
      },
      transform: (cb: (editor: any) => void) => {
        transform = cb
        rebuild()
        return Promise.resolve({ dispose: async () => void (transform = undefined) })
      },
    }),
    event: strict({ subscribe: (o: { signal?: AbortSignal }) => events.subscribe(o) }),
    session: strict({
      get: async ({ sessionID }: { sessionID: string }) => sessions.get(sessionID) ?? { id: sessionID },
      synthetic: async (m: { sessionID: string; text: string }) => void synthetic.push(m),
    }),
  })

  const emit = (type: string, data: Record<string, unknown>, created = Date.now()) => events.emit({ id: `evt_${++evtSeq}`, type, created, data, location: { directory } })

  /** One tool call as opencode 2's runner makes it. */
  async function call(sessionID: string, tool: string, input: unknown, spec: ToolSpec = {}, extra: { beforeOthers?: ((e: any) => any)[] } = {}): Promise<CallResult> {
    const id = `call_${++callSeq}`
    const messageID = `msg_${callSeq}`
    const ev: any = { tool, sessionID, agent: 'build', messageID, id, input }
    const ended = (status: 'success' | 'failed', message?: string) =>
      emit(`session.tool.${status}`, { sessionID, assistantMessageID: messageID, callID: id, id, ...(message ? { error: { type: 'tool.execution', message } } : { content: 'ok' }) })
    try {
      for (const cb of [...before, ...(extra.beforeOthers ?? [])]) await cb(ev)
    } catch (e: any) {
      ended('failed', e?.message)
      return { status: 'blocked', text: String(e?.message ?? e) }
    }
    if (spec.outcome) {
      // declined permission, an abort, a defect: no after-hook; the runner settles the call as failed
      ended('failed', spec.outcome === 'aborted' ? 'Tool execution interrupted' : `the call ended: ${spec.outcome}`)
      return { status: spec.outcome, text: spec.outcome }
    }
    let result: any
    let failure: string | undefined
    try {
      const custom = registered.get(ev.tool)
      const out = custom ? await custom.execute(ev.input, { sessionID, agent: 'build', messageID, id, signal: new AbortController().signal, progress() {}, checkpoint() {} }) : { output: await (spec.run ?? (() => 'ok'))(ev.input) }
      result = typeof out === 'string' ? { content: out } : out
    } catch (e: any) {
      failure = String(e?.message ?? e)
    }
    const afterEv = failure === undefined ? { ...ev, status: 'completed', result } : { ...ev, status: 'error', error: { _tag: 'Tool.Error', message: failure } }
    if (!spec.noAfterHook) for (const cb of after) await cb(afterEv)
    ended(failure === undefined ? 'success' : 'failed', failure)
    if (failure !== undefined) return { status: 'error', text: failure }
    const r = afterEv.result
    return { status: 'completed', text: [typeof r.output === 'string' ? r.output : '', typeof r.content === 'string' ? r.content : Array.isArray(r.content) ? r.content.map((c: any) => c.text).join('\n') : ''].filter(Boolean).join('\n') }
  }

  /**
   * Calls of one model step, their before-chains run at once. `firstMessageBug`: opencode 2.0.11's
   * #50331, where every blocked call of the batch shows the first blocked call's message.
   */
  async function batch(calls: { session: string; tool: string; input: unknown; spec?: ToolSpec }[], o: { firstMessageBug?: boolean } = {}): Promise<CallResult[]> {
    const results = await Promise.all(calls.map((c) => call(c.session, c.tool, c.input, c.spec)))
    if (!o.firstMessageBug) return results
    const first = results.find((r) => r.status === 'blocked')
    return results.map((r) => (r.status === 'blocked' && first ? { ...r, text: first.text } : r))
  }

  return {
    ctx,
    call,
    batch,
    emit,
    synthetic,
    /** A session opencode knows (and announces, as `session.created`). */
    session(id: string, info: { parentID?: string; title?: string; agent?: string } = {}) {
      sessions.set(id, { id, ...info })
      emit('session.created', { sessionID: id, ...info })
      return id
    },
    tools: () => registered,
    get replays() {
      return replays
    },
    get hooks() {
      return { before: before.length, after: after.length, disposed: disposedHooks }
    },
    get openStreams() {
      return events.open
    },
    /** Unloads the location as opencode 2 does: the cleanup, then every hook and stream closed. */
    async unload(cleanup: (() => Promise<void> | void) | void) {
      await cleanup?.()
      before.length = 0
      after.length = 0
      events.endAll()
    },
  }
}
