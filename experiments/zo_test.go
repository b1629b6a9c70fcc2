package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gradlab/gradlab/experiments/harness"
)

// TestZOExperimentTiny runs zeroth-order at a tiny size in a temporary directory and checks its files and
// verdict lines.
func TestZOExperimentTiny(t *testing.T) {
	e, ok := harness.Lookup("zeroth-order")
	if !ok {
		t.Fatal("zeroth-order not registered")
	}
	if e.Default {
		t.Error("zeroth-order should not be in the default suite")
	}
	zoTiny = true
	defer func() { zoTiny = false }()
	dir := t.TempDir()
	var stderr bytes.Buffer
	res := harness.Run(harness.Config{Out: dir, Size: harness.Quick, Stderr: &stderr}, []*harness.Experiment{e})
	r := res[0]
	if r.Err != nil {
		t.Fatalf("%v\n%s", r.Err, stderr.String())
	}
	for _, f := range []string{"report.md", "metrics.csv", "run.json", "curves.csv", "memory_table.csv", "loss_vs_forwards.png"} {
		if st, err := os.Stat(filepath.Join(r.Dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s missing or empty (%v)", f, err)
		}
	}
	rep, _ := os.ReadFile(filepath.Join(r.Dir, "report.md"))
	for _, want := range []string{"**Verdict (MeZO memory):**", "**Verdict (QZO beats no tuning):**", "**Verdict (DDC", "more than 18x", "Llama-2-13B"} {
		if !strings.Contains(string(rep), want) {
			t.Errorf("report lacks %q", want)
		}
	}
	csv, _ := os.ReadFile(filepath.Join(r.Dir, "metrics.csv"))
	if n := strings.Count(string(csv), "\n"); n != 1+5*3 {
		t.Errorf("metrics.csv has %d lines, want 16", n)
	}
	t.Logf("%.1fs", r.Duration.Seconds())
}
