package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/gradlab/gradlab/experiments/harness"
)

// TestLMExperimentsTiny runs muon-vs-adamw and mla-moe at a test-only size (a few steps, one LR per
// optimizer, batch 4) in a temporary directory and checks their files and verdict lines.
func TestLMExperimentsTiny(t *testing.T) {
	old := lmTinySteps
	lmTinySteps = 5
	defer func() { lmTinySteps = old }()
	dir := t.TempDir()
	var stderr bytes.Buffer
	verdict := regexp.MustCompile(`\*\*Verdict: (reproduced|not reproduced|direction only)\*\*`)
	for _, n := range lmExperimentNames {
		e, ok := harness.Lookup(n)
		if !ok {
			t.Fatalf("%s not registered", n)
		}
		if e.Default {
			t.Errorf("%s should not be in the default suite", n)
		}
		res := harness.Run(harness.Config{Out: dir, Size: harness.Quick, Stderr: &stderr}, []*harness.Experiment{e})
		r := res[0]
		if r.Err != nil {
			t.Fatalf("%s: %v\n%s", r.Name, r.Err, stderr.String())
		}
		for _, f := range []string{"report.md", "metrics.csv", "run.json", "valid_loss.png"} {
			if st, err := os.Stat(filepath.Join(r.Dir, f)); err != nil || st.Size() == 0 {
				t.Errorf("%s/%s missing or empty (%v)", r.Name, f, err)
			}
		}
		rep, _ := os.ReadFile(filepath.Join(r.Dir, "report.md"))
		if !verdict.Match(rep) {
			t.Errorf("%s: no verdict line in\n%s", r.Name, rep)
		}
		t.Logf("%s: %.1fs", r.Name, r.Duration.Seconds())
	}
}

var lmExperimentNames = []string{"muon-vs-adamw", "mla-moe"}
