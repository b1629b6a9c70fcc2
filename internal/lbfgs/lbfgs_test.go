package lbfgs

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/pkg/errors"
)

// goldenFile is the golden-trajectory/v1 format of testdata/lbfgs-*.json
// (copied from the shared golden set; its README, sections 1 and 4 "lbfgs",
// describes the format and how torch 1.13.1 was driven).
type goldenFile struct {
	Case  string `json:"case"`
	Dtype string `json:"dtype"`
	Hyper struct {
		LR              float64 `json:"lr"`
		MaxIter         int     `json:"max_iter"`
		MaxEval         int     `json:"max_eval"`
		ToleranceGrad   float64 `json:"tolerance_grad"`
		ToleranceChange float64 `json:"tolerance_change"`
		HistorySize     int     `json:"history_size"`
		LineSearch      *string `json:"line_search"`
	} `json:"hyper"`
	Params []struct {
		Name  string    `json:"name"`
		Shape []int     `json:"shape"`
		Init  []float64 `json:"init"`
	} `json:"params"`
	Problem struct {
		Kind string      `json:"kind"`
		A    [][]float64 `json:"a"`
		C    [][]float64 `json:"c"`
	} `json:"problem"`
	Steps []struct {
		Loss     float64     `json:"loss"`
		Expected [][]float64 `json:"expected"`
	} `json:"steps"`
	Tolerance struct {
		Rtol float64 `json:"rtol"`
		Atol float64 `json:"atol"`
	} `json:"tolerance"`
}

func concat(vs [][]float64) []float64 {
	var out []float64
	for _, v := range vs {
		out = append(out, v...)
	}
	return out
}

// quadratic is f = Σ 0.5·a_i·(θ_i − c_i)², gradient a ⊙ (θ − c), in T.
func quadratic[T Float](a, c []T) Objective[T] {
	return func(x, g []T) (float64, error) {
		var f T
		for i := range x {
			diff := x[i] - c[i]
			g[i] = a[i] * diff
			f += T(T(T(0.5)*a[i]) * T(diff*diff))
		}
		return float64(f), nil
	}
}

// rosenbrock is f = (1−x)² + 100(y−x²)², gradient
// (−2(1−x) − 400x(y−x²), 200(y−x²)), in T.
func rosenbrock[T Float]() Objective[T] {
	return func(p, g []T) (float64, error) {
		x, y := p[0], p[1]
		u := 1 - x
		v := y - T(x*x)
		g[0] = T(-2*u) - T(T(400*x)*v)
		g[1] = 200 * v
		return float64(T(u*u) + T(100*T(v*v))), nil
	}
}

func loadGolden(t *testing.T, path string) goldenFile {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var gf goldenFile
	if err := json.Unmarshal(raw, &gf); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return gf
}

func (gf goldenFile) config() Config {
	cfg := Config{
		LR:              gf.Hyper.LR,
		MaxIter:         gf.Hyper.MaxIter,
		MaxEval:         gf.Hyper.MaxEval,
		ToleranceGrad:   gf.Hyper.ToleranceGrad,
		ToleranceChange: gf.Hyper.ToleranceChange,
		HistorySize:     gf.Hyper.HistorySize,
	}
	if gf.Hyper.LineSearch != nil {
		cfg.LineSearch = *gf.Hyper.LineSearch
	}
	return cfg
}

func TestGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "lbfgs-*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 3 {
		t.Fatalf("expected 3 golden files, found %d", len(files))
	}
	for _, path := range files {
		gf := loadGolden(t, path)
		t.Run(gf.Case, func(t *testing.T) {
			if gf.Dtype != "float64" {
				t.Fatalf("unexpected dtype %q", gf.Dtype)
			}
			var x []float64
			for _, p := range gf.Params {
				x = append(x, p.Init...)
			}
			var f Objective[float64]
			switch gf.Problem.Kind {
			case "quadratic":
				f = quadratic(concat(gf.Problem.A), concat(gf.Problem.C))
			case "rosenbrock":
				f = rosenbrock[float64]()
			default:
				t.Fatalf("unknown problem %q", gf.Problem.Kind)
			}
			cfg := gf.config()
			st := NewState[float64](len(x))
			rtol, atol := gf.Tolerance.Rtol, gf.Tolerance.Atol
			check := func(what string, got, exp float64) {
				if d := math.Abs(got - exp); !(d <= atol+rtol*math.Abs(exp)) {
					t.Errorf("%s: got %.17g want %.17g (|diff| %.3g, rel %.3g)", what, got, exp, d, d/math.Abs(exp))
				}
			}
			worst := 0.0
			for k, s := range gf.Steps {
				loss, err := Step(cfg, st, x, f)
				if err != nil {
					t.Fatalf("step %d: %v", k+1, err)
				}
				check(fmt.Sprintf("step %d loss", k+1), loss, s.Loss)
				exp := concat(s.Expected)
				if len(exp) != len(x) {
					t.Fatalf("step %d: %d expected values for %d params", k+1, len(exp), len(x))
				}
				for i := range x {
					check(fmt.Sprintf("step %d x[%d]", k+1, i), x[i], exp[i])
					worst = math.Max(worst, math.Abs(x[i]-exp[i])/(atol+rtol*math.Abs(exp[i])))
				}
			}
			t.Logf("%s: %d steps, n_iter %d, func_evals %d, worst error %.3g of tolerance", gf.Case, len(gf.Steps), st.NIter, st.FuncEvals, worst)
		})
	}
}

func randomQuadratic[T Float](n int, seed int64) (x, a, c []T) {
	rng := rand.New(rand.NewSource(seed))
	x, a, c = make([]T, n), make([]T, n), make([]T, n)
	for i := range x {
		x[i] = T(rng.NormFloat64())
		a[i] = T(0.5 + 4.5*rng.Float64())
		c[i] = T(rng.Float64()*2 - 1)
	}
	return x, a, c
}

func TestFloat32QuadraticConverges(t *testing.T) {
	for _, ls := range []string{"", LineSearchStrongWolfe} {
		t.Run("ls="+ls, func(t *testing.T) {
			x, a, c := randomQuadratic[float32](50, 1)
			f := quadratic(a, c)
			cfg := DefaultConfig()
			cfg.LineSearch = ls
			if ls == "" {
				cfg.LR = 0.5
			}
			st := NewState[float32](len(x))
			first := math.NaN()
			var last float64
			for k := 0; k < 20; k++ {
				loss, err := Step(cfg, st, x, f)
				if err != nil {
					t.Fatal(err)
				}
				if k == 0 {
					first = loss
				}
				last = loss
			}
			var maxErr float64
			for i := range x {
				maxErr = math.Max(maxErr, math.Abs(float64(x[i]-c[i])))
			}
			g := make([]float32, len(x))
			final, _ := f(x, g)
			t.Logf("loss %g -> %g (final %g), max|x-c| = %g, n_iter %d, func_evals %d", first, last, final, maxErr, st.NIter, st.FuncEvals)
			if !(maxErr < 1e-4) || !(final < 1e-8) {
				t.Fatalf("did not converge: max|x-c| = %g, loss %g", maxErr, final)
			}
		})
	}
}

type problem[T Float] struct {
	name string
	cfg  Config
	x0   []T
	f    Objective[T]
}

func problems[T Float]() []problem[T] {
	qx, qa, qc := randomQuadratic[T](17, 7)
	nols := DefaultConfig()
	nols.LR, nols.MaxIter, nols.HistorySize = 0.5, 4, 3
	sw := DefaultConfig()
	sw.MaxIter, sw.HistorySize, sw.LineSearch = 4, 3, LineSearchStrongWolfe
	return []problem[T]{
		{"quadratic-nols", nols, qx, quadratic(qa, qc)},
		{"quadratic-strongwolfe", sw, qx, quadratic(qa, qc)},
		{"rosenbrock-strongwolfe", sw, []T{-1.2, 1}, rosenbrock[T]()},
		{"rosenbrock-nols", func() Config { c := nols; c.LR = 0.01; return c }(), []T{-1.2, 1}, rosenbrock[T]()},
	}
}

type trajectory[T Float] struct {
	losses []float64
	xs     [][]T
}

// run makes `steps` Step calls from x with st, recording the trajectory.
func run[T Float](t *testing.T, p problem[T], st *State[T], x []T, steps int) trajectory[T] {
	t.Helper()
	var tr trajectory[T]
	for k := 0; k < steps; k++ {
		loss, err := Step(p.cfg, st, x, p.f)
		if err != nil {
			t.Fatalf("%s step %d: %v", p.name, k+1, err)
		}
		tr.losses = append(tr.losses, loss)
		tr.xs = append(tr.xs, append([]T(nil), x...))
	}
	return tr
}

func sameBits[T Float](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float64bits(float64(a[i])) != math.Float64bits(float64(b[i])) {
			return false
		}
	}
	return true
}

func sameExport[T Float](t1 map[string][]T, s1 map[string]float64, t2 map[string][]T, s2 map[string]float64) bool {
	if len(t1) != len(t2) || len(s1) != len(s2) {
		return false
	}
	for k, v := range t1 {
		w, ok := t2[k]
		if !ok || !sameBits(v, w) {
			return false
		}
	}
	for k, v := range s1 {
		w, ok := s2[k]
		if !ok || math.Float64bits(v) != math.Float64bits(w) {
			return false
		}
	}
	return true
}

func testRoundTrip[T Float](t *testing.T) {
	const total = 8
	for _, p := range problems[T]() {
		t.Run(p.name, func(t *testing.T) {
			x := append([]T(nil), p.x0...)
			ref := run(t, p, NewState[T](len(x)), x, total)
			for split := 0; split <= total; split++ {
				x := append([]T(nil), p.x0...)
				st := &State[T]{} // zero value works too
				first := run(t, p, st, x, split)
				tens, scal := st.Export()
				st2, err := Import[T](len(x), tens, scal)
				if err != nil {
					t.Fatalf("split %d: import: %v", split, err)
				}
				t2, s2 := st2.Export()
				if !sameExport(tens, scal, t2, s2) || !reflect.DeepEqual(tens, t2) {
					t.Fatalf("split %d: Export(Import(Export(s))) differs from Export(s)", split)
				}
				// the exported maps are copies: scribbling on them must not
				// affect either state
				for _, v := range tens {
					for i := range v {
						v[i] = T(math.NaN())
					}
				}
				second := run(t, p, st2, x, total-split)
				losses := append(first.losses, second.losses...)
				xs := append(first.xs, second.xs...)
				for k := 0; k < total; k++ {
					if math.Float64bits(losses[k]) != math.Float64bits(ref.losses[k]) || !sameBits(xs[k], ref.xs[k]) {
						t.Fatalf("split %d: step %d differs from the uninterrupted run", split, k+1)
					}
				}
			}
		})
	}
}

func TestExportImportRoundTrip(t *testing.T) {
	t.Run("float64", testRoundTrip[float64])
	t.Run("float32", testRoundTrip[float32])
}

var errBoom = errors.New("boom")

func testObjectiveError[T Float](t *testing.T) {
	for _, p := range problems[T]() {
		for _, warm := range []int{0, 1, 3} {
			t.Run(fmt.Sprintf("%s/warm=%d", p.name, warm), func(t *testing.T) {
				// reference: warm steps, then one more step; count its evaluations
				xRef := append([]T(nil), p.x0...)
				stRef := NewState[T](len(xRef))
				run(t, p, stRef, xRef, warm)
				evals := 0
				counting := problem[T]{p.name, p.cfg, nil, func(x, g []T) (float64, error) { evals++; return p.f(x, g) }}
				next := run(t, counting, stRef, xRef, 1)
				for failAt := 1; failAt <= evals; failAt++ {
					x := append([]T(nil), p.x0...)
					st := NewState[T](len(x))
					run(t, p, st, x, warm)
					xBefore := append([]T(nil), x...)
					tBefore, sBefore := st.Export()
					calls := 0
					failing := func(x, g []T) (float64, error) {
						calls++
						if calls == failAt {
							// scribble on the gradient as a failing closure might
							for i := range g {
								g[i] = T(math.NaN())
							}
							return math.NaN(), errBoom
						}
						return p.f(x, g)
					}
					_, err := Step(p.cfg, st, x, failing)
					if err == nil {
						t.Fatalf("failAt %d: no error", failAt)
					}
					if !errors.Is(err, errBoom) || errors.Cause(err) != errBoom {
						t.Fatalf("failAt %d: error %v does not wrap the objective's error", failAt, err)
					}
					if !sameBits(x, xBefore) {
						t.Fatalf("failAt %d: x changed", failAt)
					}
					tAfter, sAfter := st.Export()
					if !sameExport(tBefore, sBefore, tAfter, sAfter) {
						t.Fatalf("failAt %d: state changed", failAt)
					}
					// retrying with a working objective continues exactly
					// like the uninterrupted run
					got := run(t, p, st, x, 1)
					if math.Float64bits(got.losses[0]) != math.Float64bits(next.losses[0]) || !sameBits(got.xs[0], next.xs[0]) {
						t.Fatalf("failAt %d: retry differs from the uninterrupted run", failAt)
					}
				}
				t.Logf("checked a failure at each of the step's %d evaluations", evals)
			})
		}
	}
}

func TestObjectiveErrorLeavesStateUnchanged(t *testing.T) {
	t.Run("float64", testObjectiveError[float64])
	t.Run("float32", testObjectiveError[float32])
}

func TestValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config rejected: %v", err)
	}
	d := DefaultConfig()
	if d.LR != 1 || d.MaxIter != 20 || d.MaxEval != 25 || d.ToleranceGrad != 1e-7 || d.ToleranceChange != 1e-9 || d.HistorySize != 100 || d.LineSearch != "" {
		t.Fatalf("unexpected defaults %+v", d)
	}
	ok := DefaultConfig()
	ok.MaxEval = 0
	ok.LineSearch = LineSearchStrongWolfe
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config rejected: %v", err)
	}
	bad := map[string]func(*Config){
		"lr=0":             func(c *Config) { c.LR = 0 },
		"lr<0":             func(c *Config) { c.LR = -1 },
		"lr=NaN":           func(c *Config) { c.LR = math.NaN() },
		"lr=Inf":           func(c *Config) { c.LR = math.Inf(1) },
		"max_iter=0":       func(c *Config) { c.MaxIter = 0 },
		"max_eval<0":       func(c *Config) { c.MaxEval = -1 },
		"tol_grad<0":       func(c *Config) { c.ToleranceGrad = -1e-7 },
		"tol_grad=NaN":     func(c *Config) { c.ToleranceGrad = math.NaN() },
		"tol_change<0":     func(c *Config) { c.ToleranceChange = -1 },
		"tol_change=Inf":   func(c *Config) { c.ToleranceChange = math.Inf(1) },
		"history=0":        func(c *Config) { c.HistorySize = 0 },
		"line_search=bad":  func(c *Config) { c.LineSearch = "backtracking" },
		"line_search=case": func(c *Config) { c.LineSearch = "Strong_Wolfe" },
	}
	for name, mutate := range bad {
		c := DefaultConfig()
		mutate(&c)
		err := c.Validate()
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		// Step refuses it without evaluating or touching anything
		x := []float64{1, 2}
		st := NewState[float64](2)
		called := false
		_, serr := Step(c, st, x, func(x, g []float64) (float64, error) { called = true; return 0, nil })
		if serr == nil || called || x[0] != 1 || x[1] != 2 || st.FuncEvals != 0 {
			t.Errorf("%s: Step did not reject the config cleanly (err %v)", name, serr)
		}
	}
}

func TestStepRejectsMismatchedState(t *testing.T) {
	p := problems[float64]()[1]
	x := append([]float64(nil), p.x0...)
	st := NewState[float64](len(x))
	run(t, p, st, x, 2)
	if _, err := Step(p.cfg, st, x[:len(x)-1], p.f); err == nil {
		t.Fatal("state for a longer vector accepted")
	}
	if _, err := Step[float64](p.cfg, nil, x, p.f); err == nil {
		t.Fatal("nil state accepted")
	}
	if _, err := Step(p.cfg, NewState[float64](0), []float64{}, p.f); err == nil {
		t.Fatal("empty vector accepted")
	}
}

func TestImportRejects(t *testing.T) {
	p := problems[float64]()[1]
	x := append([]float64(nil), p.x0...)
	n := len(x)
	st := NewState[float64](n)
	run(t, p, st, x, 3)
	base := func() (map[string][]float64, map[string]float64) { return st.Export() }
	tn0, sc0 := base()
	if _, err := Import(n, tn0, sc0); err != nil {
		t.Fatalf("valid state rejected: %v", err)
	}
	fresh := &State[float64]{}
	if tn, sc := fresh.Export(); len(tn) != 0 || len(sc) != 2 {
		t.Fatalf("fresh state exports %v %v", tn, sc)
	} else if _, err := Import(n, tn, sc); err != nil {
		t.Fatalf("fresh state rejected: %v", err)
	}
	cases := map[string]func(map[string][]float64, map[string]float64){
		"short d":           func(tn map[string][]float64, _ map[string]float64) { tn[KeyD] = tn[KeyD][:n-1] },
		"short prev grad":   func(tn map[string][]float64, _ map[string]float64) { tn[KeyPrevFlatGrad] = nil },
		"ragged old_dirs":   func(tn map[string][]float64, _ map[string]float64) { tn[KeyOldDirs] = tn[KeyOldDirs][1:] },
		"old_stps mismatch": func(tn map[string][]float64, _ map[string]float64) { tn[KeyOldStps] = tn[KeyOldStps][n:] },
		"ro mismatch":       func(tn map[string][]float64, _ map[string]float64) { tn[KeyRo] = append(tn[KeyRo], 1) },
		"al too short":      func(tn map[string][]float64, _ map[string]float64) { tn[KeyAl] = nil },
		"missing d":         func(tn map[string][]float64, _ map[string]float64) { delete(tn, KeyD) },
		"missing al":        func(tn map[string][]float64, _ map[string]float64) { delete(tn, KeyAl) },
		"unknown tensor":    func(tn map[string][]float64, _ map[string]float64) { tn["momentum"] = nil },
		"unknown scalar":    func(_ map[string][]float64, sc map[string]float64) { sc["lr"] = 1 },
		"missing t":         func(_ map[string][]float64, sc map[string]float64) { delete(sc, KeyT) },
		"missing n_iter":    func(_ map[string][]float64, sc map[string]float64) { delete(sc, KeyNIter) },
		"fractional n_iter": func(_ map[string][]float64, sc map[string]float64) { sc[KeyNIter] = 2.5 },
		"negative evals":    func(_ map[string][]float64, sc map[string]float64) { sc[KeyFuncEvals] = -1 },
		"n_iter zero":       func(_ map[string][]float64, sc map[string]float64) { sc[KeyNIter] = 0 },
		"bad flag":          func(_ map[string][]float64, sc map[string]float64) { sc[KeyTIsTensor] = 2 },
		"python H_diag":     func(_ map[string][]float64, sc map[string]float64) { sc[KeyHDiagIsTensor] = 0; sc[KeyHDiag] = 0.5 },
	}
	for name, mutate := range cases {
		tn, sc := base()
		mutate(tn, sc)
		if _, err := Import(n, tn, sc); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// float32: a tensor t must be representable in float32
	tn32 := map[string][]float32{KeyD: {1}, KeyPrevFlatGrad: {1}, KeyOldDirs: {}, KeyOldStps: {}, KeyRo: {}}
	sc32 := map[string]float64{KeyFuncEvals: 2, KeyNIter: 1, KeyT: 0.1, KeyTIsTensor: 1, KeyHDiag: 1, KeyHDiagIsTensor: 0, KeyPrevLoss: 3}
	if _, err := Import(1, tn32, sc32); err == nil {
		t.Error("float32 tensor t = 0.1 (float64) accepted")
	}
	sc32[KeyT] = float64(float32(0.1))
	if _, err := Import(1, tn32, sc32); err != nil {
		t.Errorf("valid float32 state rejected: %v", err)
	}
}

// TestScalarSemantics checks the Python/torch scalar rules used by the port.
func TestScalarSemantics(t *testing.T) {
	var a64 arith[float64]
	// python_float / tensor is reciprocal * python_float (two roundings)
	x, y := 3.0, 7.0
	got, _ := a64.div(py(x), ten(y))
	if want := (1 / y) * x; got.v != want || !got.tensor {
		t.Errorf("rdiv: got %v want %v", got.v, want)
	}
	got, _ = a64.div(py(x), py(y))
	if got.v != x/y || got.tensor {
		t.Errorf("python div: got %v", got.v)
	}
	if _, err := a64.div(py(1), py(0)); err == nil {
		t.Error("python float division by zero did not fail")
	}
	if got, err := a64.div(ten(1.0), ten(0.0)); err != nil || !math.IsInf(got.v, 1) {
		t.Errorf("tensor division by zero: %v %v", got, err)
	}
	// Python min/max return the first argument on ties and NaN
	nan := py(math.NaN())
	if r := a64.min(nan, py(1)); !math.IsNaN(r.v) {
		t.Error("min(nan, 1) should be nan")
	}
	if r := a64.max(py(1), nan); r.v != 1 {
		t.Error("max(1, nan) should be 1")
	}
	if r := a64.min(py(2), ten(2.0)); r.tensor {
		t.Error("min(a, b) with a == b must return a")
	}
	// float32: a tensor operand makes the operation float32
	var a32 arith[float32]
	s := a32.add(py(1), ten(float32(1e-8)))
	if s.v != 1 || !s.tensor {
		t.Errorf("float32 add: %v", s)
	}
	if a32.gt(py(1+1e-9), ten(float32(1))) {
		t.Error("comparison with a float32 tensor must be done in float32")
	}
	if s := a32.add(py(1), py(1e-8)); s.v != 1+1e-8 || s.tensor {
		t.Errorf("python add: %v", s)
	}
}

// TestCubicInterpolate checks _cubic_interpolate on a cubic whose minimiser
// is known, and the bounds/no-real-root fallback.
func TestCubicInterpolate(t *testing.T) {
	var ar arith[float64]
	// φ(x) = (x-1)^2 has minimum at 1; with exact derivatives the cubic fit
	// through (0, 1, -2) and (3, 4, 4) is exact.
	r, err := ar.cubicInterpolate(py(0), py(1), ten(-2.0), py(3), py(4), ten(4.0), nil)
	if err != nil || math.Abs(r.v-1) > 1e-15 {
		t.Fatalf("got %v, %v", r, err)
	}
	// bounds clamp
	r, _ = ar.cubicInterpolate(py(0), py(1), ten(-2.0), py(3), py(4), ten(4.0), &[2]scalar{py(2), py(5)})
	if r.v != 2 {
		t.Fatalf("clamped: got %v", r.v)
	}
	// d2_square < 0: midpoint of the bounds
	r, _ = ar.cubicInterpolate(py(0), py(0), ten(1.0), py(1), py(2.0/3), ten(1.0), nil)
	if r.v != 0.5 {
		t.Fatalf("midpoint: got %v", r.v)
	}
	// x1 == x2, both Python floats: ZeroDivisionError
	if _, err := ar.cubicInterpolate(py(1), py(0), ten(1.0), py(1), py(0), ten(1.0), nil); err == nil {
		t.Fatal("expected ZeroDivisionError")
	}
}

func TestOptimalStartReturnsImmediately(t *testing.T) {
	x := []float64{1, 2}
	st := NewState[float64](2)
	loss, err := Step(DefaultConfig(), st, x, quadratic([]float64{1, 1}, []float64{1, 2}))
	if err != nil || loss != 0 || x[0] != 1 || x[1] != 2 || st.FuncEvals != 1 || st.NIter != 0 || st.D != nil {
		t.Fatalf("loss %v err %v x %v state %+v", loss, err, x, st)
	}
}
