/**
 * Long work (import, export, convert, check) runs as a "job": a row in the
 * job dock with a progress bar, the bytes done, and a Cancel button that
 * aborts through an AbortSignal.
 */
import type { Progress } from '../../src/client/index.js';
import { fmtBytes, h } from './ui.js';

export interface JobControl {
  signal: AbortSignal;
  /** Moves the bar; `unit` says whether `done` / `total` are bytes (shown as sizes) or plain steps. */
  progress: (p: Progress, unit?: 'bytes' | 'percent') => void;
  /** Changes the text under the bar (e.g. "converting…"). */
  phase: (text: string) => void;
}

/** Runs `work` as a visible job; the promise settles with the work's outcome. */
export async function runJob<T>(label: string, work: (job: JobControl) => Promise<T>): Promise<T> {
  const dock = document.getElementById('jobs')!;
  const ac = new AbortController();
  const bar = h('div', { class: 'job-bar-fill indeterminate' });
  const text = h('span', { class: 'job-text' }, 'starting…');
  const cancel = h('button', { class: 'btn btn-small', type: 'button', onclick: () => {
    ac.abort();
    cancel.setAttribute('disabled', '');
    text.textContent = 'cancelling…';
  } }, 'Cancel');
  const row = h('div', { class: 'job', 'data-job': label }, h('div', { class: 'job-head' }, h('strong', {}, label), text, cancel), h('div', { class: 'job-bar', role: 'progressbar', 'aria-label': label }, bar));
  dock.append(row);
  dock.hidden = false;
  const started = performance.now();
  const control: JobControl = {
    signal: ac.signal,
    progress(p, unit = 'bytes') {
      if (ac.signal.aborted) return;
      const pct = p.total > 0 ? Math.min(100, (100 * p.done) / p.total) : 0;
      bar.classList.remove('indeterminate');
      bar.style.width = `${pct.toFixed(1)}%`;
      row.querySelector('.job-bar')!.setAttribute('aria-valuenow', pct.toFixed(0));
      const secs = (performance.now() - started) / 1000;
      const rate = secs > 0.2 ? ` · ${fmtBytes(p.done / secs)}/s` : '';
      text.textContent = unit === 'bytes' ? `${fmtBytes(p.done)} of ${fmtBytes(p.total)} (${pct.toFixed(0)}%)${rate}` : `${pct.toFixed(0)}%`;
    },
    phase(t) {
      text.textContent = t;
    },
  };
  try {
    return await work(control);
  } finally {
    row.remove();
    if (!dock.children.length) dock.hidden = true;
  }
}
