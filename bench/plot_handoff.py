#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Draws hand-off latency distributions into an SVG, with no plotting library.

Reads the --samples files of bench_python.py and bench_redis.py (JSON:
{"group": title, "unit": "us", "series": {label: [µs, ...]}}) and draws one
panel a file: for each lock, the fraction of hand-offs done within a time
(an empirical CDF), time on a log scale shared by the panels.

  plot_handoff.py [--note TEXT] -o OUT.svg SAMPLES.json...
"""

import json
import math
import sys
from xml.sax.saxutils import escape

COLOURS = ['#1b6ac9', '#d1495b', '#2e933c', '#e08e0b', '#7b4ea3', '#5b5b5b', '#0f9ba8']
WIDTH, PANEL_H, LEFT, RIGHT, TOP = 900, 300, 80, 350, 58
PLOT_W = WIDTH - LEFT - RIGHT


def label_us(us):
    """@us with three significant digits at most, in s, ms or µs."""
    for scale, unit in ((1e6, 's'), (1e3, 'ms'), (1, 'µs')):
        if us >= scale or scale == 1:
            return '%s %s' % ('%.3g' % (us / scale), unit)


def percentile(values, q):
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def panel(out, top, group, series, lo, hi, targets):
    def x(us):
        return LEFT + PLOT_W * (math.log10(max(us, 10 ** lo)) - lo) / (hi - lo)

    def y(frac):
        return top + 20 + (PANEL_H - 60) * (1 - frac)

    bottom = y(0)
    out.append('<text x="%d" y="%d" class="h">%s</text>' % (LEFT, top + 10, escape(group)))
    for frac, text in ((0, '0 %'), (0.5, '50 % (p50)'), (0.99, '99 % (p99)'), (1, '')):
        out.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" class="g"/>' % (
            LEFT, LEFT + PLOT_W, y(frac), y(frac)))
        out.append('<text x="%d" y="%.1f" class="a" text-anchor="end">%s</text>' % (
            LEFT - 6, y(frac) + 4 + (6 if frac == 0.99 else 0), text))
    for decade in range(lo, hi + 1):
        out.append('<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" class="g"/>' % (
            x(10 ** decade), x(10 ** decade), y(1), bottom))
        out.append('<text x="%.1f" y="%.1f" class="a" text-anchor="middle">%s</text>' % (
            x(10 ** decade), bottom + 16, label_us(10 ** decade)))
    for us in targets:
        out.append('<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" class="t"/>' % (
            x(us), x(us), y(1), bottom))
    if targets:
        out.append('<text x="%d" y="%d" class="a">dashed: the targets, p50 &lt; %s and p99 '
                   '&lt; %s</text>' % (LEFT + PLOT_W + 16, top + 30 + 34 * len(series),
                                       label_us(targets[0]), label_us(targets[1])))
    out.append('<text x="%d" y="%.1f" class="a" text-anchor="middle">release → the waiter '
               'holds the lock (log scale)</text>' % (LEFT + PLOT_W // 2, bottom + 34))
    for k, (label, values) in enumerate(series.items()):
        values = sorted(values)
        colour = COLOURS[k % len(COLOURS)]
        n = len(values)
        points = ['%.1f,%.1f' % (x(values[0]), y(0))]
        for i, v in enumerate(values):
            points.append('%.1f,%.1f %.1f,%.1f' % (x(v), y(i / n), x(v), y((i + 1) / n)))
        out.append('<polyline points="%s" fill="none" stroke="%s" stroke-width="1.8"/>' % (
            ' '.join(points), colour))
        ly = top + 30 + 34 * k
        out.append('<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="%s" stroke-width="3"/>' % (
            LEFT + PLOT_W + 16, LEFT + PLOT_W + 36, ly, ly, colour))
        out.append('<text x="%d" y="%d" class="l">%s</text>' % (
            LEFT + PLOT_W + 42, ly + 4, escape(label)))
        out.append('<text x="%d" y="%d" class="a">p50 %s, p99 %s, %d hand-offs</text>' % (
            LEFT + PLOT_W + 42, ly + 18, label_us(percentile(values, 0.5)),
            label_us(percentile(values, 0.99)), n))


def main():
    args = sys.argv[1:]
    note, out_path, files = '', None, []
    while args:
        a = args.pop(0)
        if a == '--note':
            note = args.pop(0)
        elif a == '-o':
            out_path = args.pop(0)
        else:
            files.append(a)
    if out_path is None or not files:
        sys.exit(__doc__)
    groups = []
    for path in files:
        with open(path) as f:
            data = json.load(f)
        series = {k: v for k, v in data['series'].items() if v}
        if series:
            groups.append((data['group'], series))
    every = [v for _, series in groups for values in series.values() for v in values]
    lo = math.floor(math.log10(max(1.0, min(every))))
    hi = math.ceil(math.log10(max(every)))
    height = TOP + PANEL_H * len(groups) + 10
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
           'font-family="DejaVu Sans, Arial, sans-serif">' % (WIDTH, height, WIDTH, height),
           '<style>.h{font-size:15px;font-weight:bold}.a{font-size:11px;fill:#444}'
           '.l{font-size:12px}.g{stroke:#ddd;stroke-width:1}'
           '.t{stroke:#999;stroke-width:1;stroke-dasharray:4 3}</style>',
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="%d" y="22" class="h">Hand-off latency: fraction of hand-offs done '
           'within a time</text>' % LEFT,
           '<text x="%d" y="40" class="a">%s</text>' % (LEFT, escape(note))]
    for k, (group, series) in enumerate(groups):
        targets = [1000, 5000] if 'Redis' in group else []    # the p50 and p99
        panel(out, TOP + k * PANEL_H, group, series, lo, hi, targets)
    out.append('</svg>')
    with open(out_path, 'w') as f:
        f.write('\n'.join(out) + '\n')


if __name__ == '__main__':
    main()
