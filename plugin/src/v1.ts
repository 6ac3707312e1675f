// opencode 1.x: its hooks take an (input, output) pair, its tools name files `filePath`, a failed
// tool gets no after hook (its part's final state in `message.part.updated` says so), and toasts
// go through the SDK client. This adapter turns those shapes into core calls.
import { lockingCore, type Call, type Host } from './core.ts'
import type { Zod } from './agent-tools.ts'
import type { Settings } from './options.ts'
import { announce } from './presence.ts'
import type { SessionClient } from './sessions.ts'

type Lib = typeof import('../../lib/index.js')

/** The hooks this plugin gives opencode 1 (and, under `tool`, the agents' lock tools). */
export type Hooks = Record<string, any>

interface ToolInput {
  tool: string
  sessionID?: string
  callID?: string
}

/** What opencode 1's SDK client offers the core: session lookups and toasts (called as methods: the SDK needs its `this`). */
export function v1Host(client: SessionClient | undefined, log: (m: string) => void): Host {
  const session = client?.session
  return {
    kind: 'opencode',
    lookup: typeof session?.get === 'function' ? async (id) => (await session.get!({ path: { id } }))?.data : undefined,
    notify: (t) => {
      Promise.resolve(client?.tui?.showToast?.({ body: { ...t, duration: 6000 } })).catch((e: any) => log(`toast failed: ${e?.message ?? e}`))
    },
  }
}

export function v1Hooks(lib: Lib, s: Settings, client: SessionClient | undefined, z?: Zod): Hooks {
  const debug = (m: string) => s.debug && console.error(`[opencode-file-lock] ${m}`)
  const core = lockingCore(lib, s, v1Host(client, debug), z)
  const presence = announce(lib, core, { api: 1, project: s.baseDir })
  let disposed: Promise<void> | undefined
  const dispose = () => (disposed ??= (async () => {
    await presence.stop()
    await core.dispose()
  })())
  const call = (input: ToolInput, args?: unknown): Call => ({ tool: String(input?.tool), session: input?.sessionID ?? 'unknown-session', callID: input?.callID, args })
  return {
    ...(core.tools ? { tool: core.tools } : {}),

    'tool.execute.before': async (input: ToolInput, output: { args?: unknown }) => core.before(call(input, output?.args)),

    'tool.execute.after': async (input: ToolInput, output: { output?: string }) =>
      core.after(call(input), output && typeof output.output === 'string' ? (text) => void (output.output += text) : undefined),

    event: async ({ event }: { event: any }) => {
      try {
        const props = event?.properties ?? {}
        switch (event?.type) {
          case 'session.created':
          case 'session.updated':
            core.saw(props.info)
            break
          case 'message.part.updated': {
            // opencode skips tool.execute.after when a tool fails: release on the part's final state.
            const part = props.part
            if (part?.type !== 'tool' || (part.state?.status !== 'error' && part.state?.status !== 'completed')) break
            await core.ended(part.callID, part.tool, part.state.status === 'error')
            break
          }
          case 'session.idle':
            // turn scope: the turn is over; call scope: anything a call left (no callID, no end event)
            await core.idle(props.sessionID)
            break
          case 'session.deleted':
            await core.sessionEnded(props.info?.id ?? props.sessionID, 'session deleted')
            break
          case 'session.error':
            await core.sessionEnded(props.sessionID, 'session error')
            break
          case 'server.instance.disposed':
            // opencode let go of this project's instance (opencode serve's instance.dispose): so does the plugin
            if (!props.directory || props.directory === s.baseDir) await dispose()
            break
        }
      } catch (e: any) {
        core.log(`event ${event?.type} handling failed: ${e?.message ?? e}`)
      }
    },

    /** The old TypeScript plugin's key: releases a session's locks, or with no session every lock of this agent. */
    'session.end': async (arg?: any) => {
      const session = arg?.sessionID ?? arg?.sessionId ?? arg?.properties?.sessionID
      if (session) return core.sessionEnded(session, 'session end')
      return core.endAgent()
    },

    dispose,
  }
}
