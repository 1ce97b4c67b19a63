// The dashboard's script: signs in, cancels jobs, and keeps each page live. Pages are rendered on
// the coordinator; this only fetches what changed and draws the charts (with the vendored uPlot).
(function () {
  'use strict';
  const body = document.body;
  const page = body.dataset.page;
  const live = document.getElementById('live');
  const PALETTE = ['#2f6db5', '#d9782d', '#3b9a5a', '#c23b4a', '#7d5ab5', '#8c6239', '#d163a6', '#6f7782',
    '#a5a21f', '#2aa0b0'];
  // Points one series keeps in the page; older ones are thinned beyond it.
  const KEEP = 20000;
  // Every request gives up after this long (the next poll tries again).
  const DEADLINE_MS = 10000;

  function status(text, bad) {
    live.textContent = text;
    live.className = bad ? 'error' : 'muted';
  }

  // ---- signing in: the token is kept in a cookie for this site ----
  function setToken(token) {
    const secure = location.protocol === 'https:' ? '; Secure' : '';
    document.cookie = 'shoal_token=' + encodeURIComponent(token) + '; path=/; max-age=31536000; SameSite=Strict' + secure;
  }
  const fragment = location.hash.match(/^#token=(.+)$/);
  if (fragment) {
    setToken(decodeURIComponent(fragment[1]));
    history.replaceState(null, '', location.pathname + location.search);
    if (page === 'login') {
      location.reload();
      return;
    }
  }
  if (page === 'login') {
    document.getElementById('login').addEventListener('submit', function (e) {
      e.preventDefault();
      setToken(document.getElementById('token').value.trim());
      location.reload();
    });
    return;
  }

  // ---- requests ----
  async function getJSON(url) {
    const r = await fetch(url, { headers: { accept: 'application/json' }, cache: 'no-store', signal: AbortSignal.timeout(DEADLINE_MS) });
    if (r.status === 401) {
      location.reload();
      throw new Error('signed out');
    }
    const value = await r.json();
    if (!r.ok) throw new Error(value.error || r.statusText);
    return value;
  }

  function every(ms, step) {
    let timer = null;
    async function tick() {
      let again = true;
      try {
        again = (await step()) !== false;
        status('live · updated ' + new Date().toLocaleTimeString());
      } catch (err) {
        status('cannot reach the coordinator (' + err.message + '); retrying', true);
      }
      if (again) timer = setTimeout(tick, ms);
      else status('finished');
    }
    timer = setTimeout(tick, ms);
    return () => clearTimeout(timer);
  }

  // ---- cancel, on every page that has the button ----
  document.addEventListener('click', async function (e) {
    const button = e.target.closest('button.cancel');
    if (!button) return;
    const id = button.dataset.job;
    const name = button.dataset.name ? button.dataset.name + ' (' + id + ')' : id;
    if (!confirm('Cancel ' + name + '? Its running ranks stop now; this cannot be undone.')) return;
    button.disabled = true;
    try {
      const r = await fetch('/api/jobs/' + encodeURIComponent(id) + '/cancel', {
        method: 'POST',
        headers: { 'x-shoal-dashboard': '1', accept: 'application/json' },
        signal: AbortSignal.timeout(DEADLINE_MS),
      });
      const v = await r.json();
      if (!r.ok) throw new Error(v.error || r.statusText);
      status(v.job_id + ' is ' + v.state);
      button.remove();
      if (refreshNow) refreshNow();
    } catch (err) {
      button.disabled = false;
      status('cancel failed: ' + err.message, true);
    }
  });

  // ---- tables that reload: the jobs and workers pages fetch themselves and swap the rows ----
  let refreshNow = null;
  function reloadTable(id) {
    async function step() {
      const r = await fetch(location.href, { cache: 'no-store', signal: AbortSignal.timeout(DEADLINE_MS) });
      if (r.status === 401) {
        location.reload();
        return false;
      }
      const doc = new DOMParser().parseFromString(await r.text(), 'text/html');
      const fresh = doc.querySelector('#' + id + ' tbody');
      const current = document.querySelector('#' + id + ' tbody');
      if (fresh && current && !document.querySelector('#' + id + ' button.cancel:disabled')) {
        current.replaceWith(fresh);
      }
    }
    refreshNow = step;
    every(3000, step);
  }

  // ---- charts ----
  function chartSize(figure) {
    return { width: Math.max(280, figure.clientWidth - 8), height: 220 };
  }

  function emptyChart(figure, text) {
    const plot = figure.querySelector('.plot');
    if (!plot.querySelector('.no-data')) {
      plot.textContent = '';
      const p = document.createElement('p');
      p.className = 'no-data muted';
      p.textContent = text;
      plot.appendChild(p);
    }
    figure.dataset.points = '0';
    figure.dataset.series = '0';
  }

  // One uPlot per figure, rebuilt when its set of series changes, else given new data.
  function drawChart(figure, labels, tables, options) {
    const plot = figure.querySelector('.plot');
    let points = 0;
    tables.forEach((t) => { points += t[0].length; });
    if (tables.length === 0 || points === 0) {
      if (figure.uplot) {
        figure.uplot.destroy();
        figure.uplot = null;
      }
      emptyChart(figure, options.empty || 'No data yet.');
      return;
    }
    const data = uPlot.join(tables);
    const key = labels.join('|');
    if (figure.uplot && figure.uplotKey === key) {
      figure.uplot.setData(data);
    } else {
      if (figure.uplot) figure.uplot.destroy();
      plot.textContent = '';
      const series = [{ label: options.x || 'step' }].concat(labels.map((label, i) => Object.assign({
        label: label,
        stroke: PALETTE[i % PALETTE.length],
        width: 1.5,
        spanGaps: true,
        points: { show: false },
      }, options.series ? options.series(i) : {})));
      figure.uplot = new uPlot(Object.assign({
        series: series,
        scales: { x: { time: false } },
        axes: [{ label: options.x || 'step' }, { size: 60 }],
        legend: { live: true },
        cursor: { drag: { x: true, y: false } },
        hooks: options.hooks || {},
      }, chartSize(figure)), data, plot);
      figure.uplotKey = key;
    }
    figure.dataset.points = String(points);
    figure.dataset.series = String(tables.length);
  }

  window.addEventListener('resize', function () {
    document.querySelectorAll('figure.chart').forEach((f) => { if (f.uplot) f.uplot.setSize(chartSize(f)); });
  });

  // ---- a job: curves per split and rank, events, facts and ranks, polled each second ----
  const METRICS = {
    loss: { splits: ['train', 'validation'] },
    accuracy: { splits: ['validation', 'train'], empty: 'No accuracy: this job reports none (regression, or not yet validated).' },
    lr: { splits: ['train'] },
    samples_per_s: { splits: ['train'] },
    comm_share: { splits: ['train'], empty: 'No communication: a single rank, or not measured yet.' },
  };
  const COLUMNS = ['step', 'loss', 'accuracy', 'lr', 'samples_per_s', 'comm_share'];

  function jobPage() {
    const id = body.dataset.job;
    const snapshot = JSON.parse(document.getElementById('snapshot').textContent);
    const store = new Map();
    let lastSeq = snapshot.last_seq;
    let total = 0;

    function merge(curves) {
      total += curves.points;
      curves.series.forEach((s) => {
        const key = s.split + ' r' + s.rank;
        let mine = store.get(key);
        if (!mine) {
          mine = { split: s.split, rank: s.rank };
          COLUMNS.forEach((c) => { mine[c] = []; });
          store.set(key, mine);
        }
        COLUMNS.forEach((c) => { Array.prototype.push.apply(mine[c], s[c]); });
        if (mine.step.length > KEEP) {
          const half = Math.floor(mine.step.length / 2);
          COLUMNS.forEach((c) => { mine[c] = mine[c].filter((_, i) => i >= half || i % 2 === 0); });
        }
      });
    }

    function draw() {
      const ranks = new Set([...store.values()].map((s) => s.rank));
      document.querySelectorAll('figure.chart').forEach((figure) => {
        const metric = figure.dataset.chart;
        const spec = METRICS[metric];
        const labels = [];
        const tables = [];
        spec.splits.forEach((split) => {
          [...store.values()].filter((s) => s.split === split).sort((a, b) => a.rank - b.rank).forEach((s) => {
            const xs = [];
            const ys = [];
            // The communication share is drawn in percent.
            const scale = metric === 'comm_share' ? 100 : 1;
            s.step.forEach((step, i) => {
              const v = s[metric][i] === null ? null : s[metric][i] * scale;
              if (v !== null && v !== undefined && Number.isFinite(v)) {
                xs.push(step);
                ys.push(v);
              }
            });
            if (xs.length === 0) return;
            labels.push(ranks.size > 1 ? split + ' rank ' + s.rank : split);
            tables.push([xs, ys]);
          });
        });
        drawChart(figure, labels, tables, { empty: spec.empty });
      });
      const shown = [...store.values()].reduce((n, s) => n + s.step.length, 0);
      document.getElementById('points').textContent = total + ' points' +
        (shown < total ? ', ' + shown + ' drawn (thinned on the server; spikes kept)' : '');
    }

    function addEvents(events) {
      const list = document.getElementById('events');
      events.forEach((e) => {
        const li = document.createElement('li');
        li.className = 'ev-' + e.level;
        const t = document.createElement('time');
        t.textContent = e.time;
        li.appendChild(t);
        li.appendChild(document.createTextNode(' ' + e.text));
        list.insertBefore(li, list.firstChild);
      });
    }

    merge(snapshot.curves);
    draw();
    if (snapshot.terminal) {
      status('finished');
      return;
    }
    every(1000, async function () {
      const u = await getJSON('/api/jobs/' + encodeURIComponent(id) + '/updates?after=' + lastSeq);
      if (u.curves.points > 0) {
        merge(u.curves);
        draw();
      }
      addEvents(u.events);
      document.getElementById('facts').innerHTML = u.facts;
      document.getElementById('ranks').innerHTML = u.ranks;
      lastSeq = u.last_seq;
      if (u.terminal) {
        document.querySelectorAll('h1 button.cancel').forEach((b) => b.remove());
        return false;
      }
    });
  }

  // ---- a search: leaderboard, parallel coordinates, the metric over time, every trial's curve ----
  function searchPage() {
    const id = body.dataset.job;
    const better = (data) => (a, b) => (data.maximize ? a > b : a < b);

    function overTime(data) {
      const done = data.trials.filter((t) => t.value !== null && Number.isFinite(t.value))
        .map((t) => ({ at: t.finished_s !== null ? t.finished_s : t.started_s, value: t.value }))
        .sort((a, b) => a.at - b.at);
      const xs = done.map((d) => d.at);
      let best = null;
      const bestSoFar = done.map((d) => {
        if (best === null || better(data)(d.value, best)) best = d.value;
        return best;
      });
      const figure = document.querySelector('figure[data-chart="over_time"]');
      const tables = xs.length ? [[xs, done.map((d) => d.value)], [xs, bestSoFar]] : [];
      drawChart(figure, ['trial ' + data.metric, 'best so far'], tables, {
        x: 'seconds since the search started',
        empty: 'No trial has a value yet.',
        series: (i) => (i === 0 ? { paths: () => null, points: { show: true, size: 7 } } : { stroke: '#3b9a5a', width: 2 }),
      });
    }

    function trialCurves(data) {
      const figure = document.querySelector('figure[data-chart="trial_curves"]');
      const drawn = data.trials.filter((t) => t.curve.length > 0);
      const tables = drawn.map((t) => [t.curve.map((p) => p[0]), t.curve.map((p) => p[1])]);
      const labels = drawn.map((t) => 'trial ' + t.index + ' (' + t.state + ')');
      const hooks = {
        draw: [function (u) {
          const ctx = u.ctx;
          ctx.save();
          ctx.strokeStyle = '#888';
          ctx.setLineDash([4, 4]);
          data.rungs.forEach((r) => {
            const x = u.valToPos(r, 'x', true);
            ctx.beginPath();
            ctx.moveTo(x, u.bbox.top);
            ctx.lineTo(x, u.bbox.top + u.bbox.height);
            ctx.stroke();
          });
          ctx.setLineDash([]);
          ctx.lineWidth = 2;
          drawn.forEach((t, i) => {
            if (t.state !== 'stopped') return;
            const last = t.curve[t.curve.length - 1];
            const x = u.valToPos(last[0], 'x', true);
            const y = u.valToPos(last[1], 'y', true);
            ctx.strokeStyle = PALETTE[i % PALETTE.length];
            ctx.beginPath();
            ctx.moveTo(x - 5, y - 5); ctx.lineTo(x + 5, y + 5);
            ctx.moveTo(x + 5, y - 5); ctx.lineTo(x - 5, y + 5);
            ctx.stroke();
          });
          ctx.restore();
        }],
      };
      drawChart(figure, labels, tables, {
        x: data.budget_unit + ' used',
        empty: 'No trial has been validated yet.',
        hooks: hooks,
        series: (i) => (drawn[i].state === 'stopped' ? { dash: [6, 3] } : {}),
      });
      figure.dataset.rungs = String(data.rungs.length);
      figure.dataset.stopped = String(drawn.filter((t) => t.state === 'stopped').length);
    }

    function draw(data) {
      overTime(data);
      trialCurves(data);
    }

    draw(JSON.parse(document.getElementById('search').textContent));
    every(3000, async function () {
      const s = await getJSON('/api/jobs/' + encodeURIComponent(id) + '/search');
      document.getElementById('facts').innerHTML = s.facts;
      document.getElementById('leaderboard').innerHTML = s.leaderboard;
      document.getElementById('parallel').innerHTML = s.parallel;
      draw(s.data);
      if (s.terminal) {
        document.querySelectorAll('h1 button.cancel').forEach((b) => b.remove());
        return false;
      }
    });
  }

  if (page === 'jobs') reloadTable('jobs');
  else if (page === 'workers') reloadTable('workers');
  else if (page === 'job') jobPage();
  else if (page === 'search') searchPage();
  body.dataset.ready = 'yes';
})();
