package harness

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func quad() Objective {
	return Objective{
		Name: "quad", Dim: 2,
		F:    func(x []float64) float64 { return x[0]*x[0] + x[1]*x[1] },
		Grad: func(x, g []float64) { g[0], g[1] = 2*x[0], 2*x[1] },
	}
}

func TestBuildDropsSettingsTheSolverLacks(t *testing.T) {
	s, b, err := Build(Variant{Name: "sgd", Kind: "sgd"}, []Setting{{"lr", 0.05}, {"beta1", 0.9}, {"eps", 1e-8}})
	if err != nil {
		t.Fatal(err)
	}
	if s.LR() != 0.05 {
		t.Errorf("lr = %g", s.LR())
	}
	if strings.Join(b.Dropped, ",") != "beta1,eps" {
		t.Errorf("dropped = %v", b.Dropped)
	}
	if b.Resolved["lr"] != 0.05 {
		t.Errorf("resolved = %v", b.Resolved)
	}
	if _, _, err := Build(Variant{Name: "x", Kind: "no-such-solver"}, nil); err == nil {
		t.Error("unknown kind built")
	}
	if _, _, err := Build(Variant{Name: "adam-bad", Kind: "adam", Fixed: []Setting{{"momentum", 0.9}}}, nil); err == nil {
		t.Error("a fixed setting the solver lacks should fail the variant")
	}
}

func TestDriveConvergesAndReportsDivergence(t *testing.T) {
	s, _, err := Build(Variant{Name: "sgd", Kind: "sgd"}, []Setting{{"lr", 0.1}})
	if err != nil {
		t.Fatal(err)
	}
	tr := Drive(s, quad(), []float64{1, -2}, 100, 1e-6, LogAll)
	if !tr.OK() || tr.FinalF > 1e-8 || tr.ReachedAt <= 0 || tr.Steps != 100 || len(tr.Points) != 101 {
		t.Errorf("sgd on a quadratic: status %q, f %g, reached %d, steps %d, points %d", tr.Status, tr.FinalF, tr.ReachedAt, tr.Steps, len(tr.Points))
	}
	s, _, _ = Build(Variant{Name: "sgd", Kind: "sgd"}, []Setting{{"lr", 10}})
	tr = Drive(s, quad(), []float64{1, -2}, 100, math.NaN(), LogSparse(5, 10))
	if tr.OK() || !strings.HasPrefix(tr.Status, "diverged") {
		t.Errorf("lr 10 should diverge, status %q", tr.Status)
	}
	if last := tr.Points[len(tr.Points)-1]; last.Step != tr.Steps {
		t.Errorf("last logged step %d, steps %d", last.Step, tr.Steps)
	}
}

func TestDriveClosureSolver(t *testing.T) {
	s, b, err := Build(Variant{Name: "lbfgs", Kind: "lbfgs"}, []Setting{{"lr", 1}})
	if err != nil {
		t.Skipf("lbfgs not available: %v", err)
	}
	if !b.Closure {
		t.Skip("lbfgs is not a closure solver")
	}
	tr := Drive(s, quad(), []float64{1, -2}, 5, 1e-6, LogAll)
	if tr.Status != "ok" || tr.ReachedAt < 0 || tr.Evals < tr.Steps {
		t.Errorf("lbfgs: status %q reached %d evals %d steps %d", tr.Status, tr.ReachedAt, tr.Evals, tr.Steps)
	}
}

func TestRanksAndLogSparse(t *testing.T) {
	r := Ranks([]float64{3, 1, 3, math.Inf(1), 2})
	want := []float64{3, 1, 3, 5, 2}
	for i := range r {
		if r[i] != want[i] {
			t.Fatalf("ranks %v, want %v", r, want)
		}
	}
	log := LogSparse(10, 100)
	n := 0
	for s := 0; s <= 2000; s++ {
		if log(s, 2000) {
			n++
		}
	}
	if n < 100 || n > 200 || !log(7, 2000) {
		t.Errorf("LogSparse logged %d of 2000 steps", n)
	}
}

func TestOutputsAndRunInfo(t *testing.T) {
	dir := t.TempDir()
	var errOut bytes.Buffer
	e := &Experiment{Name: "unit", Claim: "c", Run: func(ctx *Context) error {
		w, err := ctx.CSV("a.csv", "x", "y")
		if err != nil {
			return err
		}
		if err := w.Row(1.5, math.NaN()); err != nil {
			return err
		}
		if err := w.Row(1); err == nil {
			return errors.New("short row accepted")
		}
		if err := w.Close(); err != nil {
			return err
		}
		ctx.Progress("phase", 1, 2)
		ctx.Progress("phase", 2, 2)
		var r Report
		r.H1("t")
		r.Table([]string{"a|b"}, [][]string{{"1"}})
		if err := ctx.SavePlot("p.png", LinePlot{Series: []Series{{Name: "s", X: []float64{0, 1}, Y: []float64{1, 2}}}, LogY: true}); err != nil {
			return err
		}
		if err := ctx.SaveContour("c.png", ContourPlot{F: func(x, y float64) float64 { return math.Abs(x+y) + math.Abs(x-y)/10 },
			XMin: -1, XMax: 1, YMin: -1, YMax: 1, N: 40}); err != nil {
			return err
		}
		return ctx.WriteReport("report.md", &r)
	}}
	res := Run(Config{Out: dir, Stderr: &errOut}, []*Experiment{e})
	if res[0].Err != nil {
		t.Fatal(res[0].Err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "unit", "a.csv"))
	if string(b) != "x,y\n1.5,\n" {
		t.Errorf("csv = %q", b)
	}
	rep, _ := os.ReadFile(filepath.Join(dir, "unit", "report.md"))
	if !strings.Contains(string(rep), `a\|b`) {
		t.Errorf("pipe not escaped: %s", rep)
	}
	for _, f := range []string{"run.json", "p.png", "c.png"} {
		if _, err := os.Stat(filepath.Join(dir, "unit", f)); err != nil {
			t.Error(err)
		}
	}
	if !strings.Contains(errOut.String(), "[unit] phase 2/2 (100%)") {
		t.Errorf("progress lines: %q", errOut.String())
	}
	// A panicking experiment is reported, not fatal.
	bad := &Experiment{Name: "bad", Run: func(*Context) error { panic("boom") }}
	if res := Run(Config{Out: dir, Stderr: &errOut}, []*Experiment{bad}); res[0].Err == nil {
		t.Error("panic not reported")
	}
}

func TestF(t *testing.T) {
	for in, want := range map[float64]string{0.3: "0.3", -0.30012345: "-0.3001", 1234.5678: "1235", 1e-7: "1.000e-07", 0: "0"} {
		if got := F(in); got != want {
			t.Errorf("F(%g) = %q, want %q", in, got, want)
		}
	}
}

func TestDriveLossSolver(t *testing.T) {
	s, b, err := Build(Variant{Name: "sps", Kind: "sps"}, nil)
	if err != nil {
		t.Skipf("sps not available: %v", err)
	}
	if !b.Loss {
		t.Skip("sps does not step with the loss")
	}
	tr := Drive(s, quad(), []float64{1, -2}, 50, 1e-6, LogAll)
	if !tr.OK() || tr.ReachedAt < 0 {
		t.Errorf("sps: status %q, reached %d, f %g", tr.Status, tr.ReachedAt, tr.FinalF)
	}
}
