package cmd

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/internal/cli"
	"github.com/factory-id/station/internal/reporthtml"
	"github.com/factory-id/station/station"
)

type reportOptions struct {
	since    string
	from, to string
	out      string
}

func newReportCommand(g *globals) *cobra.Command {
	o := &reportOptions{}
	c := &cobra.Command{
		Use:   "report [--since 8h | --from T --to T] [--out report.html]",
		Short: "The shift's yield: units attempted, passed, failed, resumed; failures by step and cause; time per step; units/hour",
		Long: `Reads the audit log and the database over a window (by default the last 8 hours)
and reports the units attempted, passed, failed and resumed, the failed attempts
by step and by cause, each step's time (p50, p95, max), units passed per hour,
and when the certificates issued in the window expire. A unit counts as failed
when an attempt failed in the window and none passed; as resumed when it passed
by carrying on its journal (after a failure, a crash or an interrupt).

--since takes a duration (8h, 90m, 2d); --from and --to RFC 3339 times
(2025-03-01T06:00:00Z) or dates (2025-03-01, UTC midnight); --to defaults to now.
Without --out it prints a text summary (-o json: the report as one document).
--out FILE writes a self-contained HTML page (inline CSS and SVG charts, no
script, nothing fetched from the network). It only reads.`,
		Args: cli.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error { return o.run(g, c) },
	}
	f := c.Flags()
	f.StringVar(&o.since, "since", "", "the window is this long, up to now (default 8h)")
	f.StringVar(&o.from, "from", "", "the window's start (RFC 3339 time or date)")
	f.StringVar(&o.to, "to", "", "the window's end (RFC 3339 time or date; default now)")
	f.StringVar(&o.out, "out", "", "write the report as a self-contained HTML page to FILE")
	return c
}

// window resolves the flags to [from, to).
func (o *reportOptions) window(now time.Time) (time.Time, time.Time, error) {
	if o.since != "" && (o.from != "" || o.to != "") {
		return time.Time{}, time.Time{}, cli.Usagef("--since and --from/--to are exclusive")
	}
	if o.to != "" && o.from == "" {
		return time.Time{}, time.Time{}, cli.Usagef("--to needs --from")
	}
	if o.from == "" {
		since := o.since
		if since == "" {
			since = "8h"
		}
		var d configs.Duration
		if err := d.UnmarshalText([]byte(since)); err != nil || d <= 0 {
			return time.Time{}, time.Time{}, cli.Usagef("--since %q: want a positive duration such as 8h, 90m or 2d", since)
		}
		return now.Add(-d.D()), now, nil
	}
	from, err := parseReportTime("--from", o.from)
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	to := now
	if o.to != "" {
		if to, err = parseReportTime("--to", o.to); err != nil {
			return time.Time{}, time.Time{}, err
		}
	}
	if !from.Before(to) {
		return time.Time{}, time.Time{}, cli.Usagef("--from %s is not before --to %s", from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	return from, to, nil
}

func parseReportTime(flag, s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	return time.Time{}, cli.Usagef("%s %q: want an RFC 3339 time (2025-03-01T06:00:00Z) or a date (2025-03-01)", flag, s)
}

func (o *reportOptions) run(g *globals, c *cobra.Command) error {
	now := time.Now()
	from, to, err := o.window(now)
	if err != nil {
		return err
	}
	cfg, err := g.config()
	if err != nil {
		return err
	}
	db, err := station.OpenDB(cfg, true)
	if err != nil {
		return err
	}
	rep, err := station.MakeReport(db, cfg.Station.ID, from, to, now)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if o.out != "" {
		var page bytes.Buffer
		if err := reporthtml.Render(&page, rep, now); err != nil {
			return err
		}
		if err := writeFileAtomic(o.out, page.Bytes()); err != nil {
			return fmt.Errorf("writing the report: %w", err)
		}
	}
	if g.json() {
		return cli.WriteJSON(c.OutOrStdout(), rep)
	}
	if o.out != "" {
		fmt.Fprintf(c.OutOrStdout(), "wrote the report of %s to %s to %s: %d units attempted, %d passed, %d failed\n",
			rep.From.Format(time.RFC3339), rep.To.Format(time.RFC3339), o.out, rep.Attempted, rep.Passed, rep.Failed)
		return nil
	}
	writeReportText(c.OutOrStdout(), rep)
	return nil
}

// writeFileAtomic writes data to path through a temporary file in the same
// folder, so a reader never sees half a page.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

func counts(cs []station.Count) string {
	if len(cs) == 0 {
		return "none"
	}
	var parts []string
	for _, c := range cs {
		parts = append(parts, fmt.Sprintf("%s %d", c.Name, c.Count))
	}
	return strings.Join(parts, ", ")
}

func writeReportText(w io.Writer, r *station.Report) {
	fmt.Fprintf(w, "station %s, %s to %s\n", r.Station, r.From.Format(time.RFC3339), r.To.Format(time.RFC3339))
	fmt.Fprintf(w, "units: %d attempted, %d passed (%d after a resume), %d failed; %d attempts, %d failed; %.2f units/hour\n",
		r.Attempted, r.Passed, r.Resumed, r.Failed, r.Attempts, r.FailedAttempts, r.UnitsPerHour)
	fmt.Fprintf(w, "failed attempts by step: %s\n", counts(r.FailuresByStep))
	fmt.Fprintf(w, "failed attempts by cause: %s\n", counts(r.FailuresByCause))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if len(r.FailedUnits) > 0 {
		fmt.Fprintln(w, "\nfailed units (each resumes with station provision --serial SN):")
		fmt.Fprintln(tw, "  SERIAL\tSTEP\tCAUSE\tAT\tERROR")
		for _, f := range r.FailedUnits {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", f.Serial, f.Step, f.Cause, f.At.Format(time.RFC3339), f.Error)
		}
		tw.Flush()
	}
	if len(r.StepTimes) > 0 {
		fmt.Fprintln(w, "\ntime per step:")
		fmt.Fprintln(tw, "  STEP\tN\tP50 MS\tP95 MS\tMAX MS")
		for _, s := range r.StepTimes {
			fmt.Fprintf(tw, "  %s\t%d\t%.1f\t%.1f\t%.1f\n", s.Step, s.Count, s.P50Ms, s.P95Ms, s.MaxMs)
		}
		tw.Flush()
	}
	fmt.Fprintf(w, "\nper %dh (passed / failed attempts):\n", r.Throughput.PeriodHours)
	for _, p := range r.Throughput.Periods {
		if p.Passed+p.Failed > 0 {
			fmt.Fprintf(tw, "  %s\t%d\t%d\n", p.Start.Format(time.RFC3339), p.Passed, p.Failed)
		}
	}
	tw.Flush()
	if e := r.Expiry; e.Units > 0 {
		var years []string
		for _, y := range e.ByYear {
			years = append(years, fmt.Sprintf("%d: %d", y.Year, y.Count))
		}
		fmt.Fprintf(w, "\ncertificates of the units passed end %s to %s (%s)\n", e.Earliest.Format("2006-01-02"), e.Latest.Format("2006-01-02"), strings.Join(years, ", "))
	}
}
