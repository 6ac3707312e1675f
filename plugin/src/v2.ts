// opencode 2: the loader calls `setup(ctx)` of the module's default export. Hooks take one mutable
// event (`ctx.tool.hook('execute.before' | 'execute.after', cb)`), tools name files `path`, a call
// blocked by a hook, declined, aborted or crashed gets no after hook (`session.tool.failed` or
// `success` on the event stream ends it), custom tools are added through `ctx.tool.transform`, and
// the server side has no toasts: notices go into the session as `session.synthetic` messages. This
// adapter turns those shapes into core calls. It uses only the parts of `ctx` it declares below, and
// imports nothing of `@opencode/plugin` at run time.
import type { Zod } from './agent-tools.ts'
import { lockingCore, type Call, type Core, type Notice } from './core.ts'
import * as say from './messages.ts'
import type { Settings } from './options.ts'
import { announce } from './presence.ts'
import { writesOf } from './tools.ts'

type Lib = typeof import('../../lib/index.js')

/** A hook registration: disposed at cleanup. */
interface Registration {
  dispose(): Promise<void> | void
}

/** The parts of opencode 2's plugin context this plugin uses. */
export interface V2Context {
  app?: { name?: string; version?: string }
  location?: { directory?: string; project?: { directory?: string } }
  options?: Record<string, unknown>
  tool: {
    hook(name: 'execute.before' | 'execute.after', cb: (event: any) => Promise<void> | void): Promise<Registration> | Registration
    transform(cb: (editor: any) => void): Promise<unknown> | unknown
  }
  event: { subscribe(o: { signal: AbortSignal }): AsyncIterable<any> }
  session: { get(o: { sessionID: string }): Promise<any>; synthetic?(o: { sessionID: string; text: string }): Promise<unknown> }
}

export type Cleanup = () => Promise<void>

/** The call of a hook event (`id` is the call id; older 2.0.x builds said `toolCallID`). */
function callOf(ev: any): Call {
  return { tool: String(ev?.tool), session: String(ev?.sessionID ?? 'unknown-session'), callID: ev?.id ?? ev?.toolCallID ?? ev?.callID, args: ev?.input }
}

/** Appends text to a completed call's result, whichever form it has. */
function appender(ev: any): ((text: string) => void) | undefined {
  const r = ev?.result
  if (!r || typeof r !== 'object') return undefined
  return (text: string) => {
    if (typeof r.output === 'string') r.output += text
    if (typeof r.content === 'string') r.content += text
    else if (Array.isArray(r.content)) r.content.push({ type: 'text', text: text.replace(/^\n+/, '') })
    else if (typeof r.output !== 'string') r.content = text.replace(/^\n+/, '')
  }
}

/** Notices go into the session where the call ran (opencode 2's server plugins have no toasts). */
function synthetic(ctx: V2Context, log: (m: string) => void) {
  return (n: Notice, session?: string) => {
    if (!session || typeof ctx.session?.synthetic !== 'function') return
    Promise.resolve(ctx.session.synthetic({ sessionID: session, text: `[opencode-file-lock] ${n.title}: ${n.message}` })).catch((e: any) => log(`notice failed: ${e?.message ?? e}`))
  }
}

/** A plugin that cannot lock (no addon, a bad setting): every write it would lock is refused, saying why. */
export async function refuseV2(ctx: V2Context, why: string): Promise<Cleanup> {
  const reg = await ctx.tool.hook('execute.before', (ev: any) => {
    const c = callOf(ev)
    if (writesOf(c.tool, c.args) === null) return
    throw say.cannotLock(c.tool, why)
  })
  return async () => void (await reg.dispose())
}

/** Everything the plugin does in opencode 1, on opencode 2's hooks, events and tools. */
export async function setupV2(ctx: V2Context, lib: Lib, s: Settings, z?: Zod): Promise<Cleanup> {
  const log = (m: string) => s.debug && console.error(`[opencode-file-lock] ${m}`)
  const core: Core = lockingCore(lib, s, {
    kind: 'opencode',
    lookup: async (id) => {
      const info = await ctx.session.get({ sessionID: id })
      return info && { title: info.title, agent: info.agent, parentID: info.parentID }
    },
    notify: synthetic(ctx, log),
  }, z)
  const registrations: Registration[] = []
  registrations.push(await ctx.tool.hook('execute.before', (ev: any) => core.before(callOf(ev))))
  registrations.push(
    await ctx.tool.hook('execute.after', (ev: any) => {
      const c = callOf(ev)
      // a tool's own failure (no match, bad arguments): nothing was written as planned
      if (ev?.status === 'error') return core.ended(c.callID, c.tool, true)
      return core.after(c, appender(ev))
    }),
  )
  if (core.tools) {
    const tools = core.tools
    const zod = z!
    // replayed on every registry rebuild: cheap, synchronous, and the same every time
    await ctx.tool.transform((editor: any) => {
      for (const [name, t] of Object.entries(tools)) {
        editor.add({
          name,
          description: t.description,
          input: zod.object(t.args as any),
          // real model tools, not entries of code mode's catalog
          options: { codemode: false },
          execute: async (input: any, call: any) => {
            try {
              return { content: await t.execute(input, { sessionID: call?.sessionID, abort: call?.signal }) }
            } catch (e: any) {
              // a refusal is an answer, not a crash of the tool
              return { content: String(e?.message ?? e) }
            }
          },
        })
      }
    })
  }
  const stop = new AbortController()
  const listening = listen(ctx, core, stop.signal, log)
  const presence = announce(lib, core, { api: 2, opencodeVersion: ctx.app?.version, project: ctx.location?.directory ?? s.baseDir })
  return async () => {
    stop.abort()
    for (const r of registrations.splice(0)) await Promise.resolve(r.dispose()).catch(() => {})
    await listening.catch(() => {})
    await presence.stop()
    await core.dispose()
  }
}

/** Follows the event stream: calls that end without an after hook, idle sessions, ended ones, subagents' parents. */
async function listen(ctx: V2Context, core: Core, signal: AbortSignal, log: (m: string) => void): Promise<void> {
  const here = ctx.location?.directory
  try {
    for await (const ev of ctx.event.subscribe({ signal })) {
      if (signal.aborted) break
      if (here && ev?.location?.directory && ev.location.directory !== here) continue
      const d = ev?.data ?? {}
      try {
        switch (ev?.type) {
          case 'session.created':
          case 'session.updated':
            core.saw({ id: d.sessionID ?? d.id ?? d.info?.id, parentID: d.parentID ?? d.info?.parentID, title: d.title ?? d.info?.title, agent: d.agent ?? d.info?.agent })
            break
          case 'session.tool.success':
            await core.ended(d.callID ?? d.id, String(d.tool ?? 'tool'), false)
            break
          case 'session.tool.failed':
            await core.ended(d.callID ?? d.id, String(d.tool ?? 'tool'), true)
            break
          case 'session.status':
            if (d.status?.type === 'idle') await core.idle(d.sessionID)
            break
          case 'session.idle':
          case 'session.execution.succeeded':
          case 'session.execution.failed':
            await core.idle(d.sessionID)
            break
          case 'session.execution.interrupted':
            // the run is over, not the session: a new run (reason superseded) may already hold locks
            await core.interrupted(d.sessionID, `session interrupted (${d.reason ?? 'user'})`, typeof ev.created === 'number' ? ev.created : Date.now())
            break
          case 'session.deleted':
            await core.sessionEnded(d.sessionID ?? d.id, 'session deleted')
            break
        }
      } catch (e: any) {
        log(`event ${ev?.type} handling failed: ${e?.message ?? e}`)
      }
    }
  } catch (e: any) {
    if (!signal.aborted) console.error(`[opencode-file-lock] the event stream ended (${e?.message ?? e}); locks of calls that end without an after hook now wait for their session to go idle or for their TTL`)
  }
}
