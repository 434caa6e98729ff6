// Package reporthtml renders a station report (station.Report) as one
// self-contained HTML page: inline CSS, inline SVG charts, no script, no
// font or image fetched from anywhere, so it opens the same on a laptop
// with no network as on the line's PC.
package reporthtml

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"math"
	"time"

	"github.com/factory-id/station/station"
)

//go:embed report.html.tmpl
var pageText string

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"ms":   func(v float64) string { return fmt.Sprintf("%.1f", v) },
	"time": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") },
	"date": func(t time.Time) string { return t.UTC().Format("2006-01-02") },
}).Parse(pageText))

// Bar is one bar of a chart, in the SVG's user units.
type Bar struct {
	Name  string // what the bar is (a step, a cause, a period), for data-name
	Class string
	X, Y  float64
	W, H  float64
	Title string // shown on hover (an SVG <title>)
}

// Label is a text of a chart.
type Label struct {
	X, Y   float64
	Anchor string // start | middle | end
	Text   string
}

// Chart is an inline SVG.
type Chart struct {
	ID     string
	Title  string
	Width  float64
	Height float64
	Bars   []Bar
	Labels []Label
	Empty  string // said instead of the chart when there is nothing to draw
}

type view struct {
	R          *station.Report
	StepTimes  Chart
	Throughput Chart
	ByStep     Chart
	ByCause    Chart
	Generated  time.Time
}

// Render writes the report as an HTML page to w.
func Render(w io.Writer, r *station.Report, generated time.Time) error {
	return page.Execute(w, view{R: r, StepTimes: stepTimesChart(r), Throughput: throughputChart(r),
		ByStep:  countChart("failures-by-step", "Failed attempts by step", r.FailuresByStep),
		ByCause: countChart("failures-by-cause", "Failed attempts by cause", r.FailuresByCause), Generated: generated})
}

const (
	chartWidth = 720.0
	labelWidth = 150.0
	rowHeight  = 26.0
	barHeight  = 16.0
	valueWidth = 240.0
)

// stepTimesChart draws each step's p95 (pale) with its p50 (dark) over it.
func stepTimesChart(r *station.Report) Chart {
	c := Chart{ID: "step-times", Title: "Time per step (p50 dark, p95 pale), ms", Width: chartWidth}
	if len(r.StepTimes) == 0 {
		c.Empty = "No step finished in this window."
		return c
	}
	top := 0.0
	for _, s := range r.StepTimes {
		top = math.Max(top, s.P95Ms)
	}
	scale := (chartWidth - labelWidth - valueWidth) / math.Max(top, 1e-9)
	for i, s := range r.StepTimes {
		y := float64(i)*rowHeight + 6
		c.Labels = append(c.Labels, Label{X: labelWidth - 8, Y: y + barHeight - 3, Anchor: "end", Text: s.Step})
		c.Bars = append(c.Bars,
			Bar{Name: s.Step, Class: "p95", X: labelWidth, Y: y, W: math.Max(s.P95Ms*scale, 1), H: barHeight, Title: fmt.Sprintf("%s p95 %.1f ms", s.Step, s.P95Ms)},
			Bar{Name: s.Step, Class: "p50", X: labelWidth, Y: y, W: math.Max(s.P50Ms*scale, 1), H: barHeight, Title: fmt.Sprintf("%s p50 %.1f ms", s.Step, s.P50Ms)})
		c.Labels = append(c.Labels, Label{X: labelWidth + s.P95Ms*scale + 6, Y: y + barHeight - 3, Anchor: "start",
			Text: fmt.Sprintf("p50 %.1f · p95 %.1f ms (n=%d)", s.P50Ms, s.P95Ms, s.Count)})
	}
	c.Height = float64(len(r.StepTimes))*rowHeight + 12
	return c
}

// throughputChart draws passed (and, stacked on them, failed) per period.
func throughputChart(r *station.Report) Chart {
	unit := "hour"
	if r.Throughput.PeriodHours != 1 {
		unit = fmt.Sprintf("%d hours", r.Throughput.PeriodHours)
	}
	c := Chart{ID: "throughput", Title: "Units passed (and failed attempts) per " + unit, Width: chartWidth, Height: 220}
	ps := r.Throughput.Periods
	if len(ps) == 0 {
		c.Empty = "The window is empty."
		return c
	}
	top := 1
	for _, p := range ps {
		top = max(top, p.Passed+p.Failed)
	}
	const left, bottom, plotH = 40.0, 190.0, 160.0
	slot := (chartWidth - left - 10) / float64(len(ps))
	w := math.Max(slot*0.7, 1)
	c.Labels = append(c.Labels, Label{X: left - 6, Y: bottom - plotH + 4, Anchor: "end", Text: fmt.Sprint(top)},
		Label{X: left - 6, Y: bottom, Anchor: "end", Text: "0"})
	every := int(math.Ceil(float64(len(ps)) / 12)) // at most 12 axis labels
	for i, p := range ps {
		x := left + float64(i)*slot + (slot-w)/2
		hp := float64(p.Passed) / float64(top) * plotH
		hf := float64(p.Failed) / float64(top) * plotH
		name := p.Start.UTC().Format(time.RFC3339)
		if p.Passed > 0 {
			c.Bars = append(c.Bars, Bar{Name: name, Class: "passed", X: x, Y: bottom - hp, W: w, H: hp,
				Title: fmt.Sprintf("%s: %d passed", p.Start.UTC().Format("2006-01-02 15:04"), p.Passed)})
		}
		if p.Failed > 0 {
			c.Bars = append(c.Bars, Bar{Name: name, Class: "failed", X: x, Y: bottom - hp - hf, W: w, H: hf,
				Title: fmt.Sprintf("%s: %d failed attempts", p.Start.UTC().Format("2006-01-02 15:04"), p.Failed)})
		}
		if i%every == 0 {
			layout := "15:04"
			if r.Throughput.PeriodHours >= 24 {
				layout = "01-02"
			}
			c.Labels = append(c.Labels, Label{X: x + w/2, Y: bottom + 16, Anchor: "middle", Text: p.Start.UTC().Format(layout)})
		}
	}
	return c
}

// countChart draws one horizontal bar per count.
func countChart(id, title string, counts []station.Count) Chart {
	c := Chart{ID: id, Title: title, Width: chartWidth}
	if len(counts) == 0 {
		c.Empty = "No failed attempt in this window."
		return c
	}
	top := 1
	for _, n := range counts {
		top = max(top, n.Count)
	}
	scale := (chartWidth - labelWidth - 60) / float64(top)
	for i, n := range counts {
		y := float64(i)*rowHeight + 6
		c.Labels = append(c.Labels, Label{X: labelWidth - 8, Y: y + barHeight - 3, Anchor: "end", Text: n.Name},
			Label{X: labelWidth + float64(n.Count)*scale + 6, Y: y + barHeight - 3, Anchor: "start", Text: fmt.Sprint(n.Count)})
		c.Bars = append(c.Bars, Bar{Name: n.Name, Class: "failed", X: labelWidth, Y: y, W: float64(n.Count) * scale, H: barHeight,
			Title: fmt.Sprintf("%s: %d", n.Name, n.Count)})
	}
	c.Height = float64(len(counts))*rowHeight + 12
	return c
}
