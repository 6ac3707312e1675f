'use strict'
// A grouped bar chart (SVG) of pairs/s per subject and concurrency, from the bench results.
const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#17becf']

function renderChart(results, meta) {
  const rows = results.filter((r) => r.pairsPerSec)
  const subjects = [...new Set(rows.map((r) => r.subject))]
  const levels = [...new Set(rows.map((r) => r.concurrency))]
  const max = Math.max(...rows.map((r) => r.pairsPerSec))
  const W = 900, H = 420, left = 70, bottom = 60, top = 50, right = 180
  const plotW = W - left - right, plotH = H - top - bottom
  const groupW = plotW / levels.length
  const barW = (groupW * 0.8) / subjects.length
  const y = (v) => top + plotH - (v / max) * plotH
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${left}" y="24" font-size="15">Lock acquire+release pairs/s (median of ${meta.runs} runs x ${meta.seconds}s), ${meta.cores} cores, node ${meta.node}</text>`,
  ]
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4
    parts.push(`<line x1="${left}" x2="${left + plotW}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/>`, `<text x="${left - 6}" y="${y(v) + 4}" text-anchor="end">${Math.round(v).toLocaleString('en-US')}</text>`)
  }
  levels.forEach((c, gi) => {
    const gx = left + gi * groupW + groupW * 0.1
    subjects.forEach((s, si) => {
      const r = rows.find((x) => x.subject === s && x.concurrency === c)
      if (!r) return
      const x = gx + si * barW
      parts.push(`<rect x="${x}" y="${y(r.pairsPerSec)}" width="${barW - 2}" height="${top + plotH - y(r.pairsPerSec)}" fill="${COLORS[si % COLORS.length]}"><title>${s} c=${c}: ${Math.round(r.pairsPerSec)} pairs/s</title></rect>`)
    })
    parts.push(`<text x="${left + gi * groupW + groupW / 2}" y="${top + plotH + 20}" text-anchor="middle">concurrency ${c}</text>`)
  })
  subjects.forEach((s, si) => {
    parts.push(`<rect x="${W - right + 15}" y="${top + si * 20}" width="12" height="12" fill="${COLORS[si % COLORS.length]}"/>`, `<text x="${W - right + 32}" y="${top + si * 20 + 10}">${s}</text>`)
  })
  parts.push('</svg>\n')
  return parts.join('\n')
}

module.exports = { renderChart }
