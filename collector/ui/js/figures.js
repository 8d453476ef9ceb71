// The latest CPU and memory of containers, by Docker id, as lists show them: first from
// `GET /hosts/{id}/stats/latest`, then from the WebSocket's `stats` messages. Cells are
// updated in place, never redrawn, so a link under the pointer is never replaced.

import { h, bytes, percent } from './dom.js';

export class Figures {
  constructor() {
    this.byDockerId = new Map();
  }

  /** Rows of `GET /hosts/{id}/stats/latest`. */
  addLatest(rows) {
    for (const row of rows) this.byDockerId.set(row.docker_id, { cpu: row.cpu_percent, memory: row.memory_usage_bytes });
  }

  /** A `stats` message: CPU from the rates (none for a run's first sample), memory unless not accounted. */
  addStats(message) {
    for (const sample of message.items) {
      this.byDockerId.set(sample.container_id, {
        cpu: sample.rates ? sample.rates.cpu_percent : null,
        memory: sample.counters.absent?.includes('memory') ? null : sample.counters.memory_usage_bytes,
      });
    }
  }

  cpuCell(row) {
    return h('span', { class: 'cpu' }, percent(this.byDockerId.get(row.docker_id)?.cpu));
  }

  memoryCell(row) {
    return h('span', { class: 'memory' }, bytes(this.byDockerId.get(row.docker_id)?.memory));
  }

  /** Writes the current figures into the cells of `rows` under `element`. */
  refresh(element, rows) {
    for (const row of rows) {
      const cells = element.querySelector(`tr[data-id="${row.id}"]`);
      const figure = this.byDockerId.get(row.docker_id);
      if (!cells) continue;
      cells.querySelector('.cpu').textContent = percent(figure?.cpu);
      cells.querySelector('.memory').textContent = bytes(figure?.memory);
    }
  }
}
