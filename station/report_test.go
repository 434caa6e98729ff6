package station

import (
	"net"
	"reflect"
	"testing"
	"time"

	"github.com/factory-id/station/internal/swtpmtest"
	"github.com/factory-id/station/tpmops"
)

// TestReport provisions units on the simulator with failures injected (a
// flash target that is not mounted, a TPM without an EK certificate, an
// unreachable TPM), resumes one of them, and requires the report's counts,
// failures by step and cause, step timings and expiry horizon to be what
// happened.
func TestReport(t *testing.T) {
	l := newTestLine(t, nil)
	start := time.Now().Add(-time.Second)
	sim := func(serial, flash string) (*Result, error) {
		tpm := l.simUnit()
		defer tpm.Close()
		return l.provision(Request{Serial: serial, TPM: tpm, TPMAddr: "sim", FlashSpec: flash})
	}
	if _, err := sim("A-1", ""); err != nil {
		t.Fatal(err)
	}
	// A-2 fails at flash, then resumes on the same TPM and passes.
	tpm := l.simUnit()
	if _, err := l.provision(Request{Serial: "A-2", TPM: tpm, TPMAddr: "sim", FlashSpec: "dir:/nonexistent/unit"}); err == nil {
		t.Fatal("A-2: a flash target that is not mounted passed")
	}
	res, err := l.provision(Request{Serial: "A-2", TPM: tpm, TPMAddr: "sim"})
	if err != nil || !res.Resumed {
		t.Fatalf("A-2 resume: %+v, %v", res, err)
	}
	tpm.Close()
	if _, err := sim("A-3", "dir:/nonexistent/unit"); err == nil {
		t.Fatal("A-3 passed")
	}
	// A TPM fresh from the simulator holds no EK certificate.
	bare, err := tpmops.Open("sim")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.provision(Request{Serial: "A-4", TPM: bare, TPMAddr: "sim"}); err == nil {
		t.Fatal("A-4 without an EK certificate passed")
	}
	bare.Close()
	if _, err := l.provision(Request{Serial: "A-5", TPMAddr: swtpmtest.ClosedAddr(t)}); err == nil {
		t.Fatal("A-5 on a closed port passed")
	}
	end := time.Now().Add(time.Second)

	rep, err := MakeReport(l.env.DB, l.cfg.Station.ID, start, end, end)
	if err != nil {
		t.Fatal(err)
	}
	got := []int{rep.Attempted, rep.Passed, rep.Failed, rep.Resumed, rep.Attempts, rep.FailedAttempts}
	if want := []int{5, 2, 3, 1, 6, 4}; !reflect.DeepEqual(got, want) {
		t.Errorf("attempted, passed, failed, resumed, attempts, failed attempts = %v, want %v", got, want)
	}
	if want := []Count{{"ek", 2}, {"flash", 2}}; !reflect.DeepEqual(rep.FailuresByStep, want) {
		t.Errorf("failures by step %v, want %v", rep.FailuresByStep, want)
	}
	if want := []Count{{CauseFlashTarget, 2}, {"no-ek-cert", 1}, {"tpm-unreachable", 1}}; !reflect.DeepEqual(rep.FailuresByCause, want) {
		t.Errorf("failures by cause %v, want %v", rep.FailuresByCause, want)
	}
	var failed []string
	for _, f := range rep.FailedUnits {
		failed = append(failed, f.Serial+"@"+f.Step+"/"+f.Cause)
		if f.Error == "" || f.At.Before(start) || f.At.After(end) {
			t.Errorf("failed unit %+v", f)
		}
	}
	if want := []string{"A-3@flash/flash-target", "A-4@ek/no-ek-cert", "A-5@ek/tpm-unreachable"}; !reflect.DeepEqual(failed, want) {
		t.Errorf("failed units %v, want %v", failed, want)
	}
	// Every step finished for; ek to certificate also for A-3.
	counts := map[string]int{}
	for _, s := range rep.StepTimes {
		counts[s.Step] = s.Count
		if s.P50Ms <= 0 || s.P50Ms > s.P95Ms || s.P95Ms > s.MaxMs {
			t.Errorf("step %s times %+v", s.Step, s)
		}
	}
	want := map[string]int{StepEK: 3, StepSRK: 3, StepDeviceKey: 3, StepCertificate: 3, StepFlash: 2, StepOwnership: 2, StepRecord: 2}
	if !reflect.DeepEqual(counts, want) {
		t.Errorf("step counts %v, want %v", counts, want)
	}
	passed, fails := 0, 0
	for _, p := range rep.Throughput.Periods {
		passed, fails = passed+p.Passed, fails+p.Failed
	}
	if rep.Throughput.PeriodHours != 1 || passed != 2 || fails != 4 {
		t.Errorf("throughput %+v", rep.Throughput)
	}
	e := rep.Expiry
	na := l.unit("A-1").NotAfter
	if e.Units != 2 || e.Earliest.IsZero() || e.Latest.Before(e.Earliest) || len(e.ByYear) == 0 || e.ByYear[0].Year != na.Year() {
		t.Errorf("expiry %+v (A-1 ends %s)", e, na)
	}

	// Windows that hold none of it, and a long one counted in days.
	empty, err := MakeReport(l.env.DB, l.cfg.Station.ID, end, end.Add(time.Hour), end)
	if err != nil {
		t.Fatal(err)
	}
	if empty.Attempted != 0 || empty.Attempts != 0 || len(empty.StepTimes) != 0 || empty.Expiry.Units != 0 {
		t.Errorf("a later window reports %+v", empty)
	}
	week, err := MakeReport(l.env.DB, l.cfg.Station.ID, end.Add(-7*24*time.Hour), end, end)
	if err != nil {
		t.Fatal(err)
	}
	if week.Throughput.PeriodHours != 24 || week.Passed != 2 || len(week.Throughput.Periods) < 7 {
		t.Errorf("week: period %d h, %d periods, %d passed", week.Throughput.PeriodHours, len(week.Throughput.Periods), week.Passed)
	}
}

// TestCauseOf: a cause is named for every failure, without the message.
func TestCauseOf(t *testing.T) {
	for _, c := range []struct {
		step string
		err  error
		want string
	}{
		{StepEK, tpmops.ErrUnreachable, "tpm-unreachable"},
		{StepEK, ErrOwnedElsewhere, "owned-elsewhere"},
		{StepFlash, errNotMounted, CauseFlashTarget},
		{StepSRK, errNotMounted, CauseOther},
	} {
		if got := CauseOf(c.step, c.err); got != c.want {
			t.Errorf("CauseOf(%s, %v) = %s, want %s", c.step, c.err, got, c.want)
		}
	}
}

var errNotMounted = &net.AddrError{Err: "not mounted"}
