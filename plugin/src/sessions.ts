// What the host knows of a session: its parent (a subagent's session is its task's child), its
// title and its agent. Asked of the host (opencode's client) once per session and kept: a
// session's parent never changes. With nothing to ask (a test, an old opencode) every session is
// a root.
import { oneLine } from '../../lib/text.js'

export interface SessionInfo {
  title?: string
  agent?: string
  parentID?: string
}

/** The part of opencode 1's SDK client this plugin uses. */
export interface SessionClient {
  session?: { get?: (o: { path: { id: string } }) => Promise<{ data?: any; error?: unknown }> }
  tui?: { showToast?: (o: { body: { title?: string; message: string; variant: 'info' | 'success' | 'warning' | 'error'; duration?: number } }) => Promise<unknown> }
}

/** Longer than any task tree: a loop in parent links (it should not happen) ends here. */
const MAX_DEPTH = 32

export class Sessions {
  private known = new Map<string, Promise<SessionInfo>>()

  /** `lookup`: what the host knows of a session (undefined or a rejection: nothing). */
  constructor(private lookup?: (id: string) => Promise<SessionInfo | undefined>) {}

  /** What a `session.created` / `session.updated` event says, so no question is needed. */
  saw(info: any): void {
    if (typeof info?.id === 'string') this.known.set(info.id, Promise.resolve({ title: info.title, agent: info.agent, parentID: info.parentID }))
  }

  info(id: string): Promise<SessionInfo> {
    let p = this.known.get(id)
    if (!p) {
      const lookup = this.lookup
      p = (lookup ? Promise.resolve().then(() => lookup(id)) : Promise.resolve(undefined)).then(
        (i) => ({ title: i?.title, agent: i?.agent, parentID: i?.parentID }),
        () => ({}),
      )
      // a failed lookup is asked again next time
      p.then((i) => i.title === undefined && i.parentID === undefined && this.known.delete(id))
      this.known.set(id, p)
    }
    return p
  }

  /** The root of `id`'s task tree: the session whose locks its subagents share. */
  async root(id: string): Promise<string> {
    let cur = id
    for (let depth = 0; depth < MAX_DEPTH; depth++) {
      const parent = (await this.info(cur)).parentID
      if (!parent || parent === cur) return cur
      cur = parent
    }
    return cur
  }

  /** "the session “Fix the parser” (agent build)", or nothing when opencode does not know it. */
  async describe(id: string): Promise<string> {
    const i = await this.info(id)
    if (!i.title && !i.agent) return ''
    return [i.title ? `the session “${oneLine(i.title)}”` : `session ${oneLine(id)}`, i.agent ? `(agent ${oneLine(i.agent, 64)})` : ''].filter(Boolean).join(' ')
  }
}
