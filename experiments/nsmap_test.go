package main

import (
	"bytes"
	"encoding/csv"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gradlab/gradlab/solvers"
)

// TestNewtonSchulzExperiment runs the newton-schulz experiment at the quick size: its files exist, the
// report has a verdict, and every measured output singular value equals the scalar map of its input.
func TestNewtonSchulzExperiment(t *testing.T) {
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-out", dir, "-quick", "newton-schulz"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit code %d: %s", code, stderr.String())
	}
	d := filepath.Join(dir, "newton-schulz")
	rep, err := os.ReadFile(filepath.Join(d, "report.md"))
	if err != nil || !strings.Contains(string(rep), "**Verdict") {
		t.Fatalf("report missing or without verdict: %v", err)
	}
	for _, f := range []string{"metrics.csv", "run.json", "scalar_map.png", "singular_values.png"} {
		if st, err := os.Stat(filepath.Join(d, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s missing or empty", f)
		}
	}
	f, err := os.Open(filepath.Join(d, "metrics.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows[1:] {
		got, _ := strconv.ParseFloat(r[4], 64)
		want, _ := strconv.ParseFloat(r[5], 64)
		if math.Abs(got-want) > 1e-10 {
			t.Fatalf("%s %s σ%s: measured %v, scalar map %v", r[0], r[1], r[2], got, want)
		}
	}
}

// TestScalarNS checks the scalar map against hand values: one cubic step of 0.5 is 0.6875, and the
// quintic fixes 0.
func TestScalarNS(t *testing.T) {
	if got := scalarNS(0.5, solvers.NSCubic, 1); math.Abs(got-0.6875) > 1e-15 {
		t.Fatalf("cubic step: %v", got)
	}
	if got := scalarNS(0, solvers.NSQuintic, 5); got != 0 {
		t.Fatalf("quintic of 0: %v", got)
	}
}
