package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gradlab/gradlab/experiments/harness"
	"github.com/gradlab/gradlab/solvers"
)

// TestQuickRun runs the two claim experiments at -quick size in a temporary directory and checks their
// outputs.
func TestQuickRun(t *testing.T) {
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	code := run([]string{"-out", dir, "-quick", "diffgrad-synthetic", "adabelief-toys"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit code %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	if strings.Contains(stderr.String(), "\r") {
		t.Errorf("progress output to a non-terminal contains carriage returns")
	}
	for _, name := range []string{"diffgrad-synthetic", "adabelief-toys"} {
		d := filepath.Join(dir, name)
		for _, f := range []string{"report.md", "trajectories.csv", "run.json"} {
			if st, err := os.Stat(filepath.Join(d, f)); err != nil || st.Size() == 0 {
				t.Errorf("%s/%s missing or empty (%v)", name, f, err)
			}
		}
		pngs, _ := filepath.Glob(filepath.Join(d, "*.png"))
		if len(pngs) == 0 {
			t.Errorf("%s: no PNG plots", name)
		}
		rep, _ := os.ReadFile(filepath.Join(d, "report.md"))
		if !strings.Contains(string(rep), "**Verdict") {
			t.Errorf("%s: report has no verdict line", name)
		}
		for _, png := range pngs {
			if !strings.Contains(string(rep), filepath.Base(png)) {
				t.Errorf("%s: report does not show %s", name, filepath.Base(png))
			}
		}
		var info harness.RunInfo
		b, _ := os.ReadFile(filepath.Join(d, "run.json"))
		if err := json.Unmarshal(b, &info); err != nil {
			t.Fatalf("%s: run.json: %v", name, err)
		}
		if info.GoVersion == "" || info.NumCPU == 0 || info.Start == "" || info.Size != "quick" || info.Config == nil {
			t.Errorf("%s: run.json incomplete: %+v", name, info)
		}
		csv, _ := os.ReadFile(filepath.Join(d, "trajectories.csv"))
		if !strings.HasPrefix(string(csv), "experiment,function,optimizer,lr,start,step,x,y,f,evals\n") {
			t.Errorf("%s: unexpected CSV header: %.80s", name, csv)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "summary.md")); err != nil {
		t.Errorf("summary.md: %v", err)
	}
}

// TestFailingConstructionReported runs diffgrad-synthetic with a kind that no constructor knows and
// checks it is reported as skipped while the others still run.
func TestFailingConstructionReported(t *testing.T) {
	dir := t.TempDir()
	e, ok := harness.Lookup("diffgrad-synthetic")
	if !ok {
		t.Fatal("diffgrad-synthetic not registered")
	}
	kinds := func() []string { return []string{"adam", "no-such-solver"} }
	var stderr bytes.Buffer
	res := harness.Run(harness.Config{Out: dir, Size: harness.Quick, Kinds: kinds, Stderr: &stderr}, []*harness.Experiment{e})
	if res[0].Err != nil {
		t.Fatalf("experiment failed: %v", res[0].Err)
	}
	rep, err := os.ReadFile(filepath.Join(dir, e.Name, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(rep), "no-such-solver — skipped: ") {
		t.Errorf("report does not list the failing optimizer as skipped:\n%s", rep)
	}
	if !strings.Contains(string(rep), "| adam |") {
		t.Errorf("report lacks the adam row")
	}
	if !strings.Contains(string(rep), "diffGrad not built yet: claim not tested") {
		t.Errorf("report lacks the untested verdict")
	}
	var info harness.RunInfo
	b, _ := os.ReadFile(filepath.Join(dir, e.Name, "run.json"))
	if err := json.Unmarshal(b, &info); err != nil {
		t.Fatal(err)
	}
	if _, ok := info.Skipped["no-such-solver"]; !ok {
		t.Errorf("run.json does not record the skipped optimizer: %v", info.Skipped)
	}
}

// TestVariantsFollowRegistry checks that the harness runs every registered kind (plus sgdm).
func TestVariantsFollowRegistry(t *testing.T) {
	var names []string
	ctxVariants := func() []harness.Variant {
		var got []harness.Variant
		e := &harness.Experiment{Name: "probe", Run: func(ctx *harness.Context) error {
			got = ctx.Variants()
			return nil
		}}
		harness.Run(harness.Config{Out: t.TempDir(), Stderr: &bytes.Buffer{}}, []*harness.Experiment{e})
		return got
	}
	for _, v := range ctxVariants() {
		names = append(names, v.Name)
	}
	joined := "," + strings.Join(names, ",") + ","
	for _, k := range solvers.Kinds() {
		if !strings.Contains(joined, ","+k+",") {
			t.Errorf("registered kind %q is not run", k)
		}
	}
}

// TestList checks -list names every experiment.
func TestList(t *testing.T) {
	var out bytes.Buffer
	if code := run([]string{"-list"}, &out, &bytes.Buffer{}); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, e := range harness.Experiments() {
		if !strings.Contains(out.String(), e.Name) {
			t.Errorf("-list lacks %s", e.Name)
		}
	}
	if code := run([]string{"-out", t.TempDir(), "no-such-experiment"}, &bytes.Buffer{}, &bytes.Buffer{}); code != 2 {
		t.Errorf("unknown experiment: exit %d, want 2", code)
	}
}

// TestRosenbrockQuick runs the rosenbrock benchmark (it has no paper claim, hence no verdict) at the quick
// size and checks its files.
func TestRosenbrockQuick(t *testing.T) {
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-out", dir, "-quick", "rosenbrock"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit code %d: %s", code, stderr.String())
	}
	for _, f := range []string{"report.md", "trajectories.csv", "run.json", "distance.png"} {
		if st, err := os.Stat(filepath.Join(dir, "rosenbrock", f)); err != nil || st.Size() == 0 {
			t.Errorf("rosenbrock/%s missing or empty (%v)", f, err)
		}
	}
}
