package main

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/gradlab/gradlab/experiments/harness"
)

// skipNote is an optimizer that could not be built, with the constructor's error.
type skipNote struct {
	Name  string `json:"name"`
	Error string `json:"error"`
}

// usableVariants builds every variant once with the settings want and returns those that construct,
// with how each was built; the others are recorded as skipped (in the context and the returned notes).
func usableVariants(ctx *harness.Context, want []harness.Setting, cands []harness.Variant) ([]harness.Variant, []harness.Built, []skipNote) {
	var (
		vs    []harness.Variant
		bs    []harness.Built
		skips []skipNote
	)
	if cands == nil {
		cands = ctx.Variants()
	}
	for _, v := range cands {
		_, b, err := harness.Build(v, want)
		if err != nil {
			msg := firstLine(err.Error())
			ctx.Skip(v.Name, msg)
			ctx.Logf("skipped %s: %s", v.Name, msg)
			skips = append(skips, skipNote{v.Name, msg})
			continue
		}
		vs = append(vs, v)
		bs = append(bs, b)
	}
	return vs, bs, skips
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// trajHeader is the column set of every trajectories.csv.
var trajHeader = []string{"experiment", "function", "optimizer", "lr", "start", "step", "x", "y", "f", "evals"}

// writeTraj appends a trajectory's logged points to w.
func writeTraj(w *harness.CSVWriter, exp, fn, opt string, lr float64, start string, tr *harness.Trajectory) error {
	for _, p := range tr.Points {
		y := math.NaN()
		if len(p.X) > 1 {
			y = p.X[1]
		}
		if err := w.Row(exp, fn, opt, lr, start, p.Step, p.X[0], y, p.F, p.Evals); err != nil {
			return err
		}
	}
	return nil
}

func startLabel(s [2]float64) string { return fmt.Sprintf("(%g, %g)", s[0], s[1]) }

// gridSpec is a sweep of optimizers × functions × starts × learning rates on 2-D objectives.
type gridSpec struct {
	exp    string
	funcs  []toy2D
	starts [][2]float64
	lrs    []float64
	steps  int
	target float64
	// extra are settings applied (where the solver has them) besides lr.
	extra []harness.Setting
	// variants, if non-nil, replaces ctx.Variants().
	variants []harness.Variant
}

// gridRun is one cell of the sweep.
type gridRun struct {
	vi, fi, si, li int
	lr             float64
	built          harness.Built
	tr             harness.Trajectory
}

// gridResult holds a finished sweep.
type gridResult struct {
	spec     gridSpec
	variants []harness.Variant
	builds   []harness.Built
	skips    []skipNote
	runs     []gridRun
}

func (g *gridResult) idx(vi, fi, si, li int) int {
	s := g.spec
	return ((vi*len(s.funcs)+fi)*len(s.starts)+si)*len(s.lrs) + li
}

func (g *gridResult) run(vi, fi, si, li int) *gridRun { return &g.runs[g.idx(vi, fi, si, li)] }

// runGrid runs the sweep in parallel (results are stored by index, so the outcome is deterministic) and
// writes every logged point to trajectories.csv.
func runGrid(ctx *harness.Context, spec gridSpec) (*gridResult, error) {
	want := append([]harness.Setting{{Key: "lr", Value: spec.lrs[0]}}, spec.extra...)
	vs, bs, skips := usableVariants(ctx, want, spec.variants)
	g := &gridResult{spec: spec, variants: vs, builds: bs, skips: skips}
	n := len(vs) * len(spec.funcs) * len(spec.starts) * len(spec.lrs)
	g.runs = make([]gridRun, n)
	for vi := range vs {
		for fi := range spec.funcs {
			for si := range spec.starts {
				for li, lr := range spec.lrs {
					g.runs[g.idx(vi, fi, si, li)] = gridRun{vi: vi, fi: fi, si: si, li: li, lr: lr}
				}
			}
		}
	}
	ctx.Logf("%d optimizers × %d functions × %d starts × %d learning rates = %d runs of %d steps",
		len(vs), len(spec.funcs), len(spec.starts), len(spec.lrs), n, spec.steps)
	ctx.ParallelFor("runs", n, func(i int) {
		r := &g.runs[i]
		v := vs[r.vi]
		s, b, err := harness.Build(v, append([]harness.Setting{{Key: "lr", Value: r.lr}}, spec.extra...))
		r.built = b
		if err != nil {
			r.tr = harness.Trajectory{Status: "construction failed: " + firstLine(err.Error()), ReachedAt: -1,
				FinalF: math.NaN(), BestF: math.NaN()}
			return
		}
		st := spec.starts[r.si]
		r.tr = harness.Drive(s, spec.funcs[r.fi].obj, st[:], spec.steps, spec.target, harness.LogSparse(20, 100))
	})
	w, err := ctx.CSV("trajectories.csv", trajHeader...)
	if err != nil {
		return nil, err
	}
	for i := range g.runs {
		r := &g.runs[i]
		if err := writeTraj(w, spec.exp, spec.funcs[r.fi].obj.Name, vs[r.vi].Name, r.lr, startLabel(spec.starts[r.si]), &r.tr); err != nil {
			w.Close()
			return nil, err
		}
	}
	return g, w.Close()
}

// betterRun reports whether run a beats run b for tuning: reaching the target sooner, else (neither
// reached) a lower final value; failed runs lose.
func betterRun(a, b *gridRun) bool {
	ao, bo := a.tr.OK() || a.tr.ReachedAt >= 0, b.tr.OK() || b.tr.ReachedAt >= 0
	if ao != bo {
		return ao
	}
	ar, br := a.tr.ReachedAt >= 0, b.tr.ReachedAt >= 0
	if ar != br {
		return ar
	}
	if ar && a.tr.EvalsAtReach != b.tr.EvalsAtReach {
		return a.tr.EvalsAtReach < b.tr.EvalsAtReach
	}
	if !ao {
		return false
	}
	return a.tr.FinalF < b.tr.FinalF
}

// best returns the tuned run (over learning rates) of an optimizer on a function and start.
func (g *gridResult) best(vi, fi, si int) *gridRun {
	var b *gridRun
	for li := range g.spec.lrs {
		r := g.run(vi, fi, si, li)
		if b == nil || betterRun(r, b) {
			b = r
		}
	}
	return b
}

// rankKey orders runs for ranking: gradient evaluations to the target if reached (iterations for
// single-gradient methods; closure methods are charged every evaluation), otherwise after every reached
// run ordered by final gap, failed runs last.
func rankKey(r *gridRun, fstar float64) float64 {
	if r.tr.ReachedAt >= 0 {
		return float64(r.tr.EvalsAtReach)
	}
	if !r.tr.OK() || math.IsNaN(r.tr.FinalF) {
		return math.Inf(1)
	}
	return 1e15 + math.Log1p(math.Max(r.tr.FinalF-fstar, 0))
}

// itersCell renders iterations to the target (with gradient evaluations for closure solvers).
func itersCell(r *gridRun) string {
	if r.tr.ReachedAt < 0 {
		if !r.tr.OK() {
			return shortStatus(r.tr.Status)
		}
		return "not reached"
	}
	if r.built.Closure {
		return fmt.Sprintf("%d (%d evals)", r.tr.ReachedAt, r.tr.EvalsAtReach)
	}
	return fmt.Sprint(r.tr.ReachedAt)
}

func shortStatus(s string) string {
	switch {
	case strings.HasPrefix(s, "diverged"):
		return "diverged"
	case strings.HasPrefix(s, "construction failed"):
		return "construction failed"
	case strings.HasPrefix(s, "error"):
		return "error"
	}
	return s
}

// meanRanks ranks the variants on each case by key and returns each variant's mean rank.
func meanRanks(nv int, cases [][]float64) []float64 {
	mean := make([]float64, nv)
	for _, keys := range cases {
		r := harness.Ranks(keys)
		for vi := range r {
			mean[vi] += r[vi] / float64(len(cases))
		}
	}
	return mean
}

// orderBy returns indices 0..n-1 sorted by vals ascending (stable).
func orderBy(vals []float64) []int {
	idx := make([]int, len(vals))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return vals[idx[a]] < vals[idx[b]] })
	return idx
}

func findVariant(vs []harness.Variant, pred func(name string) bool) []int {
	var out []int
	for i, v := range vs {
		if pred(v.Name) {
			out = append(out, i)
		}
	}
	return out
}

// writeSettings adds a table of each optimizer's construction: the requested settings it accepted, those
// it does not have, and its resolved hyperparameters (defaults included).
func writeSettings(rep *harness.Report, bs []harness.Built, note string) {
	rep.H2("Solver settings")
	if note != "" {
		rep.P("%s", note)
	}
	var rows [][]string
	for _, b := range bs {
		na := strings.Join(b.Dropped, ", ")
		if na == "" {
			na = "–"
		}
		kind := b.Variant.Kind
		if b.Closure {
			kind += " (closure)"
		}
		if b.Loss {
			kind += " (StepLoss)"
		}
		var set []string
		for _, s := range b.Applied {
			set = append(set, fmt.Sprintf("%s=%g", s.Key, s.Value))
		}
		rows = append(rows, []string{b.Variant.Name, kind, strings.Join(set, " "), na, b.ResolvedString()})
	}
	rep.Table([]string{"optimizer", "kind", "set by the experiment", "requested but not a hyperparameter of it", "resolved hyperparameters"}, rows)
}

// writeFailures lists the runs that stopped early (diverged, solver error, construction failure).
func writeFailures(rep *harness.Report, g *gridResult) {
	var rows [][]string
	for i := range g.runs {
		r := &g.runs[i]
		if r.tr.OK() {
			continue
		}
		rows = append(rows, []string{g.variants[r.vi].Name, g.spec.funcs[r.fi].obj.Name, startLabel(g.spec.starts[r.si]), fmt.Sprintf("%g", r.lr), r.tr.Status})
	}
	rep.H2("Runs that stopped early")
	if len(rows) == 0 {
		rep.P("None: every run took all its steps.")
		return
	}
	rep.P("%d of %d runs stopped before the budget (a value beyond 1e12 or a non-finite one counts as diverged; a solver error stops the run).", len(rows), len(g.runs))
	rep.Table([]string{"optimizer", "function", "start", "lr", "status"}, rows)
}
