// Which files each tool call writes, read as opencode 1.18.33 reads them, and the record of held
// locks: pure functions and a class, tested without opencode or a store.
import { describe, expect, it } from 'vitest'
import { HeldLocks } from '../plugin/src/held.ts'
import { filesTouchedBy, parseToolRules, patchPaths } from '../plugin/src/tools.ts'

describe('apply_patch headers, as opencode parses them', () => {
  const patch = (...body: string[]) => ['*** Begin Patch', ...body, '*** End Patch'].join('\n')

  it('takes the path after the colon, trimmed, with or without a space', () => {
    expect(patchPaths(patch('*** Update File:src/a.ts', '@@', '-x', '+y'))).toEqual(['src/a.ts'])
    expect(patchPaths(patch('*** Update File:  src/a.ts  ', '@@', '-x', '+y'))).toEqual(['src/a.ts'])
    expect(patchPaths(patch('*** Add File:\tb.txt \t', '+b'))).toEqual(['b.txt'])
    expect(patchPaths(patch('*** Delete File:   gone.txt'))).toEqual(['gone.txt'])
  })

  it('every header kind, a move only right after its update, duplicates once', () => {
    const p = patch('*** Add File: a.txt', '+x', '*** Update File: b.txt', '*** Move to:  c.txt', '@@', '-y', '+z', '*** Delete File: d.txt', '*** Move to: ignored.txt', '*** Add File: a.txt', '+again')
    expect(patchPaths(p)).toEqual(['a.txt', 'b.txt', 'c.txt', 'd.txt'])
  })

  it('what opencode ignores is not locked: indented or unspaced stars, empty paths, text outside the markers', () => {
    const p = ['before: *** Add File: outside.txt', '*** Begin Patch', '  *** Add File: indented.txt', '***Add File: nostar.txt', '*** Add File:   ', '*** Add File: real.txt', '+r', '*** End Patch', '*** Add File: after.txt'].join('\n')
    expect(patchPaths(p)).toEqual(['real.txt'])
    expect(patchPaths('*** Add File: x.txt\n+x')).toEqual([]) // no markers: opencode refuses the patch too
  })

  it('CRLF lines, indented markers, a heredoc around the whole patch', () => {
    expect(patchPaths('*** Begin Patch\r\n*** Update File: w.txt\r\n@@\r\n-a\r\n+b\r\n*** End Patch\r\n')).toEqual(['w.txt'])
    expect(patchPaths('  *** Begin Patch\n*** Add File: m.txt\n+m\n   *** End Patch')).toEqual(['m.txt'])
    expect(patchPaths("cat <<'EOF'\n*** Begin Patch\n*** Add File: h.txt\n+h\n*** End Patch\nEOF")).toEqual(['h.txt'])
  })
})

describe('which tools write which files', () => {
  it("opencode's tools and MCP filesystem servers' tools, with their argument names", () => {
    expect(filesTouchedBy('write', { filePath: 'x.ts', content: '' })).toEqual(['x.ts'])
    expect(filesTouchedBy('apply_patch', { patchText: '*** Begin Patch\n*** Add File:a\n+a\n*** End Patch' })).toEqual(['a'])
    expect(filesTouchedBy('filesystem_write_file', { path: '/p/w.txt', content: 'x' })).toEqual(['/p/w.txt'])
    expect(filesTouchedBy('filesystem_edit_file', { path: '/p/e.txt', edits: [{ oldText: 'a', newText: 'b' }] })).toEqual(['/p/e.txt'])
    expect(filesTouchedBy('filesystem_move_file', { source: '/p/a', destination: '/p/b' })).toEqual(['/p/a', '/p/b'])
    expect(filesTouchedBy('filesystem_create_directory', { path: '/p/new' })).toEqual(['/p/new'])
    expect(filesTouchedBy('rename', { old_path: 'o', new_path: 'n' })).toEqual(['n', 'o'])
    expect(filesTouchedBy('delete', { path: 'd' })).toEqual(['d'])
    expect(filesTouchedBy('fs_remove', { uri: 'file:///p/r.txt' })).toEqual(['/p/r.txt'])
    expect(filesTouchedBy('apply_diff', { path: 'a.ts', diff: '...' })).toEqual(['a.ts'])
    expect(filesTouchedBy('notebook_edit', { notebook_path: 'n.ipynb' })).toEqual(['n.ipynb'])
    expect(filesTouchedBy('str_replace_based_edit_tool', { command: 'str_replace', path: 's.ts' })).toEqual(['s.ts'])
    expect(filesTouchedBy('str_replace_based_edit_tool', { command: 'view', path: 's.ts' })).toBeNull()
    for (const t of ['read', 'glob', 'grep', 'list', 'bash', 'webfetch', 'todowrite', 'task', 'filesystem_read_file', 'filesystem_list_directory', 'execute']) expect(filesTouchedBy(t, { path: 'x' }), t).toBeNull()
  })

  it('a writing tool whose arguments name no file gives no path (the plugin refuses it)', () => {
    expect(filesTouchedBy('github_create_issue', { title: 't', body: 'b' })).toEqual([])
    expect(filesTouchedBy('write', { content: 'x' })).toEqual([])
    expect(filesTouchedBy('apply_patch', { patchText: 'not a patch' })).toEqual([])
    expect(filesTouchedBy('filesystem_write_file', { path: 'https://example.com/x' })).toEqual([])
  })

  it('FILE_LOCK_TOOLS adds tools and their argument names, or says a tool writes no files', () => {
    const rules = parseToolRules('deploy_config:out+backup, -github_create_issue ,scratchpad')
    expect(filesTouchedBy('deploy_config', { out: 'a.yml', backup: ['b.yml'], other: 'c' }, rules)).toEqual(['a.yml', 'b.yml'])
    expect(filesTouchedBy('github_create_issue', { title: 't' }, rules)).toBeNull()
    expect(filesTouchedBy('myserver_scratchpad', { path: 'p.md' }, rules)).toEqual(['p.md'])
    for (const bad of ['a b', 'x:', ':y', 'x:y:z', '-', 'tool:a+', 'é']) expect(() => parseToolRules(bad), bad).toThrow(/FILE_LOCK_TOOLS entry .* (is not a tool name|names no argument)/)
  })
})

describe('the record of held locks', () => {
  it('a call, a turn, a subagent under its parent: each releases exactly its own holds', () => {
    const held = new HeldLocks()
    held.took('turn', 'c1', 'parent', 'parent', ['/a'])
    held.took('turn', 'c2', 'child', 'parent', ['/a', '/b'])
    held.took('call', 'c3', 'other', 'other', ['/c'])
    held.took('call', undefined, 'other', 'other', ['/d']) // no callID: kept for the turn
    expect(held.held().map((h) => `${h.owner}:${h.path}`).sort()).toEqual(['other:/c', 'other:/d', 'parent:/a', 'parent:/b'])
    const plain = (hs: { at?: number }[]) => hs.map(({ at, ...h }) => (expect(at).toEqual(expect.any(Number)), h))
    expect(plain(held.endSession('child'))).toEqual([
      { session: 'child', owner: 'parent', path: '/a' },
      { session: 'child', owner: 'parent', path: '/b' },
    ])
    expect(held.held().filter((h) => h.owner === 'parent')).toEqual([{ owner: 'parent', path: '/a' }])
    expect(plain(held.endCall('c3'))).toEqual([{ session: 'other', owner: 'other', path: '/c' }])
    expect(held.endCall('c3')).toEqual([]) // the after hook and the part event both come: once
    expect(held.forget('other', '/d')).toBe(true)
    expect(held.forget('other', '/d')).toBe(false)
    expect(plain(held.endAll())).toEqual([{ session: 'parent', owner: 'parent', path: '/a' }])
    expect(held.size).toBe(0)
  })

  it('an interrupted run lets go only of the holds taken before it was interrupted', async () => {
    const held = new HeldLocks()
    held.took('turn', 'c1', 's', 's', ['/old'])
    await new Promise((r) => setTimeout(r, 5))
    const at = Date.now()
    await new Promise((r) => setTimeout(r, 5))
    held.took('turn', 'c2', 's', 's', ['/new'])
    expect(held.endSession('s', at).map((h) => h.path)).toEqual(['/old'])
    expect(held.held()).toEqual([{ owner: 's', path: '/new' }])
  })
})
