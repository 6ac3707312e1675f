import { lockingCore } from './core.js';
import * as say from './messages.js';
import { announce } from './presence.js';
import { writesOf } from './tools.js';
/** The call of a hook event (`id` is the call id; older 2.0.x builds said `toolCallID`). */
function callOf(ev) {
    return { tool: String(ev?.tool), session: String(ev?.sessionID ?? 'unknown-session'), callID: ev?.id ?? ev?.toolCallID ?? ev?.callID, args: ev?.input };
}
/** Appends text to a completed call's result, whichever form it has. */
function appender(ev) {
    const r = ev?.result;
    if (!r || typeof r !== 'object')
        return undefined;
    return (text) => {
        if (typeof r.output === 'string')
            r.output += text;
        if (typeof r.content === 'string')
            r.content += text;
        else if (Array.isArray(r.content))
            r.content.push({ type: 'text', text: text.replace(/^\n+/, '') });
        else if (typeof r.output !== 'string')
            r.content = text.replace(/^\n+/, '');
    };
}
/** Notices go into the session where the call ran (opencode 2's server plugins have no toasts). */
function synthetic(ctx, log) {
    return (n, session) => {
        if (!session || typeof ctx.session?.synthetic !== 'function')
            return;
        Promise.resolve(ctx.session.synthetic({ sessionID: session, text: `[opencode-file-lock] ${n.title}: ${n.message}` })).catch((e) => log(`notice failed: ${e?.message ?? e}`));
    };
}
/** A plugin that cannot lock (no addon, a bad setting): every write it would lock is refused, saying why. */
export async function refuseV2(ctx, why) {
    const reg = await ctx.tool.hook('execute.before', (ev) => {
        const c = callOf(ev);
        if (writesOf(c.tool, c.args) === null)
            return;
        throw say.cannotLock(c.tool, why);
    });
    return async () => void (await reg.dispose());
}
/** Everything the plugin does in opencode 1, on opencode 2's hooks, events and tools. */
export async function setupV2(ctx, lib, s, z) {
    const log = (m) => s.debug && console.error(`[opencode-file-lock] ${m}`);
    const core = lockingCore(lib, s, {
        kind: 'opencode',
        lookup: async (id) => {
            const info = await ctx.session.get({ sessionID: id });
            return info && { title: info.title, agent: info.agent, parentID: info.parentID };
        },
        notify: synthetic(ctx, log),
    }, z);
    const registrations = [];
    registrations.push(await ctx.tool.hook('execute.before', (ev) => core.before(callOf(ev))));
    registrations.push(await ctx.tool.hook('execute.after', (ev) => {
        const c = callOf(ev);
        // a tool's own failure (no match, bad arguments): nothing was written as planned
        if (ev?.status === 'error')
            return core.ended(c.callID, c.tool, true);
        return core.after(c, appender(ev));
    }));
    if (core.tools) {
        const tools = core.tools;
        const zod = z;
        // replayed on every registry rebuild: cheap, synchronous, and the same every time
        await ctx.tool.transform((editor) => {
            for (const [name, t] of Object.entries(tools)) {
                editor.add({
                    name,
                    description: t.description,
                    input: zod.object(t.args),
                    // real model tools, not entries of code mode's catalog
                    options: { codemode: false },
                    execute: async (input, call) => {
                        try {
                            return { content: await t.execute(input, { sessionID: call?.sessionID, abort: call?.signal }) };
                        }
                        catch (e) {
                            // a refusal is an answer, not a crash of the tool
                            return { content: String(e?.message ?? e) };
                        }
                    },
                });
            }
        });
    }
    const stop = new AbortController();
    const listening = listen(ctx, core, stop.signal, log);
    const presence = announce(lib, core, { api: 2, opencodeVersion: ctx.app?.version, project: ctx.location?.directory ?? s.baseDir });
    return async () => {
        stop.abort();
        for (const r of registrations.splice(0))
            await Promise.resolve(r.dispose()).catch(() => { });
        await listening.catch(() => { });
        await presence.stop();
        await core.dispose();
    };
}
/** Follows the event stream: calls that end without an after hook, idle sessions, ended ones, subagents' parents. */
async function listen(ctx, core, signal, log) {
    const here = ctx.location?.directory;
    try {
        for await (const ev of ctx.event.subscribe({ signal })) {
            if (signal.aborted)
                break;
            if (here && ev?.location?.directory && ev.location.directory !== here)
                continue;
            const d = ev?.data ?? {};
            try {
                switch (ev?.type) {
                    case 'session.created':
                    case 'session.updated':
                        core.saw({ id: d.sessionID ?? d.id ?? d.info?.id, parentID: d.parentID ?? d.info?.parentID, title: d.title ?? d.info?.title, agent: d.agent ?? d.info?.agent });
                        break;
                    case 'session.tool.success':
                        await core.ended(d.callID ?? d.id, String(d.tool ?? 'tool'), false);
                        break;
                    case 'session.tool.failed':
                        await core.ended(d.callID ?? d.id, String(d.tool ?? 'tool'), true);
                        break;
                    case 'session.status':
                        if (d.status?.type === 'idle')
                            await core.idle(d.sessionID);
                        break;
                    case 'session.idle':
                    case 'session.execution.succeeded':
                    case 'session.execution.failed':
                        await core.idle(d.sessionID);
                        break;
                    case 'session.execution.interrupted':
                        // the run is over, not the session: a new run (reason superseded) may already hold locks
                        await core.interrupted(d.sessionID, `session interrupted (${d.reason ?? 'user'})`, typeof ev.created === 'number' ? ev.created : Date.now());
                        break;
                    case 'session.deleted':
                        await core.sessionEnded(d.sessionID ?? d.id, 'session deleted');
                        break;
                }
            }
            catch (e) {
                log(`event ${ev?.type} handling failed: ${e?.message ?? e}`);
            }
        }
    }
    catch (e) {
        if (!signal.aborted)
            console.error(`[opencode-file-lock] the event stream ended (${e?.message ?? e}); locks of calls that end without an after hook now wait for their session to go idle or for their TTL`);
    }
}
