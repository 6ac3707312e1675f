// A custom opencode tool for the end-to-end tests: it writes a file, but only after the test opens
// a gate, so a test can hold a file lock for exactly as long as it needs. Its name says "write",
// so the plugin locks its filePath like any other writing tool. Installed as .opencode/tool/slow_write.ts.
import { tool } from '@opencode-ai/plugin'
import fs from 'node:fs'
import path from 'node:path'

export default tool({
  description: 'Write a file once the gate opens (test tool)',
  args: { filePath: tool.schema.string(), content: tool.schema.string() },
  async execute(args, ctx) {
    const file = path.resolve(ctx.directory, args.filePath)
    const gates = path.join(ctx.directory, '.gates')
    fs.mkdirSync(gates, { recursive: true })
    const name = path.basename(file)
    fs.writeFileSync(path.join(gates, `${name}.holding`), String(process.pid))
    const deadline = Date.now() + 60_000
    while (!fs.existsSync(path.join(gates, `${name}.open`)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25))
    fs.writeFileSync(file, args.content)
    return `slow_write wrote ${args.filePath}`
  },
})
