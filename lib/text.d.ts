/** `s` as one line: control characters (escape sequences' ESC among them) become spaces, runs of spaces one, cut to `max` characters (default 200). */
export declare function oneLine(s: unknown, max?: number): string
/** A lock's holder as people read it: `agent <id> (session <id>, “title”) [kind]`, each part one line. */
export declare function holderText(r: { agentId?: unknown; sessionId?: unknown; title?: unknown; kind?: unknown } | null | undefined): string
/** `, for this reason: “...”` when the lock record gives one, else ''. */
export declare function reasonText(r: { reason?: unknown } | null | undefined): string
