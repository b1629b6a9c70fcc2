package main

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gradlab/gradlab/experiments/harness"
)

// TestNewExperimentsQuick runs optimizer-zoo (restricted to a few solvers), schedules and lion-lr at
// their quick size in a temporary directory and checks their files and verdict lines.
func TestNewExperimentsQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three experiments")
	}
	dir := t.TempDir()
	kinds := func() []string { return []string{"adam", "diffgrad", "lion", "muon", "sgd"} }
	var stderr bytes.Buffer
	var exps []*harness.Experiment
	for _, n := range []string{"optimizer-zoo", "schedules", "lion-lr"} {
		e, ok := harness.Lookup(n)
		if !ok {
			t.Fatalf("%s not registered", n)
		}
		exps = append(exps, e)
	}
	res := harness.Run(harness.Config{Out: dir, Size: harness.Quick, Kinds: kinds, Stderr: &stderr}, exps)
	for _, r := range res {
		if r.Err != nil {
			t.Fatalf("%s: %v\n%s", r.Name, r.Err, stderr.String())
		}
		for _, f := range []string{"report.md", "metrics.csv", "run.json"} {
			if st, err := os.Stat(filepath.Join(r.Dir, f)); err != nil || st.Size() == 0 {
				t.Errorf("%s/%s missing or empty (%v)", r.Name, f, err)
			}
		}
		pngs, _ := filepath.Glob(filepath.Join(r.Dir, "*.png"))
		if len(pngs) == 0 {
			t.Errorf("%s: no plots", r.Name)
		}
		rep, _ := os.ReadFile(filepath.Join(r.Dir, "report.md"))
		if !strings.Contains(string(rep), "**Verdict") {
			t.Errorf("%s: no verdict line", r.Name)
		}
		t.Logf("%s: %.1fs", r.Name, r.Duration.Seconds())
	}
}

func TestRefinedScheduleConstantNormsIsLinear(t *testing.T) {
	norms := make([]float64, 100)
	for i := range norms {
		norms[i] = 2.5
	}
	for _, l1 := range []bool{false, true} {
		eta := refinedSchedule(norms, 5, l1, 0.1)
		// w constant: η_t ∝ (T−1−t), max at t = 0.
		for tt, e := range eta {
			want := 0.1 * float64(99-tt) / 99
			if math.Abs(e-want) > 1e-12 {
				t.Fatalf("l1=%v t=%d: η=%g, want %g", l1, tt, e, want)
			}
		}
	}
	// Norms that fall over time give a warm-up (small weights early).
	for i := range norms {
		norms[i] = 10 / (1 + float64(i))
	}
	eta := refinedSchedule(norms, 5, false, 1)
	if am, st, _ := shapeStats(eta); !(st < 0.5 && am > 0.1) {
		t.Errorf("falling norms: start %g, argmax %g; want a warm-up", st, am)
	}
}

func TestMedianFilter(t *testing.T) {
	got := medianFilter([]float64{1, 100, 2, 3, 4}, 3)
	want := []float64{50.5, 2, 3, 3, 3.5}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("median filter: got %v, want %v", got, want)
		}
	}
}
